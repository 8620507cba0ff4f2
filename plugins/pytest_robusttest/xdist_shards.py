"""pytest-xdist: the workers run an evaluation's shards, the controller merges them once.

The controller plans the shards of a model × suite (engine.shards) when the workers have
said what their selected items need, and writes the plan to the exchange folder; it then
waits, in a background thread, for the shards' outcomes, merges them and computes the
statistics, the Holm adjustment, the gallery and the provenance once (it holds the model
and the data already, it writes the reports, and it outlives any worker), then saves the
RunResult for the workers' items to judge from.

A worker whose item needs the result claims unclaimed shards one at a time (a file
created with O_EXCL names the claimant), runs each (engine.shards.run_shard) and writes
its outcome, until none is left; then it waits for the merged result. Two notions stay
apart: when a worker is lost, its claimed shards without an outcome are released and
redone by another worker (or, when none is left, by the controller at the session's
end), so the numbers do not change; the pytest items that worker was running still
count as never judged, which pytest reports as a crash and robusttest as an incomplete
run (docs/guarantees.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from robusttest.engine.shards import Shard, ShardOutcome, report_done, run_shard
from robusttest.errors import RobustTestError
from robusttest.fsutil import atomic_write_text

if TYPE_CHECKING:
    from robusttest.engine.evaluation import Evaluator, ProgressFn

POLL_S = 0.05  # how often a waiting process looks for files
CONTROLLER = "controller"


@dataclass(frozen=True)
class Plan:
    """The shards of one pair and the cases they evaluate (None: the whole grid)."""

    cases: list[str] | None
    shards: tuple[Shard, ...]


class Exchange:
    """The files of one model × suite pair in the exchange folder."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key

    def _path(self, suffix: str) -> Path:
        return self.folder / f"{self.key}.{suffix}"

    def write_plan(self, plan: Plan) -> None:
        doc = {"cases": plan.cases, "shards": [s.to_dict() for s in plan.shards]}
        atomic_write_text(self._path("plan.json"), json.dumps(doc))

    def read_plan(self) -> Plan | None:
        try:
            doc = json.loads(self._path("plan.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        cases = doc["cases"]
        return Plan(
            cases=None if cases is None else [str(c) for c in cases],
            shards=tuple(Shard.from_dict(s) for s in doc["shards"]),
        )

    def claim(self, index: int, who: str) -> bool:
        """True when this process got shard ``index`` (no one else had claimed it)."""
        try:
            fd = os.open(self._path(f"shard-{index}.claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(who)
        return True

    def release(self, who: str) -> list[int]:
        """Free the shards ``who`` (a lost worker) claimed but never finished."""
        freed = []
        for claim in self.folder.glob(f"{self.key}.shard-*.claim"):
            index = int(claim.name.split("shard-")[1].split(".")[0])
            with contextlib.suppress(OSError):
                if claim.read_text(encoding="utf-8") == who and not self.done(index):
                    claim.unlink()
                    freed.append(index)
        return sorted(freed)

    def done(self, index: int) -> bool:
        return self._path(f"shard-{index}.json").is_file()

    def write_outcome(self, outcome: ShardOutcome) -> None:
        text = json.dumps(outcome.to_dict())
        atomic_write_text(self._path(f"shard-{outcome.shard.index}.json"), text)

    def read_outcome(self, index: int) -> ShardOutcome | None:
        try:
            text = self._path(f"shard-{index}.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return ShardOutcome.from_dict(json.loads(text))

    def stop(self) -> None:
        """No shard is claimed after this (the evaluation stopped or is complete)."""
        with contextlib.suppress(OSError):
            atomic_write_text(self._path("stop"), "")

    def stopped(self) -> bool:
        return self._path("stop").is_file()


class XdistExecutor:
    """The controller's side: hands the shards to the workers through ``exchange`` and
    yields their outcomes as they come; once ``workers_gone`` is set (the session is
    over: no worker will claim anything), runs what is left itself."""

    name = "xdist"
    shows_warnings = True  # a worker's warnings are its item's, which xdist forwards

    def __init__(self, exchange: Exchange, workers: int, workers_gone: threading.Event) -> None:
        self.exchange = exchange
        self.workers = workers
        self.workers_gone = workers_gone

    def slots(self, ev: Evaluator) -> int:
        return max(1, self.workers)

    def run(
        self, ev: Evaluator, shards: Sequence[Shard], progress: ProgressFn | None
    ) -> Generator[ShardOutcome, None, None]:
        cases = None if ev.plan is ev.full_plan else [c.case_id for c in ev.cases]
        self.exchange.write_plan(Plan(cases=cases, shards=tuple(shards)))
        pending = {s.index: s for s in shards}
        stop = ev.options.stop
        try:
            while pending:
                if stop is not None and stop.is_set():
                    return
                for index in sorted(pending):
                    outcome = self.exchange.read_outcome(index)
                    if outcome is None and self.workers_gone.is_set():
                        outcome = run_shard(ev, pending[index])  # no worker left to
                    if outcome is None:
                        continue
                    shard = pending.pop(index)
                    report_done(progress, shard)
                    yield outcome
                time.sleep(POLL_S)
        finally:
            self.exchange.stop()

    def close(self) -> None:
        return None


class ShardWorker:
    """A worker's side for one pair: claims and runs shards while its item waits."""

    def __init__(
        self,
        exchange: Exchange,
        worker_id: str,
        evaluator: Callable[[list[str] | None], Evaluator],
    ) -> None:
        self.exchange = exchange
        self.worker_id = worker_id
        self._make = evaluator
        self._ev: Evaluator | None = None

    def step(self) -> bool:
        """Claim and run one shard; False when there is none to claim (yet)."""
        ex = self.exchange
        plan = ex.read_plan()
        if plan is None or ex.stopped():
            return False
        for shard in plan.shards:
            if ex.done(shard.index) or not ex.claim(shard.index, self.worker_id):
                continue
            ex.write_outcome(self._run(shard, plan.cases))
            return True
        return False

    def _run(self, shard: Shard, cases: list[str] | None) -> ShardOutcome:
        try:
            if self._ev is None:
                self._ev = self._make(cases)
            outcome = run_shard(self._ev, shard)
        except RobustTestError as exc:  # e.g. the model does not load here
            return ShardOutcome.failed(shard, f"{shard.describe()} on {self.worker_id}: {exc}")
        except Exception:
            # a bug: the controller stops (the items say so) rather than wait for it
            self.exchange.write_outcome(
                ShardOutcome.failed(
                    shard,
                    f"{shard.describe()} on {self.worker_id} (internal error):\n"
                    + traceback.format_exc(),
                )
            )
            raise
        if outcome.interrupted:  # Ctrl-C reached this worker: pytest handles it
            raise KeyboardInterrupt
        return outcome


def worker_index(worker_id: str) -> int:
    """``gw3`` → 3 (pytest-xdist's worker ids)."""
    digits = "".join(ch for ch in worker_id if ch.isdigit())
    return int(digits) if digits else 0


__all__ = ["CONTROLLER", "Exchange", "Plan", "ShardWorker", "XdistExecutor", "worker_index"]

"""Shards: the evaluation split into deterministic pieces, run anywhere, merged once.

A shard is a range of the dataset's images × a group of the evaluation's (condition,
repeat) items. ``plan_shards`` cuts the grid the same way for the same count, whatever
runs it; ``run_shard`` turns one shard into its per-image records (in this process: the
local backend, a pytest-xdist worker or a Ray task all call it); ``merge_outcomes`` puts
the outcomes back together, in any completion order, on the driver, which then computes
the statistics, the Holm adjustment, the gallery and the provenance once.

Every record depends only on its image, condition, repeat and the seed (noise is keyed
per image, batches do not change a number), so the merged records, and the results JSON
without its ``run`` block, are byte-identical whatever the shard count, the worker count,
the backend or the order the shards finish in (tests/unit/test_shards.py).
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from collections import defaultdict
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from robusttest.errors import ConfigError, RobustTestError
from robusttest.results import ImageRecord

if TYPE_CHECKING:
    from robusttest.engine.evaluation import Evaluator, ProgressFn

# Shards per slot (a process, a Ray CPU or GPU) in the default plan: enough that a slow
# or lost slot costs a fraction of the run, few enough that each shard fills its batches.
SHARDS_PER_SLOT = 4

Item = tuple[str, int]  # (condition, repeat)


@dataclass(frozen=True)
class Shard:
    """Images ``start:stop`` of the dataset (its records' order) under ``items``.

    ``group``: which of its image range's item groups this is (0 when the items are not
    split); each image is in exactly one shard of group 0.
    """

    index: int
    start: int
    stop: int
    group: int
    items: tuple[Item, ...]

    @property
    def n_images(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return (
            f"shard {self.index} (images {self.start}-{self.stop - 1}, "
            f"{len(self.items)} condition(s) × repeat(s))"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "stop": self.stop,
            "group": self.group,
            "items": [list(i) for i in self.items],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Shard:
        return cls(
            index=int(d["index"]),
            start=int(d["start"]),
            stop=int(d["stop"]),
            group=int(d["group"]),
            items=tuple((str(c), int(r)) for c, r in d["items"]),
        )


def _split(n: int, k: int) -> list[tuple[int, int]]:
    """``range(n)`` in ``k`` contiguous parts whose sizes differ by at most one."""
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


def plan_shards(
    n_images: int, items: Sequence[Item], count: int, *, align: int = 1
) -> tuple[Shard, ...]:
    """``count`` shards (at most one per image × item) covering every image × item once.

    Image ranges first: up to one range per image (in blocks of ``align`` images, the
    batch size, while there are at least ``count`` blocks, so batches stay full); beyond
    that, ranges split their items into groups (the first ranges one group more).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"shards: {count!r} is not >= 1")
    if n_images < 1 or not items:
        raise ConfigError("shards: nothing to split (no image or no condition)")
    count = min(count, n_images * len(items))
    n_ranges = min(count, n_images)
    blocks = math.ceil(n_images / max(1, align))
    if align > 1 and n_ranges <= blocks:
        ranges = [(a * align, min(n_images, b * align)) for a, b in _split(blocks, n_ranges)]
    else:
        ranges = _split(n_images, n_ranges)
    shards: list[Shard] = []
    for i, (start, stop) in enumerate(ranges):
        groups = count // n_ranges + (1 if i < count % n_ranges else 0)
        for g, (a, b) in enumerate(_split(len(items), groups)):
            shards.append(Shard(len(shards), start, stop, g, tuple(items[a:b])))
    return tuple(shards)


def auto_count(n_images: int, slots: int, batch_size: int) -> int:
    """The default shard count: one in a single slot; else ``SHARDS_PER_SLOT`` per slot,
    but no shard smaller than a batch (a smaller one only adds per-shard costs)."""
    if slots <= 1:
        return 1
    return max(1, min(SHARDS_PER_SLOT * slots, n_images // max(1, batch_size)))


@dataclass
class ShardOutcome:
    """What running one shard produced: its records and what its pass over the images
    found (JSON-able: a pytest-xdist worker writes it to a file, a Ray task returns it)."""

    shard: Shard
    records: list[ImageRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    bit_depths: dict[str, int] = field(default_factory=dict)
    spacing_seen: tuple[bool, ...] = ()
    spacings: dict[str, float | None] = field(default_factory=dict)  # per image, mm
    # seconds the model, noise and metrics took per condition in this shard (case times)
    condition_seconds: dict[str, float] = field(default_factory=dict)
    cache_problem: str | None = None
    interrupted: bool = False
    error: str | None = None  # one line: why the shard stopped (e.g. NaN outputs)
    seconds: float = 0.0
    where: str = ""  # host:pid that ran it

    @classmethod
    def failed(cls, shard: Shard, error: str) -> ShardOutcome:
        """A shard that produced nothing, with why (e.g. its Ray task died every retry)."""
        return cls(shard=shard, records=[], error=error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard.to_dict(),
            "records": [r.to_dict() for r in self.records],
            "skipped": [list(x) for x in self.skipped],
            "unreadable": [list(x) for x in self.unreadable],
            "bit_depths": dict(self.bit_depths),
            "spacing_seen": list(self.spacing_seen),
            "spacings": dict(self.spacings),
            "condition_seconds": dict(self.condition_seconds),
            "cache_problem": self.cache_problem,
            "interrupted": self.interrupted,
            "error": self.error,
            "seconds": self.seconds,
            "where": self.where,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardOutcome:
        return cls(
            shard=Shard.from_dict(d["shard"]),
            records=[ImageRecord.from_dict(r) for r in d["records"]],
            skipped=[(str(a), str(b)) for a, b in d["skipped"]],
            unreadable=[(str(a), str(b)) for a, b in d["unreadable"]],
            bit_depths={str(k): int(v) for k, v in d["bit_depths"].items()},
            spacing_seen=tuple(bool(x) for x in d["spacing_seen"]),
            spacings={str(k): None if v is None else float(v) for k, v in d["spacings"].items()},
            condition_seconds={str(k): float(v) for k, v in d["condition_seconds"].items()},
            cache_problem=None if d["cache_problem"] is None else str(d["cache_problem"]),
            interrupted=bool(d["interrupted"]),
            error=None if d["error"] is None else str(d["error"]),
            seconds=float(d["seconds"]),
            where=str(d["where"]),
        )


def _here() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def report_done(progress: ProgressFn | None, shard: Shard) -> None:
    """Tell ``progress`` of a shard that finished elsewhere, one call per item as a shard
    run here makes (the last one completes its images)."""
    if progress is not None:
        for k in range(len(shard.items)):
            progress(shard.n_images, k == len(shard.items) - 1)


def run_shard(ev: Evaluator, shard: Shard, progress: ProgressFn | None = None) -> ShardOutcome:
    """Evaluate one shard in this process and return its outcome.

    Ctrl-C (or ``EngineOptions.stop``) and bad input (NaN outputs) end the shard early:
    the outcome keeps the records made so far and says so (``interrupted``, ``error``);
    unreadable images are collected in it, not raised.
    """
    t0 = time.perf_counter()
    ev.spacing_seen = set()
    ev.spacings = {}
    before = dict(ev.condition_seconds)
    records: list[ImageRecord] = []
    interrupted, error = False, None
    stop = ev.options.stop
    try:
        for rec in ev.records(progress, shard=shard):
            records.append(rec)
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    except RobustTestError as exc:  # e.g. NaN outputs: the model's problem, not the image's
        error = str(exc)
    ds = ev.dataset
    return ShardOutcome(
        shard=shard,
        records=records,
        skipped=list(ds.skipped),
        unreadable=list(ds.unreadable),
        bit_depths=dict(ds.bit_depths),
        spacing_seen=tuple(sorted(ev.spacing_seen)),
        spacings=dict(ev.spacings),
        condition_seconds={
            k: v - before.get(k, 0.0)
            for k, v in ev.condition_seconds.items()
            if v != before.get(k, 0.0)
        },
        cache_problem=ev.cache_problem,
        interrupted=interrupted,
        error=error,
        seconds=round(time.perf_counter() - t0, 3),
        where=_here(),
    )


class ShardExecutor(Protocol):
    """Where shards run: ``run`` yields their outcomes in completion order.

    ``shows_warnings``: whether warnings raised while a shard runs reach the user (in this
    process; pytest-xdist forwards its workers'); if not, the driver repeats the ones about
    skipped images.
    """

    name: str
    shows_warnings: bool

    def slots(self, ev: Evaluator) -> int:
        """How many shards can run at once (the default plan gives each a few)."""
        ...

    def run(
        self, ev: Evaluator, shards: Sequence[Shard], progress: ProgressFn | None
    ) -> Generator[ShardOutcome, None, None]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every shard in this process, one after another (each with the evaluator's lanes)."""

    name = "local"
    shows_warnings = True

    def slots(self, ev: Evaluator) -> int:
        return 1

    def run(
        self, ev: Evaluator, shards: Sequence[Shard], progress: ProgressFn | None
    ) -> Generator[ShardOutcome, None, None]:
        for shard in shards:
            outcome = run_shard(ev, shard, progress)
            yield outcome
            if outcome.interrupted or outcome.error is not None:
                return

    def close(self) -> None:
        return None


@dataclass
class Merged:
    """The shards' outcomes put together (records in merge order; the caller sorts)."""

    records: list[ImageRecord]
    done: int  # shards whose outcome came back
    total: int
    interrupted: bool
    error: str | None
    seconds: list[float | None]  # per shard, in plan order (None: not back)
    where: list[str | None]

    @property
    def missing(self) -> int:
        return self.total - self.done


def merge_outcomes(
    ev: Evaluator,
    shards: Sequence[Shard],
    outcomes: Iterable[ShardOutcome],
    *,
    warn_skipped: bool = False,
) -> Merged:
    """Merge outcomes (any order; a shard that came back twice, e.g. redone after its
    worker was lost, counts once) and give the evaluator and its dataset what the shards'
    passes found: unreadable and skipped images (in the dataset's order), bit depths,
    whether the pixel spacing was known, a cache problem. ``warn_skipped``: warn here
    about each skipped image (the shards ran where their warnings are not seen)."""
    from robusttest.data.base import BadImageWarning

    by_index: dict[int, ShardOutcome] = {}
    for o in outcomes:
        by_index.setdefault(o.shard.index, o)
    ordered = [by_index[i] for i in sorted(by_index)]  # ranges ascending: the dataset's order
    records = [r for o in ordered for r in o.records]
    ds = ev.dataset
    skipped: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    bit_depths: dict[str, int] = {}
    counted: set[tuple[int, int]] = set()  # image ranges whose bit depths are counted
    spacing: set[bool] = set()
    spacings: dict[str, float | None] = {}
    seconds: defaultdict[str, float] = defaultdict(float)
    problem: str | None = None
    for o in ordered:
        for image_id, reason in o.skipped:
            if image_id not in skipped and warn_skipped:
                warnings.warn(
                    f"{ds.name}: skipped {image_id}: {reason}", BadImageWarning, stacklevel=2
                )
            skipped.setdefault(image_id, reason)
        for image_id, reason in o.unreadable:
            unreadable.setdefault(image_id, reason)
        span = (o.shard.start, o.shard.stop)
        if span not in counted:  # each image once, whatever its item groups
            counted.add(span)
            for label, n in o.bit_depths.items():
                bit_depths[label] = bit_depths.get(label, 0) + n
        spacing.update(o.spacing_seen)
        spacings.update(o.spacings)
        for cond, t in o.condition_seconds.items():
            seconds[cond] += t
        problem = problem or o.cache_problem
    ds.skipped[:] = list(skipped.items())
    ds.unreadable[:] = list(unreadable.items())
    ds.bit_depths.clear()
    ds.bit_depths.update(bit_depths)
    ev.spacing_seen = spacing
    ev.spacings = dict(sorted(spacings.items()))
    ev.condition_seconds = seconds
    ev.cache_problem = problem
    errors = [o.error for o in ordered if o.error is not None]
    return Merged(
        records=records,
        done=len(ordered),
        total=len(shards),
        interrupted=any(o.interrupted for o in ordered),
        error=errors[0] if errors else None,
        seconds=[by_index[s.index].seconds if s.index in by_index else None for s in shards],
        where=[by_index[s.index].where if s.index in by_index else None for s in shards],
    )


__all__ = [
    "SHARDS_PER_SLOT",
    "LocalExecutor",
    "Merged",
    "Shard",
    "ShardExecutor",
    "ShardOutcome",
    "auto_count",
    "merge_outcomes",
    "plan_shards",
    "run_shard",
]

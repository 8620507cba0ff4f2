"""Shards as Ray tasks (``--robust-backend ray``, ``robusttest run --backend ray``).

Ray (the ``ray`` extra) schedules the shards of engine.shards on a cluster: one task per
shard, a GPU per task when the model runs on CUDA (``num_gpus=1``; Ray sets the task's
``CUDA_VISIBLE_DEVICES``), else as many CPUs as the task has lanes. The model's files go
into the object store once (``ray.put``), as does the job (the suite, the resolved model
card, the dataset without its records); each task gets its shard's records and reads the
images from their paths, which every node must see (the embedded phantom is generated in
the task). A task whose worker dies is retried (``max_retries``): a shard is
deterministic, so a retry gives the same records. The driver merges the outcomes as
they complete and moves the progress bar; the statistics, gallery and provenance are
computed there once (engine.pipeline.evaluate).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robusttest.engine.shards import Shard, ShardOutcome, report_done, run_shard
from robusttest.errors import RobustTestError
from robusttest.extras import require_extra

if TYPE_CHECKING:
    from robusttest.data import Dataset, Record
    from robusttest.engine.evaluation import EngineOptions, Evaluator, ProgressFn
    from robusttest.models import ModelRunner
    from robusttest.suite import Suite

TASK_NAME = "robusttest_shard"  # the task's name: ``ray::robusttest_shard`` in ps and the dashboard
MAX_RETRIES = 3  # tries after the first when a task's worker process or node dies
WAIT_S = 0.2  # how often the driver checks for a stop while tasks run


@dataclass(frozen=True)
class RayJob:
    """What every task of one evaluation shares (one object in the store)."""

    model_name: str  # the model file's name; its bytes travel separately
    card: Mapping[str, Any]  # the driver's resolved card: the same model whatever the node
    sha256: str
    device: str  # "cuda" (the task's GPU) or "cpu"
    threads: int | None
    suite: Suite
    dataset: Dataset  # without records: each task gets its shard's
    cases: tuple[str, ...] | None
    options: EngineOptions


def model_files(runner: ModelRunner) -> dict[str, bytes]:
    """The model file and, for ONNX, its external data files: name (relative to the
    model's folder) → bytes."""
    path = Path(runner.path)
    files = {path.name: path.read_bytes()}
    if getattr(runner, "format", None) == "onnx":
        import onnx

        from robusttest.models.files import check_external_data

        proto = onnx.load(str(path), load_external_data=False)
        base = path.parent.resolve()
        for extra in check_external_data(proto, path):
            files[extra.relative_to(base).as_posix()] = extra.read_bytes()
    return files


def task_options(device_type: str, lanes: int, max_retries: int = MAX_RETRIES) -> dict[str, Any]:
    """Ray's options for a shard's task: a GPU on CUDA, else one CPU per lane; retried
    when its worker dies, never on an exception of its own (that would fail again)."""
    gpu = device_type == "cuda"
    return {
        "name": TASK_NAME,
        "num_gpus": 1 if gpu else 0,
        "num_cpus": 1 if gpu else lanes,
        "max_retries": max_retries,
        "retry_exceptions": False,
    }


_RUNNERS: dict[tuple[str, str, int | None], ModelRunner] = {}  # per worker process


def _runner(files: Mapping[str, bytes], job: RayJob) -> ModelRunner:
    """The model in this worker process, loaded once per model (Ray reuses workers)."""
    from robusttest.models import load_model

    key = (job.sha256, job.device, job.threads)
    if key not in _RUNNERS:
        folder = Path(tempfile.mkdtemp(prefix="robusttest-ray-"))
        for name, data in files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _RUNNERS[key] = load_model(
            folder / job.model_name,
            device=job.device,
            threads=job.threads,
            card_overrides=dict(job.card),
        )
    return _RUNNERS[key]


def robusttest_shard(
    files: Mapping[str, bytes], job: RayJob, shard: Shard, records: Sequence[Record]
) -> ShardOutcome:
    """One shard in a Ray worker: the model and data as on the driver, this shard's
    records only (its range starts at 0 here; the outcome names the driver's shard)."""
    from robusttest.engine.evaluation import Evaluator

    try:
        runner = _runner(files, job)
        dataset = copy.copy(job.dataset)
        dataset.records = tuple(records)
        dataset.skipped, dataset.unreadable, dataset.bit_depths = [], [], {}
        ev = Evaluator(runner, dataset, job.suite, job.options, cases=job.cases)
    except RobustTestError as exc:  # e.g. no GPU on this node: one line, not a traceback
        return ShardOutcome.failed(shard, f"{shard.describe()}: {exc}")
    outcome = run_shard(ev, replace(shard, start=0, stop=len(records)))
    outcome.shard = shard
    return outcome


class RayExecutor:
    """Runs shards as Ray tasks on the cluster at ``address`` (None: Ray's default: the
    cluster in ``RAY_ADDRESS``, one already connected to, or a new local one)."""

    name = "ray"
    shows_warnings = False  # a task's warnings stay in its worker's log

    def __init__(
        self,
        address: str | None = None,
        *,
        max_retries: int = MAX_RETRIES,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.max_retries = max_retries
        self.init_options = dict(init_options or {})
        self._started = False

    def _ray(self) -> Any:
        require_extra("ray", "--robust-backend ray")
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_options)
            self._started = True
        return ray

    @staticmethod
    def _lanes(ev: Evaluator) -> int:
        return ev.options.lanes or 1

    def slots(self, ev: Evaluator) -> int:
        """Tasks the cluster runs at once: its GPUs on CUDA, else its CPUs per lane."""
        resources = self._ray().cluster_resources()
        if ev.device.type == "cuda":
            return max(1, int(resources.get("GPU", 0)))
        return max(1, int(resources.get("CPU", 1)) // self._lanes(ev))

    def run(
        self, ev: Evaluator, shards: Sequence[Shard], progress: ProgressFn | None
    ) -> Generator[ShardOutcome, None, None]:
        ray = self._ray()
        from ray import exceptions as rex

        lost = (
            rex.WorkerCrashedError,
            rex.NodeDiedError,
            rex.ObjectLostError,
            rex.OutOfMemoryError,
            rex.TaskCancelledError,
        )
        dataset = copy.copy(ev.dataset)
        dataset.manifest_hash()  # the whole dataset's, computed here: the tasks see a part
        records = ev.dataset.records
        dataset.records = ()
        lanes = self._lanes(ev)
        options = replace(ev.options, stop=None, progress=False, lanes=lanes, shards=None)
        job = RayJob(
            model_name=Path(ev.runner.path).name,
            card=ev.runner.card.to_dict(),
            sha256=ev.runner.sha256,
            device="cuda" if ev.device.type == "cuda" else "cpu",
            threads=ev.options.threads,
            suite=ev.suite,
            dataset=dataset,
            cases=tuple(c.case_id for c in ev.cases) if len(ev.cases) < len(ev.grid) else None,
            options=options,
        )
        files_ref, job_ref = ray.put(model_files(ev.runner)), ray.put(job)
        task = ray.remote(robusttest_shard).options(
            **task_options(job.device, lanes, self.max_retries)
        )
        pending = {task.remote(files_ref, job_ref, s, records[s.start : s.stop]): s for s in shards}
        stop = ev.options.stop
        try:
            while pending:
                if stop is not None and stop.is_set():
                    return
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    shard = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except lost as exc:
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        outcome = ShardOutcome.failed(
                            shard,
                            f"{shard.describe()} failed on Ray after {self.max_retries} "
                            f"retries: {type(exc).__name__}: {first}",
                        )
                    report_done(progress, shard)
                    yield outcome
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


__all__ = ["MAX_RETRIES", "TASK_NAME", "RayExecutor", "RayJob", "model_files", "task_options"]

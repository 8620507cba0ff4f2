"""The pipeline end to end: load, evaluate, summarise, gallery, provenance → RunResult.

Nothing finished is lost. Once evaluation begins, every phase (decode and inference,
statistics, gallery) keeps what it finished when it is interrupted (Ctrl-C) or fails on
bad input: the result then says so (``completed``, ``run["error"]``, ``run["errors"]``:
one line per problem, each naming the file and the fix) and the front ends write it.
Images that cannot be read are collected, not fatal at the first: under
``on_bad_image: error`` every case becomes an ``error`` listing them all.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from robusttest import __version__, faults
from robusttest.data import Dataset
from robusttest.engine.evaluation import EngineOptions, Evaluator
from robusttest.engine.frontier import (
    FRONTIER_SUFFIX,
    FrontierSearch,
    frontier_id,
    plan_frontiers,
)
from robusttest.engine.gallery import make_gallery
from robusttest.engine.loading import plan_cases, plan_task, prepare
from robusttest.engine.shards import (
    LocalExecutor,
    ShardExecutor,
    ShardOutcome,
    auto_count,
    merge_outcomes,
    plan_shards,
)
from robusttest.engine.summary import adjust_p_values, iter_cases
from robusttest.errors import ConfigError, DataError, RobustTestError
from robusttest.gates import CLEAN
from robusttest.models import ModelRunner
from robusttest.progress import Progress, ProgressListener, tqdm_bar
from robusttest.results import CaseResult, FrontierResult, ImageRecord, RunResult
from robusttest.suite import Suite
from robusttest.suite.layers import GateOverride


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _Tracker:
    """Counts the work done and tells the listener (see robusttest.progress)."""

    def __init__(self, listener: ProgressListener, label: str, total: int, ev: Evaluator):
        self.listener = listener
        self.label = label
        self.total = total
        self.conditions = len(ev.condition_names)
        self.repeats = ev.suite.repeats
        self.units = max(total * len(ev.conditions), 1)  # batch × condition × repeat, by image
        self.done = self.units_done = self.cases_done = self.cases_total = 0
        self.gallery = False
        self.t0 = time.perf_counter()

    def report(self, finished: bool = False) -> None:
        self.listener(
            Progress(
                label=self.label,
                images_done=self.done,
                images_total=self.total,
                conditions=self.conditions,
                repeats=self.repeats,
                elapsed=time.perf_counter() - self.t0,
                fraction=self.units_done / self.units,
                cases_done=self.cases_done,
                cases_total=self.cases_total,
                gallery=self.gallery,
                finished=finished,
            )
        )

    def advance(self, n: int, batch_done: bool) -> None:
        self.units_done += n
        # an image counts once its batch's last item is done; with a shard per group of
        # conditions it is done in several shards, so the count stops at the total
        self.done = min(self.total, self.done + (n if batch_done else 0))
        self.report()

    def case(self, total: int) -> None:
        self.cases_total = total
        self.cases_done += 1
        self.report()

    def thumbnails(self) -> None:
        self.gallery = True
        self.report()


def _listener(
    progress: bool | ProgressListener | None,
) -> tuple[ProgressListener | None, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    return tqdm_bar(progress)


def case_seconds(
    cases: Sequence[CaseResult],
    condition_seconds: Mapping[str, float],
    statistics_seconds: Mapping[str, float],
    total: float,
) -> dict[str, float]:
    """Each case's share of a run's ``total`` seconds: the model, noise and metric time of
    its condition, split evenly between the cases on that condition, plus the time of its
    own statistics; scaled so that the shares add up to ``total`` (decoding, the gallery
    and the lanes' overlap are spread in proportion). Evenly when nothing was timed (every
    output from the cache)."""
    if not cases:
        return {}
    on_condition = Counter(c.condition for c in cases)
    raw = {
        c.case_id: condition_seconds.get(c.condition, 0.0) / on_condition[c.condition]
        + statistics_seconds.get(c.case_id, 0.0)
        for c in cases
    }
    spent = sum(raw.values())
    if spent <= 0.0:
        raw, spent = dict.fromkeys(raw, 1.0), float(len(raw))
    return {cid: round(v * total / spent, 6) for cid, v in raw.items()}


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "robusttest": __version__}
    for pkg in ("torch", "numpy", "onnxruntime", "onnx", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, as a shell would take it back
    (``python -m pytest ...`` for a module run with ``-m``)."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    first = Path(args[0])
    if first.name == "__main__.py":  # python -m PACKAGE
        args[:1] = [Path(sys.executable).name, "-m", first.parent.name]
    return shlex.join(args)


def cpu_model() -> str:
    """The processor's marketing name (platform.processor() says only "x86_64" on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out
    return platform.processor() or platform.machine() or "unknown"


def gpu_model(device: str) -> str | None:
    """The GPU's name when ``device`` is a CUDA device (None otherwise: CUDA untouched)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return str(torch.cuda.get_device_name(dev))


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed under us
        return ""


def machine_facts(runner: ModelRunner) -> dict[str, Any]:
    """Where and how this run was started: facts that differ between machines, so they go
    in the results' ``run`` block, not the reproducible provenance."""
    return {
        "command": command_line(),
        "cwd": _cwd(),
        "model_path": str(Path(runner.path).resolve()),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_model(runner.device),
    }


class _Stop:
    """Why a run stopped early, if it did: the phase and the reason."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.error: str | None = None  # None: interrupted
        self.interrupted = False

    @property
    def stopped(self) -> bool:
        return self.phase is not None

    def interrupt(self, phase: str) -> None:
        if self.phase is None:
            self.phase = phase
        self.interrupted = True

    def fail(self, phase: str, message: str) -> None:
        if self.phase is None:
            self.phase, self.error = phase, message


def skip_hint(suite: Suite) -> str:
    """The fix for unreadable images, naming the suite key that leaves them out."""
    where = f"suite {suite.name!r} ({suite.source})"
    return (
        "replace or remove the file, or set `on_bad_image: skip` under `data:` in "
        f"{where} to leave unreadable images out of the run"
    )


def _complete_images(records: list[ImageRecord], n_conditions: int) -> list[ImageRecord]:
    """Records of images that finished every condition (a stop can cut a batch)."""
    per_image: dict[str, int] = defaultdict(int)
    for r in records:
        per_image[r.image_id] += 1
    full = {i for i, c in per_image.items() if c == n_conditions}
    return [r for r in records if r.image_id in full]


def _as_errors(cases: list[CaseResult], why: str) -> list[CaseResult]:
    """Every case an ``error``: the numbers stay (they cover the images that were read),
    but no gate is judged on them."""
    return [replace(c, verdict="error", message=f"{c.case_id}: not judged: {why}") for c in cases]


def _split_selection(
    suite: Suite, runner: ModelRunner, dataset: Dataset, cases: Collection[str] | None
) -> tuple[list[str] | None, set[str] | None]:
    """A selection's grid case ids to evaluate, and the frontier ids it names.

    A selected frontier is searched on its own levels, paired with the clean pass of its
    (metric, target): that clean case is evaluated (not judged) when the selection lacks it.
    (None, None): no selection, the whole grid.
    """
    if cases is None:
        return None, None
    if isinstance(cases, str):
        cases = [cases]
    fronts = {c for c in cases if c.endswith(FRONTIER_SUFFIX)}
    ids = [c for c in cases if c not in fronts]
    if fronts:
        grid = plan_cases(suite, plan_task(suite, runner, dataset))
        families = {spec.name for spec in suite.noise}
        for c in grid:
            paired = any(frontier_id(c.target, c.metric, n) in fronts for n in families)
            if c.condition == CLEAN and paired and c.case_id not in ids:
                ids.append(c.case_id)
    return ids, fronts


def evaluate(
    runner: ModelRunner,
    suite: Suite,
    dataset: Dataset,
    options: EngineOptions | None = None,
    *,
    cases: Collection[str] | None = None,
    selected_by: str | None = None,
    frontier: bool = False,
    executor: ShardExecutor | None = None,
) -> RunResult:
    """Evaluate an already loaded model on an opened dataset.

    ``cases``: the ids of the grid's cases to evaluate and judge (None: the whole grid);
    only their conditions are computed. ``selected_by``: how they were chosen, in words
    (e.g. ``pytest -m quantum``), recorded with them in ``provenance["selection"]``;
    they may name failure frontiers (``lungs-dice[gaussian-frontier]``), and then only the
    frontiers named are searched.

    Failure frontiers (``engine.frontier``) are searched for those the suite's
    ``frontier:`` asks for, and with ``frontier`` for every gated (metric, target, family).

    The evaluation is split into ``options.shards`` shards (engine.shards; default: the
    executor's plan) that ``executor`` runs (default: here, one after another; a Ray
    cluster with ``engine.ray_backend.RayExecutor``); their records are merged here, then
    the statistics, the gallery and the provenance are computed once. The numbers do not
    depend on the shards or where they ran.

    Ctrl-C during the evaluation, the statistics or the gallery, and bad input met on the
    way (an unreadable image, a model output with NaN), end in a RunResult that keeps
    everything finished so far and says what happened (see the module docstring);
    only an interrupt before the first phase begins propagates.
    """
    options = options or EngineOptions()
    started = _now()
    t0 = time.perf_counter()
    grid_ids, frontier_ids = _split_selection(suite, runner, dataset, cases)
    cases_set = set(cases or ())
    ev = Evaluator(runner, dataset, suite, options, cases=grid_ids)
    listener, close = _listener(options.progress)
    label = f"{runner.path.name} × {suite.name}"
    tracker = _Tracker(listener, label, len(dataset), ev) if listener is not None else None
    executor = executor or LocalExecutor()
    stop = _Stop()
    outcomes: list[ShardOutcome] = []
    try:
        count = options.shards or auto_count(len(dataset), executor.slots(ev), options.batch_size)
        shards = plan_shards(len(dataset), ev.items(), count, align=options.batch_size)
        if tracker is not None:
            tracker.report()
        try:
            advance = tracker.advance if tracker is not None else None
            with contextlib.closing(executor.run(ev, shards, advance)) as stream:
                for outcome in stream:
                    outcomes.append(outcome)
                    if outcome.interrupted or outcome.error is not None:
                        break
        except KeyboardInterrupt:
            stop.interrupt("evaluation")
        finally:
            close()
    finally:
        executor.close()
    t_merge = time.perf_counter()
    warn = not executor.shows_warnings
    merged = merge_outcomes(ev, shards, outcomes, warn_skipped=warn)
    if merged.interrupted:
        stop.interrupt("evaluation")
    if merged.error is not None:
        stop.fail("evaluation", merged.error)
    elif merged.missing and not stop.stopped:  # the executor stopped before every shard
        stop.interrupt("evaluation")
    records = merged.records
    if stop.stopped:
        records = _complete_images(records, len(ev.conditions))
    records.sort(key=lambda r: (r.image_id, r.condition, r.repeat))
    t_eval = time.perf_counter() - t0
    seconds_merge = time.perf_counter() - t_merge

    errors: list[str] = [] if stop.error is None else [stop.error]
    problem: str | None = None  # one line: why the cases are not judged
    if dataset.unreadable:
        n_bad = len(dataset.unreadable)
        problem = f"{n_bad} of {len(dataset)} images could not be read"
        errors += [f"{reason}; {skip_hint(suite)}" for _, reason in dataset.unreadable]
    elif not records and not stop.stopped:
        if not dataset.skipped:
            raise DataError(f"dataset {dataset.name!r} yielded no images")
        problem = (
            f"no image of dataset {dataset.name!r} could be read "
            f"(all {len(dataset.skipped)} were skipped as unreadable)"
        )
        errors.append(f"{problem}; the first: {dataset.skipped[0][1]}")
    if stop.error is not None:
        problem = f"the evaluation stopped after {len({r.image_id for r in records})} images"

    # An interrupt before any image finished leaves nothing to judge: no cases, and the
    # report says "incomplete: 0 images" rather than failing gates on n = 0.
    judged = [c.case_id for c in ev.cases if frontier_ids is None or c.case_id in cases_set]
    results: list[CaseResult] = []
    statistics_seconds: dict[str, float] = {}
    if records:
        try:
            t_case = time.perf_counter()
            for case in iter_cases(
                records, suite, ev.plan, judged, spacing_known=ev.spacing_known()
            ):
                faults.checkpoint("statistics")
                results.append(case)
                statistics_seconds[case.case_id] = time.perf_counter() - t_case
                if tracker is not None:
                    tracker.case(len(judged))
                t_case = time.perf_counter()
            results = adjust_p_values(results)
        except KeyboardInterrupt:  # the cases finished so far stay, without Holm
            stop.interrupt("statistics")
    if problem is not None:
        bad = [i for i, _ in dataset.unreadable]
        named = f" ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})" if bad else ""
        results = _as_errors(
            results, f"{problem}{named}; the run's errors say why and how to fix it"
        )

    gallery: list[Any] = []
    if not stop.stopped:
        try:
            faults.checkpoint("gallery")
            if tracker is not None and options.gallery:
                tracker.thumbnails()
            gallery = make_gallery(ev, records)
        except KeyboardInterrupt:
            stop.interrupt("gallery")
        except RobustTestError as exc:
            stop.fail("gallery", str(exc))
            errors.append(str(exc))
    frontiers: list[FrontierResult] = []
    targets = [*ev.plan.case_targets, *(f"{a}-vs-{b}" for a, b in ev.plan.pairwise)]
    wanted = plan_frontiers(suite, targets, every=frontier) if records else []
    if frontier_ids is not None:  # a selection: only the frontiers it names
        wanted = [f for f in wanted if f.frontier_id in frontier_ids]
    search_facts: dict[str, Any] = {}
    if wanted and not stop.stopped and problem is None:
        search = FrontierSearch(ev, records)
        try:
            for spec in wanted:
                frontiers.append(search.search(spec))
        except KeyboardInterrupt:  # the frontiers finished so far stay
            stop.interrupt("frontier")
        except RobustTestError as exc:
            stop.fail("frontier", str(exc))
            errors.append(str(exc))
        search_facts = {
            "seconds_frontier": round(search.seconds, 3),
            "frontier_evaluations": search.evaluations,
        }
    provenance = {
        "robusttest_version": __version__,
        "model": {
            "path": runner.path.name,
            "sha256": runner.sha256,
            "backend": runner.backend,
            "card": runner.card.to_dict(),
        },
        "suite": {
            "name": suite.name,
            "sha256": suite.sha256,
            "definition": suite.to_dict(),
            # where the definition came from: the suites it extends, each gate entry's source
            "extends": list(suite.extends),
            "gate_sources": dict(sorted(suite.gate_sources.items())),
        },
        "data": {
            "adapter": dataset.name,
            "manifest_hash": dataset.manifest_hash(),
            "n_images": len({r.image_id for r in records}),
            "skipped": [list(x) for x in dataset.skipped],
            "unreadable": [list(x) for x in dataset.unreadable],
            "bit_depths": dict(sorted(dataset.bit_depths.items())),
            "pixel_spacing_mm": spacing_summary(ev.spacings),
            "describe": _jsonable(dataset.describe()),
        },
        "selection": {
            "n_grid": len(ev.grid),
            "n_selected": len(judged),
            "cases": judged,
            "by": selected_by if cases is not None else None,
        },
        "not_evaluated": [
            {"target": name, "reason": why} for name, why in ev.full_plan.not_evaluated
        ],
        "seed": suite.seed,
        "repeats": suite.repeats,
        "device": torch.device(runner.device).type,  # noise streams differ by device type
        "packages": package_versions(),
    }
    warnings_ = [ev.cache_problem] if ev.cache_problem else []
    t_total = time.perf_counter() - t0
    run_info = {
        "started_at": started,
        "finished_at": _now(),
        "seconds_evaluation": round(t_eval, 3),
        "seconds_total": round(t_total, 3),
        # each case's share of seconds_total (case_seconds): what JUnit books per case
        "case_seconds": case_seconds(results, ev.condition_seconds, statistics_seconds, t_total),
        "device": runner.device,
        "host": platform.node(),
        "platform": platform.platform(),
        **machine_facts(runner),
        "n_images_total": len(dataset),
        "batch_size": options.batch_size,
        "workers": options.workers,
        "lanes": ev.lanes(),
        "shards": {
            "backend": executor.name,
            "count": merged.total,
            "done": merged.done,
            "seconds": merged.seconds,
            "where": sorted({w for w in merged.where if w is not None}),
            "seconds_merge": round(seconds_merge, 3),
        },
        "cache": bool(options.cache) and ev.cache_problem is None,
        "error": "interrupted" if stop.interrupted else (stop.error or problem),
        "errors": errors,
        "warnings": warnings_,
        "interrupted": stop.interrupted,
        "stopped_in": stop.phase,
        **search_facts,
    }
    if tracker is not None:
        tracker.report(finished=True)
    return RunResult(
        cases=tuple(results),
        records=tuple(records),
        provenance=provenance,
        run=run_info,
        gallery=tuple(gallery),
        completed=not stop.stopped,
        frontiers=tuple(frontiers),
    )


def spacing_summary(spacings: Mapping[str, float | None]) -> dict[str, Any]:
    """How many images had a known pixel spacing (from the data: DICOM tags, a manifest
    column, an adapter's table or detector) and its range; the physical noise families
    count photons per pixel from it, and µGy frontiers need it known."""
    known = sorted(float(v) for v in spacings.values() if v is not None)
    out: dict[str, Any] = {"known": len(known), "unknown": len(spacings) - len(known)}
    if known:
        mid = len(known) // 2
        median = known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2
        out.update(min=known[0], median=median, max=known[-1])
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return str(x)


def run(
    model: str | Path | ModelRunner,
    suite: str | Path | Suite | None = None,
    *,
    data_root: str | Path | None = None,
    device: str = "auto",
    seed: int | None = None,
    repeats: int | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    workers: int = 2,
    threads: int | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool | ProgressListener | None = None,
    gallery: int = 2,
    lanes: int | None = None,
    cases: Collection[str] | None = None,
    frontier: bool = False,
    gates: Sequence[GateOverride | str] = (),
    shards: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Evaluate ``model`` under ``suite`` (default: chosen from the model card's task).

    ``threads`` caps the model's CPU threads; ``lanes`` how many batch × condition items
    run at once (default: see ``Evaluator.lanes``). Neither changes a number. ``cases``:
    evaluate and judge only these case ids of the grid (their numbers are those of the
    whole grid's run, except the Holm adjustment, which spans the cases judged).
    ``frontier``: search every gated case's failure frontier (``RunResult.frontiers``).
    ``gates``: changes to the suite's gates, as ``--robust-gate`` takes them
    (``["dice.max_drop=0.05", "gaussian:dice.max_drop=0.2"]``). ``progress``: a listener
    called with each ``robusttest.progress.Progress``, or whether to show a tqdm bar
    (None: when stderr is a terminal).

    ``shards``: split the evaluation into that many shards (engine.shards); ``backend``:
    where they run, ``local`` (here) or ``ray`` (a Ray cluster at ``ray_address``; see
    docs/scale.md). Neither changes a number either.

    >>> result = robusttest.run("fixtures/models/lungs_tinyunet.onnx")  # doctest: +SKIP
    >>> result.passed, result.counts()                                  # doctest: +SKIP
    """
    runner, s, dataset = prepare(
        model,
        suite,
        data_root=data_root,
        device=device,
        threads=threads,
        seed=seed,
        repeats=repeats,
        limit=limit,
        gates=gates,
    )
    options = EngineOptions(
        batch_size=batch_size,
        workers=workers,
        device=device,
        threads=threads,
        cache=cache,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        progress=progress,
        gallery=gallery,
        lanes=lanes,
        shards=shards,
    )
    by = "robusttest.run(cases=...)" if cases is not None else None
    executor = executor_for(backend, ray_address)
    return evaluate(
        runner,
        s,
        dataset,
        options,
        cases=cases,
        selected_by=by,
        executor=executor,
        frontier=frontier,
    )


def executor_for(backend: str, address: str | None = None) -> ShardExecutor | None:
    """The executor of a backend name (None: the local one, the default)."""
    if backend == "ray":
        from robusttest.engine.ray_backend import RayExecutor

        return RayExecutor(address)
    if backend != "local":
        raise ConfigError(f"backend: {backend!r} is not a backend; use local or ray")
    if address is not None:
        raise ConfigError("ray_address: only applies with backend='ray'")
    return None

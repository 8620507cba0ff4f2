"""The pipeline end to end: load, evaluate, summarise, gallery, provenance → RunResult."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from robusttest import __version__
from robusttest.data import Dataset
from robusttest.engine.evaluation import EngineOptions, Evaluator, ProgressFn
from robusttest.engine.gallery import make_gallery
from robusttest.engine.loading import prepare
from robusttest.engine.summary import summarise
from robusttest.errors import DataError
from robusttest.models import ModelRunner
from robusttest.results import ImageRecord, RunResult
from robusttest.suite import Suite


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _progress_bar(
    total: int, enabled: bool | None, desc: str
) -> tuple[ProgressFn | None, Callable[[], None]]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)

    def update(n: int) -> None:
        bar.update(n)

    return update, bar.close


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


def evaluate(
    runner: ModelRunner,
    suite: Suite,
    dataset: Dataset,
    options: EngineOptions | None = None,
    *,
    cases: Collection[str] | None = None,
    selected_by: str | None = None,
) -> RunResult:
    """Evaluate an already loaded model on an opened dataset.

    ``cases``: the ids of the grid's cases to evaluate and judge (None: the whole grid);
    only their conditions are computed. ``selected_by``: how they were chosen, in words
    (e.g. ``pytest -m quantum``), recorded with them in ``provenance["selection"]``.
    """
    options = options or EngineOptions()
    started = _now()
    t0 = time.perf_counter()
    ev = Evaluator(runner, dataset, suite, options, cases=cases)
    update, close = _progress_bar(len(dataset), options.progress, f"{suite.name}")
    records: list[ImageRecord] = []
    completed = True
    error: str | None = None
    try:
        for rec in ev.records(update):
            records.append(rec)
            if options.stop is not None and options.stop.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        completed, error = False, "interrupted"
    finally:
        close()
    if completed and not records:
        raise DataError(
            f"dataset {dataset.name!r} yielded no images"
            + (f" ({len(dataset.skipped)} skipped as unreadable)" if dataset.skipped else "")
        )
    # records of images that finished every condition only (an interrupt can cut a batch)
    if not completed:
        per_image: dict[str, int] = defaultdict(int)
        for r in records:
            per_image[r.image_id] += 1
        full = {i for i, c in per_image.items() if c == len(ev.conditions)}
        records = [r for r in records if r.image_id in full]
    records.sort(key=lambda r: (r.image_id, r.condition, r.repeat))
    t_eval = time.perf_counter() - t0
    # An interrupt before any image finished leaves nothing to judge: no cases, and the
    # report says "incomplete: 0 images" rather than failing gates on n = 0.
    judged = [c.case_id for c in ev.cases]
    results = (
        summarise(records, suite, ev.plan, judged, spacing_known=ev.spacing_known())
        if records
        else []
    )
    gallery = make_gallery(ev, records) if completed else []
    provenance = {
        "robusttest_version": __version__,
        "model": {
            "path": runner.path.name,
            "sha256": runner.sha256,
            "backend": runner.backend,
            "card": runner.card.to_dict(),
        },
        "suite": {"name": suite.name, "sha256": suite.sha256, "definition": suite.to_dict()},
        "data": {
            "adapter": dataset.name,
            "manifest_hash": dataset.manifest_hash(),
            "n_images": len({r.image_id for r in records}),
            "skipped": [list(x) for x in dataset.skipped],
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
    run_info = {
        "started_at": started,
        "finished_at": _now(),
        "seconds_evaluation": round(t_eval, 3),
        "seconds_total": round(time.perf_counter() - t0, 3),
        "device": runner.device,
        "host": platform.node(),
        "platform": platform.platform(),
        **machine_facts(runner),
        "n_images_total": len(dataset),
        "batch_size": options.batch_size,
        "workers": options.workers,
        "lanes": ev.lanes(),
        "cache": bool(options.cache),
        "error": error,
    }
    return RunResult(
        cases=tuple(results),
        records=tuple(records),
        provenance=provenance,
        run=run_info,
        gallery=tuple(gallery),
        completed=completed,
    )


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
    progress: bool | None = None,
    gallery: int = 2,
    lanes: int | None = None,
    cases: Collection[str] | None = None,
) -> RunResult:
    """Evaluate ``model`` under ``suite`` (default: chosen from the model card's task).

    ``threads`` caps the model's CPU threads; ``lanes`` how many batch × condition items
    run at once (default: see ``Evaluator.lanes``). Neither changes a number. ``cases``:
    evaluate and judge only these case ids of the grid (their numbers are those of the
    whole grid's run, except the Holm adjustment, which spans the cases judged).

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
    )
    by = "robusttest.run(cases=...)" if cases is not None else None
    return evaluate(runner, s, dataset, options, cases=cases, selected_by=by)

"""Runs a suite: data → noise → model → per-image metrics → paired statistics → RunResult.

Each image is decoded once. A batch of same-sized images is moved to the model's device
once; its clean pass and every (condition, repeat) are computed from that one tensor, the
noise generated on the device itself. Per-image outputs stream into records; memory stays
bounded by the batch (plus the records, a few numbers per image and condition).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robusttest import __version__
from robusttest import metrics as M
from robusttest import stats as S
from robusttest.cache import OutputCache, context_key, default_cache_dir
from robusttest.data import Dataset, Sample, open_dataset
from robusttest.errors import ConfigError, DataError, ModelError, RobustTestError, check_range
from robusttest.models import ModelRunner, load_model, postprocess, preprocess, resize
from robusttest.models.runner import check_outputs
from robusttest.noise import SAMPLER_VERSION, NoiseSpec, check_images, severity_name
from robusttest.resources import resolve_model_ref
from robusttest.results import CLEAN, CaseResult, GalleryItem, ImageRecord, RunResult
from robusttest.suite import DEFAULT_SUITE_FOR_TASK, CaseSpec, Suite, load_suite

ProgressFn = Callable[[int], None]

# Lanes hold one item each (a few float copies of its batch at native size): a batch whose
# pixels times the lanes exceed this runs on its own instead (e.g. 16 NIH images of 1024²
# share 2 lanes; Montgomery's 4020×4892 images never do).
LANE_MAX_PIXELS = 1 << 26


@dataclass(frozen=True)
class EngineOptions:
    """How to run (never what is computed: results do not depend on these)."""

    batch_size: int = 16
    workers: int = 2
    device: str = "auto"
    threads: int | None = None
    cache: bool = True
    cache_dir: Path | None = None
    progress: bool | None = None  # None: a bar only when stderr is a terminal
    gallery: int = 2  # sample images shown per condition (plus the worst case)
    lanes: int | None = None  # items in parallel, each single-threaded; None: Evaluator.lanes

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: {self.batch_size} is not >= 1")
        if self.workers < 0:
            raise ConfigError(f"workers: {self.workers} is not >= 0")
        if self.lanes is not None and self.lanes < 1:
            raise ConfigError(f"lanes: {self.lanes} is not >= 1; leave it unset for the default")


@dataclass(frozen=True)
class TaskPlan:
    """What one evaluation computes per image."""

    task: str  # "segmentation" | "classification"
    targets: tuple[str, ...]  # structures (seg) or labels (cls) scored per image
    case_targets: tuple[str, ...]  # targets that get cases of their own (plus pairwise tasks)
    metrics: tuple[str, ...]
    pairwise: tuple[tuple[str, str], ...]
    channel_index: Mapping[str, int]  # target -> output channel of the model


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _same_shape_batches(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for s in samples:
        if batch and (len(batch) >= size or s.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


def plan_task(suite: Suite, runner: ModelRunner, dataset: Dataset) -> TaskPlan:
    """Check that model, suite and data fit together; decide the targets."""
    card = runner.card
    if card.task != suite.task:
        raise ModelError(
            f"{runner.path}: the model card says task {card.task!r} but suite {suite.name!r} "
            f"is a {suite.task} suite; choose a {card.task} suite "
            f"(e.g. --suite {DEFAULT_SUITE_FOR_TASK[card.task]})"
        )
    if dataset.task != suite.task:
        raise ConfigError(
            f"suite {suite.name!r}: data adapter {dataset.name!r} provides {dataset.task} "
            f"targets, but the suite's task is {suite.task}"
        )
    if suite.task == "segmentation":
        model_names, data_names, what = card.structures, dataset.structures, "structure"
    else:
        model_names, data_names, what = card.labels, dataset.labels, "label"
    index = {n: i for i, n in enumerate(model_names)}
    if suite.targets is not None:
        targets = suite.targets
        for t in targets:
            if t not in index:
                raise ConfigError(
                    f"suite {suite.name!r}: target {t!r} is not a {what} of the model "
                    f"({', '.join(model_names)})"
                )
            if t not in data_names:
                raise ConfigError(
                    f"suite {suite.name!r}: target {t!r} is not a {what} of dataset "
                    f"{dataset.name!r} ({', '.join(data_names)})"
                )
    else:
        targets = tuple(n for n in model_names if n in data_names)
        if not targets and not suite.pairwise:
            raise ConfigError(
                f"model {runner.path.name} ({what}s {', '.join(model_names)}) and dataset "
                f"{dataset.name!r} ({what}s {', '.join(data_names)}) share no {what}; "
                "set `targets:` in the suite, or the model's names with a `model:` override"
            )
    for a, b in suite.pairwise:
        for lab in (a, b):
            if lab not in index or lab not in data_names:
                raise ConfigError(
                    f"suite {suite.name!r}: pairwise label {lab!r} must be a label of both the "
                    f"model ({', '.join(model_names)}) and the data ({', '.join(data_names)})"
                )
    scored = tuple(dict.fromkeys([*targets, *(x for p in suite.pairwise for x in p)]))
    return TaskPlan(
        task=suite.task,
        targets=scored,
        case_targets=tuple(targets),
        metrics=suite.metrics,
        pairwise=suite.pairwise,
        channel_index={t: index[t] for t in scored},
    )


Scored = tuple[dict[str, float], dict[str, int]]  # one image: metric values, targets


@dataclass
class _Item:
    """One condition × repeat of one batch: its records come from the cache or ``compute``."""

    work: _Work
    condition: str
    spec: NoiseSpec | None
    repeat: int
    context: str
    cached: list[Scored] | None
    last: bool  # the batch's last item

    def compute(self, runner: ModelRunner) -> list[Scored]:
        if self.cached is not None:
            return self.cached
        w, ev = self.work, self.work.evaluator
        x = w.x
        assert x is not None  # made by _Work.items for every uncached item
        xin = ev.noisy(x, self.spec, w.ids, self.repeat, w.spacing)
        with torch.inference_mode():
            probs = ev.infer(xin, w.ids, out_size=(x.shape[-2], x.shape[-1]), runner=runner)
        return ev.score(probs, w.batch, w.truth)


class _Work:
    """One batch: its checked tensor and masks, made once and shared by its items."""

    def __init__(self, evaluator: Evaluator, batch: list[Sample], cache: OutputCache | None):
        self.evaluator = evaluator
        self.batch = batch
        self.cache = cache
        self.ids = [s.image_id for s in batch]
        self.spacing = [s.pixel_spacing_mm for s in batch]
        self.x: torch.Tensor | None = None
        self.truth: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def items(self) -> Iterator[_Item]:
        ev, cache, ids = self.evaluator, self.cache, self.ids
        n_cond = len(ev.conditions)
        for k, (condition, spec, repeat) in enumerate(ev.conditions):
            ctx = ev.context(condition, spec)
            got = cache.get_many(ctx, condition, repeat, ids) if cache is not None else {}
            cached = None
            if len(got) == len(ids):
                cached = [(got[i]["values"], got[i]["targets"]) for i in ids]
            elif self.x is None:
                self.x = ev.batch_tensor(self.batch)
                self.truth = ev.truth(self.batch)
            yield _Item(self, condition, spec, repeat, ctx, cached, k == n_cond - 1)

    def run_here(self, runner: ModelRunner, progress: ProgressFn | None) -> Iterator[ImageRecord]:
        """Every item in this thread, one after another; then the batch counts as done."""
        for item in self.items():
            yield from self.emit(item, item.compute(runner))
        if progress is not None:
            progress(len(self.batch))

    def emit(self, item: _Item, scored: list[Scored]) -> Iterator[ImageRecord]:
        """Store fresh outputs in the cache, then the item's records in image order."""
        if item.cached is None and self.cache is not None:
            self.cache.put_many(
                item.context,
                item.condition,
                item.repeat,
                (
                    (i, {"values": v, "targets": t})
                    for i, (v, t) in zip(self.ids, scored, strict=True)
                ),
            )
        name = self.evaluator.suite.name
        for s, (values, targets) in zip(self.batch, scored, strict=True):
            yield ImageRecord(
                task=name,
                image_id=s.image_id,
                patient_id=s.patient_id,
                condition=item.condition,
                repeat=item.repeat,
                values=values,
                targets=targets,
            )


class Evaluator:
    """One model on one dataset under one suite's conditions."""

    def __init__(
        self, runner: ModelRunner, dataset: Dataset, suite: Suite, options: EngineOptions
    ) -> None:
        self.runner = runner
        self.dataset = dataset
        self.suite = suite
        self.options = options
        self.plan = plan_task(suite, runner, dataset)
        self.device = torch.device(runner.device)
        self.conditions: list[tuple[str, NoiseSpec | None, int]] = [(CLEAN, None, 0)]
        for spec in suite.noise:
            for r in range(suite.repeats):
                self.conditions.append((spec.slug, spec, r))
        self._context: dict[str, str] = {}

    # --- noise ------------------------------------------------------------------------------
    def noisy(
        self,
        x: torch.Tensor,
        spec: NoiseSpec | None,
        ids: Sequence[str],
        repeat: int,
        spacing: Sequence[float | None],
    ) -> torch.Tensor:
        """The model's view of a batch under one condition (N×H×W in [0, 1]).

        ``x`` comes from ``batch_tensor`` (checked once per batch; only read here).

        Noise goes in at native resolution, unless the suite asks for the family at the
        model's input size (``at: model``): then the batch is resized first and the pixel
        spacing scaled with it, so the physical families stay consistent.
        """
        if spec is None:
            return x
        if self.suite.noise_at.get(spec.name) == "model":
            h, w = x.shape[-2:]
            size = self.runner.card.input_size
            x = resize(x.unsqueeze(1), size)[:, 0].clamp_(0.0, 1.0)
            scale = max(h / size[0], w / size[1])
            spacing = [None if s is None else s * scale for s in spacing]
        return spec.apply_checked(
            x, seed=self.suite.seed, image_ids=ids, repeat=repeat, pixel_spacing_mm=spacing
        )

    # --- per-image outputs --------------------------------------------------------------
    def infer(
        self,
        x: torch.Tensor,
        ids: Sequence[str],
        out_size: tuple[int, int] | None = None,
        runner: ModelRunner | None = None,
    ) -> torch.Tensor:
        """x: N×H×W in [0, 1] on the device → probabilities (N×T×H×W or N×T) on the device.

        Segmentation maps come back at ``out_size`` (the masks' size; default x's size).
        ``runner``: the model to call (default ``self.runner``; a lane's single-threaded one).
        """
        runner = self.runner if runner is None else runner
        card = runner.card
        raw = runner(preprocess(x.unsqueeze(1), card))
        check_outputs(raw, ids, source=runner.path)
        seg = card.task == "segmentation"
        size = (out_size or (x.shape[-2], x.shape[-1])) if seg else None
        probs = postprocess(raw, card, out_size=size)
        idx = [self.plan.channel_index[t] for t in self.plan.targets]
        return probs if idx == list(range(probs.shape[1])) else probs[:, idx]

    def truth(self, batch: Sequence[Sample]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per target: the batch's masks (N×H·W bool) and their pixel counts, made once
        per batch and shared by every condition."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.plan.task != "segmentation":
            return out
        n = len(batch)
        for t in self.plan.targets:
            m = np.stack([np.asarray((s.masks or {})[t], dtype=bool) for s in batch])
            flat = m.reshape(n, -1)
            out[t] = (flat, np.array([np.count_nonzero(r) for r in flat]))
        return out

    def score(
        self,
        probs: torch.Tensor,
        batch: Sequence[Sample],
        truth: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> list[Scored]:
        """Per-image metric values (segmentation) or scores (classification).

        ``truth``: ``self.truth(batch)``, when the caller scores several conditions of one
        batch. Segmentation probabilities are thresholded as ``metrics.binarize`` does
        (``p > threshold``); infer() has already rejected NaN outputs.
        """
        out: list[Scored] = [({}, {}) for _ in batch]
        if self.plan.task == "classification":
            p = probs.float().cpu().numpy()
            for i, s in enumerate(batch):
                labels = s.labels or {}
                for j, t in enumerate(self.plan.targets):
                    out[i][0][f"score/{t}"] = float(p[i, j])
                    out[i][1][t] = int(labels.get(t, 0))
            return out
        truth = self.truth(batch) if truth is None else truth
        thr = check_range("threshold", self.suite.threshold, 0.0, 1.0)
        if probs.device.type == "cpu":
            pred = probs.float().numpy() > thr
        else:  # threshold on the device: a quarter of the bytes come back
            pred = (probs > thr).cpu().numpy()
        n = len(batch)
        for j, t in enumerate(self.plan.targets):
            true_flat, n_true = truth[t]
            pj = pred[:, j].reshape(n, -1)
            # row by row: count_nonzero with an axis casts to int64 and sums, ~8× slower
            n_pred = np.array([np.count_nonzero(r) for r in pj])
            both = np.logical_and(pj, true_flat)
            inter = np.array([np.count_nonzero(r) for r in both])
            for metric in self.plan.metrics:
                if metric == "dice":
                    vals = M.dice_from_counts(inter, n_pred, n_true)
                elif metric == "iou":
                    vals = M.iou_from_counts(inter, n_pred, n_true)
                elif metric == "hd95":
                    # in mm when the spacing is known; in pixels (spacing 1) otherwise
                    spacing = np.array([[s.pixel_spacing_mm or 1.0] * 2 for s in batch])
                    shape = (n, *pred.shape[2:])
                    vals = M.hd95(pj.reshape(shape), true_flat.reshape(shape), spacing_mm=spacing)
                else:  # the suite validated the names
                    raise ConfigError(f"metric {metric!r} is not a segmentation metric")
                for i in range(n):
                    out[i][0][f"{metric}/{t}"] = float(vals[i])
        return out

    # --- the main loop --------------------------------------------------------------------
    def context(self, condition: str, spec: NoiseSpec | None) -> str:
        if condition not in self._context:
            self._context[condition] = context_key(
                {
                    "model": self.runner.sha256,
                    # CUDA and CPU generators give different noise streams
                    "device": self.device.type,
                    "card": self.runner.card.to_dict(),
                    "data": self.dataset.manifest_hash(),
                    "task": self.plan.task,
                    "targets": list(self.plan.targets),
                    "metrics": list(self.plan.metrics),
                    "threshold": self.suite.threshold,
                    "seed": self.suite.seed,
                    "sampler": SAMPLER_VERSION,
                    "noise": None
                    if spec is None
                    else {
                        "name": spec.name,
                        "level": spec.level,
                        "params": dict(spec.params),
                        "at": self.suite.noise_at.get(spec.name, "native"),
                    },
                }
            )
        return self._context[condition]

    def batch_tensor(self, samples: Sequence[Sample]) -> torch.Tensor:
        """The samples' images as one checked N×H×W float32 batch on the device."""
        x = torch.from_numpy(np.stack([s.image for s in samples])).to(self.device)
        return check_images(x)

    def lanes(self) -> int:
        """How many batch × condition items run at once (EngineOptions.lanes).

        By default, on the CPU with a model that can run single-threaded (onnxruntime),
        one lane per torch thread (or per model thread, when those were set): each lane
        does its item's noise, model call and metrics on one core, so the cores stay busy
        without the thread pools of onnxruntime and torch waiting on each other. Elsewhere
        one lane: the model and torch use every core themselves.
        """
        if self.options.lanes is not None:
            return self.options.lanes
        if self.device.type != "cpu" or not callable(getattr(self.runner, "single_threaded", None)):
            return 1
        threads = getattr(self.runner, "threads", None)
        return max(1, threads if threads is not None else torch.get_num_threads())

    def records(self, progress: ProgressFn | None = None) -> Iterator[ImageRecord]:
        """Stream per-image records, every condition and repeat, in batch order.

        With several lanes, torch runs single-threaded (``torch.set_num_threads(1)``) until
        the stream ends or is closed: work the consumer does between records runs so too.
        """
        opts = self.options
        cache = OutputCache(opts.cache_dir or default_cache_dir()) if opts.cache else None
        try:
            samples = self.dataset.iter_samples(
                workers=opts.workers, on_bad_image=self.suite.data.on_bad_image
            )
            batches = _same_shape_batches(samples, opts.batch_size)
            lanes = self.lanes()
            if lanes <= 1:
                for batch in batches:
                    yield from _Work(self, batch, cache).run_here(self.runner, progress)
            else:
                yield from self._lane_records(batches, cache, lanes, progress)
        finally:
            if cache is not None:
                cache.close()

    def _lane_records(
        self,
        batches: Iterator[list[Sample]],
        cache: OutputCache | None,
        lanes: int,
        progress: ProgressFn | None,
    ) -> Iterator[ImageRecord]:
        make_single = getattr(self.runner, "single_threaded", None)
        runner: ModelRunner = make_single() if callable(make_single) else self.runner
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(lanes, thread_name_prefix="robusttest-lane")
        # (work, item, future) in stream order; a window of 2 items per lane keeps every
        # lane busy (the next batch's items start while this one's finish) and memory bounded
        window: deque[tuple[_Work, _Item, Future[list[Scored]]]] = deque()

        def emit_first() -> Iterator[ImageRecord]:
            work, item, done = window.popleft()
            yield from work.emit(item, done.result())
            if item.last and progress is not None:
                progress(len(work.batch))

        try:
            for batch in batches:
                work = _Work(self, batch, cache)
                if sum(s.image.size for s in batch) * lanes > LANE_MAX_PIXELS:
                    # large images: one item at a time, torch on every thread, so memory
                    # stays that of one item (noise at native size holds a few batch copies)
                    while window:
                        yield from emit_first()
                    torch.set_num_threads(threads)
                    try:
                        yield from work.run_here(self.runner, progress)
                    finally:
                        torch.set_num_threads(1)
                    continue
                for item in work.items():
                    window.append((work, item, pool.submit(item.compute, runner)))
                    while len(window) > 2 * lanes:
                        yield from emit_first()
            while window:
                yield from emit_first()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)

    # --- gallery ----------------------------------------------------------------------------
    def gallery(self, records: Sequence[ImageRecord]) -> list[GalleryItem]:
        """Thumbnails of a few images at every condition, plus the worst case per condition.

        Runs after the main pass on a handful of images: noise is keyed per image, so the
        re-computed noisy image is identical to the one evaluated.
        """
        from robusttest.gallery import image_png, overlay_png

        n_show = self.options.gallery
        if n_show <= 0:
            return []
        seg = self.plan.task == "segmentation"
        target = self.plan.targets[0] if self.plan.targets else None
        key = f"{self.plan.metrics[0]}/{target}" if seg else None
        hib = M.get_metric(self.plan.metrics[0]).higher_is_better if seg else True
        ids_sorted = sorted({r.image_id for r in records})
        wanted: dict[str, list[tuple[str, str]]] = defaultdict(list)  # image -> (condition, kind)
        for cond in self.suite.conditions:
            for image_id in ids_sorted[:n_show]:
                wanted[image_id].append((cond, "sample"))
            if seg and key is not None and cond != CLEAN:
                vals = [
                    (r.values.get(key, math.nan), r.image_id)
                    for r in records
                    if r.condition == cond and r.repeat == 0
                ]
                vals = [v for v in vals if not math.isnan(v[0])]
                if vals:
                    worst = min(vals) if hib else max(vals)
                    wanted[worst[1]].append((cond, "worst"))
        by_id = {r.image_id: r for r in self.dataset.records}
        value_of = {
            (r.image_id, r.condition): r.values.get(key, math.nan) if key else math.nan
            for r in records
            if r.repeat == 0
        }
        samples = {i: self.dataset.load(by_id[i]) for i in sorted(wanted)}
        per_cond: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for image_id, entries in wanted.items():
            for cond, kind in entries:
                per_cond[cond].append((image_id, kind))
        items: list[GalleryItem] = []
        for cond in self.suite.conditions:
            spec = self.suite.noise_spec(cond)
            entries = per_cond.get(cond, [])
            # same-shaped images go through noise and the model together
            by_shape: dict[tuple[int, ...], list[tuple[str, str]]] = defaultdict(list)
            for image_id, kind in entries:
                by_shape[samples[image_id].image.shape].append((image_id, kind))
            for group in by_shape.values():
                ids = [i for i, _ in group]
                ss = [samples[i] for i in ids]
                x = self.batch_tensor(ss)
                xin = self.noisy(x, spec, ids, 0, [s.pixel_spacing_mm for s in ss])
                with torch.inference_mode():
                    out = self.infer(xin, ids, out_size=(x.shape[-2], x.shape[-1]))
                    probs = out.float().cpu().numpy()
                imgs = xin.float().cpu().numpy()
                for j, ((image_id, kind), sample) in enumerate(zip(group, ss, strict=True)):
                    v = value_of.get((image_id, cond), math.nan)
                    if seg and target is not None:
                        pred = np.asarray(M.binarize(probs[j, 0], self.suite.threshold))
                        overlay = overlay_png(imgs[j], pred, (sample.masks or {}).get(target))
                        caption = f"{image_id} · {cond} · {self.plan.metrics[0]} {v:.3f}"
                    else:
                        overlay = ""
                        scores = ", ".join(
                            f"{t} {float(probs[j, k]):.2f}"
                            for k, t in enumerate(self.plan.targets[:4])
                        )
                        caption = f"{image_id} · {cond} · {scores}"
                    items.append(
                        GalleryItem(
                            task=self.suite.name,
                            image_id=image_id,
                            condition=cond,
                            kind=kind,  # type: ignore[arg-type]
                            value=None if math.isnan(v) else v,
                            image_png=image_png(imgs[j]),
                            overlay_png=overlay,
                            caption=caption,
                        )
                    )
        items.sort(key=lambda g: (g.kind, g.image_id, self.suite.conditions.index(g.condition)))
        return items


# --- statistics per case ---------------------------------------------------------------------
class _ByCondition:
    """Records grouped by condition (each group in the records' order), and the arrays
    read from them, made once per summarise: a case reads its own group, not the whole
    run (a 14-label grid at 2,000 images re-read 32,000 records ~600 times)."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self.groups: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in records:
            self.groups[r.condition].append(r)
        self._arrays: dict[tuple[str, str, int], tuple[list[str], list[str], np.ndarray]] = {}

    def arrays(
        self, key: str, condition: str, repeats: int
    ) -> tuple[list[str], list[str], np.ndarray]:
        """``_arrays`` of one condition's group; the result is shared: read it only."""
        got = self._arrays.get((key, condition, repeats))
        if got is None:
            got = _arrays(self.groups.get(condition, []), key, repeats)
            self._arrays[(key, condition, repeats)] = got
        return got


def _arrays(
    records: Sequence[ImageRecord], key: str, repeats: int
) -> tuple[list[str], list[str], np.ndarray]:
    """Image ids, patient ids and an N×K matrix of one value (records of one condition)."""
    ids: dict[str, int] = {}
    pids: list[str] = []
    rows: dict[int, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.image_id not in ids:
            ids[r.image_id] = len(ids)
            pids.append(r.patient_id)
        rows[ids[r.image_id]][r.repeat] = r.values.get(key, math.nan)
    mat = np.full((len(ids), repeats), math.nan)
    for i, per in rows.items():
        for k, v in per.items():
            if k < repeats:
                mat[i, k] = v
    return list(ids), pids, mat


def _targets(by_cond: _ByCondition, label: str) -> dict[str, int]:
    return {r.image_id: int(r.targets.get(label, 0)) for r in by_cond.groups.get(CLEAN, [])}


def _verdict(
    case: CaseSpec, boot: S.BootstrapResult, metric: str
) -> tuple[str, str, tuple[str, ...]]:
    if case.gate is None:
        ctx = f"[{case.condition}]"
        if math.isnan(boot.estimate) and case.condition != CLEAN:
            return "no-gate", f"{metric} {case.target} {ctx}: undefined ({boot.reason})", ()
        return (
            "no-gate",
            f"{metric} {case.target} {ctx}: clean {boot.clean:.4g}, noisy {boot.noisy:.4g}, "
            f"drop {boot.estimate:.4g} [{boot.ci:.0%} CI {boot.ci_low:.4g}, {boot.ci_high:.4g}], "
            f"n={boot.n}; no gate",
            (),
        )
    msgs = []
    failed: list[str] = []
    gate = case.gate
    for kind in ("min", "max_drop", "max_relative_drop"):
        limit = getattr(gate, kind)
        if limit is None:
            continue
        v = S.judge_bootstrap(
            kind,
            limit,
            boot,
            gate.on,
            metric=f"{metric} {case.target}",
            context=f"[{case.condition}]",
        )
        if not v.passed:
            failed.append(kind)
        msgs.append(v.explanation)
    return ("fail" if failed else "pass"), "; ".join(msgs), tuple(failed)


def plan_cases(suite: Suite, plan: TaskPlan) -> list[CaseSpec]:
    """The grid of one evaluation: targets (and pairwise tasks) × metrics × conditions."""
    return suite.cases([*plan.case_targets, *(f"{a}-vs-{b}" for a, b in plan.pairwise)])


def summarise(records: Sequence[ImageRecord], suite: Suite, plan: TaskPlan) -> list[CaseResult]:
    """Per-case statistics and verdicts, Holm-adjusted p-values across the grid."""
    results: list[CaseResult] = []
    pairs = {f"{a}-vs-{b}": (a, b) for a, b in plan.pairwise}
    specs = plan_cases(suite, plan)
    by_cond = _ByCondition(records)
    for cs in specs:
        K = 1 if cs.condition == CLEAN else suite.repeats
        boot_kw: dict[str, Any] = {
            "n_resamples": suite.resamples,
            "seed": suite.seed,
            "ci": suite.ci,
        }
        p_value: float | None = None
        test: str | None = None
        if plan.task == "segmentation":
            key = f"{cs.metric}/{cs.target}"
            hib = M.get_metric(cs.metric).higher_is_better
            ids, pids, clean = by_cond.arrays(key, CLEAN, 1)
            c_ids, _, noisy_m = by_cond.arrays(key, cs.condition, K)
            order = {i: n for n, i in enumerate(c_ids)}
            noisy = S.average_repeats(noisy_m[[order[i] for i in ids]])
            cvec = clean[:, 0]
            boot = S.paired_bootstrap(cvec, noisy, pids, higher_is_better=hib, **boot_kw)
            if cs.condition != CLEAN:
                w = S.wilcoxon_paired(cvec, noisy)
                p_value, test = w.p_value, "wilcoxon"
        else:
            boot, p_value, test = _auroc_case(by_cond, cs, pairs.get(cs.target), K, boot_kw)
            hib = True
        verdict, message, failed = _verdict(cs, boot, cs.metric)
        spec = cs.noise
        results.append(
            CaseResult(
                case_id=cs.case_id,
                task=suite.name,
                metric=cs.metric,
                target=cs.target,
                condition=cs.condition,
                noise=spec.name if spec else None,
                level=spec.level if spec else None,
                severity=severity_name(spec.name, spec.level) if spec else None,
                higher_is_better=hib,
                clean=boot.clean,
                noisy=boot.noisy,
                drop=boot.estimate,
                ci_low=boot.ci_low,
                ci_high=boot.ci_high,
                noisy_ci_low=boot.noisy_ci_low,
                noisy_ci_high=boot.noisy_ci_high,
                relative_drop=boot.relative,
                p_value=None if p_value is None or math.isnan(p_value) else float(p_value),
                p_adjusted=None,
                test=test,
                n=boot.n,
                n_patients=boot.n_groups,
                repeats=K,
                gate=cs.gate,
                verdict=verdict,  # type: ignore[arg-type]
                message=message,
                reason=boot.reason,
                failed_limits=failed,
            )
        )
    # Holm across every noisy case of the grid that has a p-value
    idx = [i for i, r in enumerate(results) if r.p_value is not None]
    if idx:
        adj = S.holm([float(results[i].p_value or 0.0) for i in idx])
        for i, a in zip(idx, adj, strict=True):
            results[i] = replace(results[i], p_adjusted=float(a))
    return results


def _auroc_case(
    by_cond: _ByCondition,
    cs: CaseSpec,
    pair: tuple[str, str] | None,
    K: int,
    boot_kw: Mapping[str, Any],
) -> tuple[S.BootstrapResult, float | None, str | None]:
    """AUROC clean vs noisy for a label or a pairwise task; K repeats pooled."""
    if pair is not None:
        pos, neg = pair
        labels = [pos, neg]
    else:
        pos, neg, labels = cs.target, "", [cs.target]
    keys = [f"score/{lab}" for lab in labels]
    ids, pids, _ = by_cond.arrays(keys[0], CLEAN, 1)
    tg = _targets(by_cond, labels[0])
    tg2 = _targets(by_cond, labels[1]) if len(labels) == 2 else {}
    clean_s = np.stack([by_cond.arrays(k, CLEAN, 1)[2][:, 0] for k in keys], axis=1)
    noisy_s = []
    for k in keys:
        c_ids, _, mat = by_cond.arrays(k, cs.condition, K)
        order = {i: n for n, i in enumerate(c_ids)}
        noisy_s.append(mat[[order[i] for i in ids]])
    noisy = np.stack(noisy_s, axis=1)  # N×labels×K
    if len(labels) == 2:
        y2 = np.stack([[tg[i] for i in ids], [tg2[i] for i in ids]], axis=1)
        task = M.pairwise_task(clean_s, y2, labels, positive=pos, negative=neg)
        sel = np.asarray(task.subset_index)
        y = np.asarray(task.targets)
        s_clean = np.asarray(task.scores)
        s_noisy = np.stack(
            [
                np.asarray(
                    M.pairwise_task(noisy[:, :, k], y2, labels, positive=pos, negative=neg).scores
                )
                for k in range(K)
            ],
            axis=1,
        )
        groups = np.asarray(pids)[sel]
    else:
        y = np.asarray([tg[i] for i in ids])
        s_clean = clean_s[:, 0]
        s_noisy = noisy[:, 0, :]
        groups = np.asarray(pids)
    # Pool the K repeats: every repeat is a draw of the noisy scoring; the clean score is
    # repeated alongside so AUROC(clean) is unchanged and the bootstrap keeps a patient's
    # repeats together.
    yk = np.tile(y, K)
    ck = np.tile(s_clean, K)
    nk = s_noisy.T.reshape(-1)
    gk = np.tile(groups, K)
    boot = S.paired_bootstrap_auroc(yk, ck, nk, gk, **boot_kw)
    boot = replace(boot, n=len(y))  # images, not image × repeat draws
    if cs.condition == CLEAN:
        return boot, None, None
    d = S.delong_paired(y, s_clean, s_noisy[:, 0])
    return boot, d.p_value, "delong (repeat 0)"


# --- public entry point ------------------------------------------------------------------------
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
    for pkg in ("torch", "numpy", "onnxruntime", "onnx", "scipy", "torchmetrics"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def resolve_suite(suite: str | Path | Suite | None, task: str | None) -> Suite:
    """The suite object; None → the default suite for ``task`` (the model card's)."""
    if isinstance(suite, Suite):
        return suite
    if suite is None:
        if task is None:
            raise ConfigError("no suite given and no model task to choose a default from")
        return load_suite(DEFAULT_SUITE_FOR_TASK[task], task)
    return load_suite(suite, task)


def load_model_and_suite(
    model: str | Path | ModelRunner,
    suite: str | Path | Suite | None,
    *,
    device: str = "auto",
    threads: int | None = None,
) -> tuple[ModelRunner, Suite]:
    """Load a model and its suite, each informing the other.

    The model card's task picks the default suite and the variant of a multi-task suite;
    the suite's ``model:`` overrides complete or correct the card (a model exported
    without a card needs them).
    """
    if not isinstance(model, (str, Path)):
        return model, resolve_suite(suite, model.card.task)
    path = resolve_model_ref(model)
    first: ModelError | None = None
    pre: ModelRunner | None = None
    try:
        pre = load_model(path, device=device, threads=threads)
    except ModelError as exc:  # e.g. no card: the suite's overrides may supply it
        first = exc
        if suite is None:
            raise
    s = resolve_suite(suite, pre.card.task if pre is not None else None)
    if s.model:
        return load_model(path, device=device, threads=threads, card_overrides=dict(s.model)), s
    if pre is None:
        assert first is not None
        raise first
    return pre, s


def open_suite_data(suite: Suite, data_root: str | Path | None) -> Dataset:
    root = data_root if data_root is not None else suite.data.root
    if root is not None:
        raw = str(root)
        root = os.path.expandvars(os.path.expanduser(raw))
        if "$" in root:
            raise ConfigError(
                f"suite {suite.name!r}: data.root {raw!r} names an environment variable that is "
                "not set; set it (e.g. ROBUSTTEST_DATA=/path/to/data) or pass --data ROOT"
            )
    opts = dict(suite.data.options)
    opts.setdefault("task", suite.task)  # e.g. Shenzhen serves lung masks or TB labels
    if suite.data.limit is not None:
        opts["limit"] = suite.data.limit
    return open_dataset(suite.data.adapter, root, **opts)


def evaluate(
    runner: ModelRunner,
    suite: Suite,
    dataset: Dataset,
    options: EngineOptions | None = None,
) -> RunResult:
    """Evaluate an already loaded model on an opened dataset."""
    options = options or EngineOptions()
    started = _now()
    t0 = time.perf_counter()
    ev = Evaluator(runner, dataset, suite, options)
    update, close = _progress_bar(len(dataset), options.progress, f"{suite.name}")
    records: list[ImageRecord] = []
    completed = True
    error: str | None = None
    try:
        for rec in ev.records(update):
            records.append(rec)
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
    cases = summarise(records, suite, ev.plan) if records else []
    gallery = ev.gallery(records) if completed else []
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
        "n_images_total": len(dataset),
        "batch_size": options.batch_size,
        "workers": options.workers,
        "lanes": ev.lanes(),
        "cache": bool(options.cache),
        "error": error,
    }
    return RunResult(
        cases=tuple(cases),
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


def prepare(
    model: str | Path | ModelRunner,
    suite: str | Path | Suite | None = None,
    *,
    data_root: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int | None = None,
    repeats: int | None = None,
    limit: int | None = None,
) -> tuple[ModelRunner, Suite, Dataset]:
    """Load the model and suite, apply run-time overrides, open the data (no evaluation)."""
    if repeats is not None and repeats < 1:
        raise ConfigError(f"repeats: {repeats} is not >= 1 (K noise repeats per condition)")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit: {limit} is not >= 1")
    runner, s = load_model_and_suite(model, suite, device=device, threads=threads)
    s = s.with_overrides(seed=seed, repeats=repeats)
    if limit is not None:
        from dataclasses import replace

        s = replace(s, data=replace(s.data, limit=limit))
    return runner, s, open_suite_data(s, data_root)


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
) -> RunResult:
    """Evaluate ``model`` under ``suite`` (default: chosen from the model card's task).

    ``threads`` caps the model's CPU threads; ``lanes`` how many batch × condition items
    run at once (default: see ``Evaluator.lanes``). Neither changes a number.

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
    return evaluate(runner, s, dataset, options)


__all__ = [
    "EngineOptions",
    "Evaluator",
    "RobustTestError",
    "evaluate",
    "plan_task",
    "run",
    "summarise",
]

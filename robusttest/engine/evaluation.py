"""Evaluation: work items (one batch × condition × repeat) and the lanes that run them.

Each image is decoded once. A batch of same-sized images is moved to the model's device
once; its clean pass and every (condition, repeat) are computed from that one tensor, the
noise generated on the device itself. Per-image outputs stream into records; memory stays
bounded by the batch (plus the records, a few numbers per image and condition).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from robusttest import faults
from robusttest import metrics as M
from robusttest.cache import OutputCache, context_key, default_cache_dir
from robusttest.data import Dataset, Sample
from robusttest.data.base import BadImagePolicy, Record
from robusttest.engine.loading import plan_cases, plan_task, select_cases
from robusttest.errors import ConfigError, check_range
from robusttest.gates import CLEAN
from robusttest.models import ModelRunner, postprocess, preprocess, resize
from robusttest.models.runner import check_outputs
from robusttest.noise import SAMPLER_VERSION, NoiseSpec, check_images
from robusttest.progress import ProgressListener
from robusttest.results import ImageRecord
from robusttest.suite import Suite

if TYPE_CHECKING:
    from robusttest.engine.shards import Shard

# after each batch × condition × repeat: its images, and whether it was the batch's last
ProgressFn = Callable[[int, bool], None]
Condition = tuple[str, NoiseSpec | None, int]  # (condition, its noise or None, repeat)

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
    # a listener (robusttest.progress) gets each Progress; True/None: a tqdm bar on stderr
    # (None: only when stderr is a terminal); False: nothing
    progress: bool | ProgressListener | None = None
    gallery: int = 2  # sample images shown per condition (plus the worst case)
    lanes: int | None = None  # items in parallel, each single-threaded; None: Evaluator.lanes
    # deterministic pieces the evaluation splits into (engine.shards); None: the backend's
    # default (one in a single process)
    shards: int | None = None
    # set from another thread to stop as Ctrl-C does (the result is marked incomplete)
    stop: threading.Event | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: {self.batch_size} is not >= 1")
        if self.workers < 0:
            raise ConfigError(f"workers: {self.workers} is not >= 0")
        if self.lanes is not None and self.lanes < 1:
            raise ConfigError(f"lanes: {self.lanes} is not >= 1; leave it unset for the default")
        if self.shards is not None and self.shards < 1:
            raise ConfigError(f"shards: {self.shards} is not >= 1; leave it unset for the default")


def _same_shape_batches(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for s in samples:
        if batch and (len(batch) >= size or s.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


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
    seconds: float = 0.0  # how long compute took (its condition's share of the run time)

    def compute(self, runner: ModelRunner) -> list[Scored]:
        if self.cached is not None:
            return self.cached
        t0 = time.perf_counter()
        w, ev = self.work, self.work.evaluator
        x = w.x
        assert x is not None  # made by _Work.items for every uncached item
        xin = ev.noisy(x, self.spec, w.ids, self.repeat, w.spacing)
        with torch.inference_mode():
            probs = ev.infer(xin, w.ids, out_size=(x.shape[-2], x.shape[-1]), runner=runner)
        scored = ev.score(probs, w.batch, w.truth)
        self.seconds = time.perf_counter() - t0
        return scored


class _Work:
    """One batch: its checked tensor and masks, made once and shared by its items
    (``conditions``: the (condition, repeat) items to compute; default every one)."""

    def __init__(
        self,
        evaluator: Evaluator,
        batch: list[Sample],
        cache: OutputCache | None,
        conditions: Sequence[Condition] | None = None,
    ):
        self.evaluator = evaluator
        self.batch = batch
        self.cache = cache
        self.conditions = evaluator.conditions if conditions is None else conditions
        self.ids = [s.image_id for s in batch]
        self.spacing = [s.pixel_spacing_mm for s in batch]
        evaluator.spacing_seen.update(sp is not None for sp in self.spacing)
        evaluator.spacings.update(zip(self.ids, self.spacing, strict=True))
        self.x: torch.Tensor | None = None
        self.truth: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def items(self) -> Iterator[_Item]:
        ev, cache, ids = self.evaluator, self.cache, self.ids
        n_cond = len(self.conditions)
        for k, (condition, spec, repeat) in enumerate(self.conditions):
            ctx = ev.context(condition, spec)
            got = cache.get_many(ctx, condition, repeat, ids) if cache is not None else {}
            cached = None
            if len(got) == len(ids):
                try:
                    cached = [(dict(got[i]["values"]), dict(got[i]["targets"])) for i in ids]
                except (KeyError, TypeError, ValueError) as exc:  # a damaged row
                    assert cache is not None
                    cache.fail(ValueError(f"a row lacks its values or targets ({exc!r})"))
            if cached is None and self.x is None:
                self.x = ev.batch_tensor(self.batch)
                self.truth = ev.truth(self.batch)
            yield _Item(self, condition, spec, repeat, ctx, cached, k == n_cond - 1)

    def run_here(self, runner: ModelRunner, progress: ProgressFn | None) -> Iterator[ImageRecord]:
        """Every item in this thread, one after another."""
        for item in self.items():
            faults.checkpoint("inference")
            yield from self.emit(item, item.compute(runner))
            if progress is not None:
                progress(len(self.batch), item.last)

    def emit(self, item: _Item, scored: list[Scored]) -> Iterator[ImageRecord]:
        """Store fresh outputs in the cache, then the item's records in image order."""
        self.evaluator.condition_seconds[item.condition] += item.seconds
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
                suite=name,
                image_id=s.image_id,
                patient_id=s.patient_id,
                condition=item.condition,
                repeat=item.repeat,
                values=values,
                targets=targets,
            )


class Evaluator:
    """One model on one dataset under one suite's conditions.

    ``cases``: the ids of the grid's cases to evaluate (None: every case). Only the
    conditions, targets and metrics those cases need are computed (the clean pass always:
    every case is paired with it), so a deselected condition costs no model call.
    """

    def __init__(
        self,
        runner: ModelRunner,
        dataset: Dataset,
        suite: Suite,
        options: EngineOptions,
        cases: Collection[str] | None = None,
    ) -> None:
        self.runner = runner
        self.dataset = dataset
        self.suite = suite
        self.options = options
        self.full_plan = plan_task(suite, runner, dataset)
        self.grid = plan_cases(suite, self.full_plan)
        self.cases = select_cases(suite, self.grid, cases)
        self.plan = self.full_plan if cases is None else self.full_plan.restrict(self.cases)
        self.device = torch.device(runner.device)
        wanted = {c.condition for c in self.cases}
        self.condition_names: list[str] = [CLEAN]
        self.conditions: list[Condition] = [(CLEAN, None, 0)]
        for spec in suite.noise:
            if spec.slug not in wanted:
                continue
            self.condition_names.append(spec.slug)
            for r in range(suite.repeats):
                self.conditions.append((spec.slug, spec, r))
        self._context: dict[str, str] = {}
        self.cache_problem: str | None = None  # why the output cache was bypassed, if it was
        self.spacing_seen: set[bool] = set()  # whether each batch's pixel spacing was known
        self.spacings: dict[str, float | None] = {}  # each image's pixel spacing (mm), if known
        # seconds the model, noise and metrics took per condition (all repeats; summed over
        # lanes, so only their proportions mean something): how the run time is shared
        self.condition_seconds: defaultdict[str, float] = defaultdict(float)

    def items(self) -> list[tuple[str, int]]:
        """The (condition, repeat) items every image is evaluated under, in order: what a
        shard plan splits (engine.shards)."""
        return [(c, r) for c, _, r in self.conditions]

    def spacing_known(self) -> bool | None:
        """True when every image evaluated had a known pixel spacing, False when none had,
        None when some had (a spatial metric is then in mm for some images, px for others)."""
        return next(iter(self.spacing_seen)) if len(self.spacing_seen) == 1 else None

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
        probs = postprocess(raw, card, out_size=size, threshold=self.suite.threshold)
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
        shape = (int(pred.shape[2]), int(pred.shape[3]))
        # in mm when the spacing is known; in pixels (spacing 1) otherwise
        spacing = np.array([[s.pixel_spacing_mm or 1.0] * 2 for s in batch])
        metrics = [(name, M.segmentation_metric(name)) for name in self.plan.metrics]
        for j, t in enumerate(self.plan.targets):
            true_flat, n_true = truth[t]
            pj = pred[:, j].reshape(n, -1)
            # row by row: count_nonzero with an axis casts to int64 and sums, ~8× slower
            n_pred = np.array([np.count_nonzero(r) for r in pj])
            both = np.logical_and(pj, true_flat)
            inter = np.array([np.count_nonzero(r) for r in both])
            seg = M.SegmentationBatch(pj, true_flat, n_pred, n_true, inter, shape, spacing)
            for name, metric in metrics:
                vals = metric.values(seg)
                for i in range(n):
                    out[i][0][f"{name}/{t}"] = float(vals[i])
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

    def iter_samples(self, records: Sequence[Record] | None = None) -> Iterator[Sample]:
        """The dataset's images decoded (``records``: a part of them), under the suite's
        bad-image policy."""
        # 'error': every unreadable image is collected, the run goes on, and the
        # pipeline lists them all and fails the run (one bad file is not all of them)
        policy: BadImagePolicy = "skip" if self.suite.data.on_bad_image == "skip" else "collect"
        return self.dataset.iter_samples(
            workers=self.options.workers, on_bad_image=policy, records=records
        )

    def records(
        self,
        progress: ProgressFn | None = None,
        samples: Sequence[Sample] | None = None,
        shard: Shard | None = None,
    ) -> Iterator[ImageRecord]:
        """Stream per-image records, every condition and repeat, in batch order.

        ``samples``: images already decoded (``iter_samples``), for a caller that runs
        several passes over a small dataset; None decodes them. ``shard``: only its image
        range and its (condition, repeat) items (engine.shards); default the whole
        evaluation.
        With several lanes, torch runs single-threaded (``torch.set_num_threads(1)``) until
        the stream ends or is closed: work the consumer does between records runs so too.
        """
        opts = self.options
        todo = self.dataset.records
        conditions: list[Condition] = self.conditions
        if shard is not None:
            todo = todo[shard.start : shard.stop]
            wanted = set(shard.items)
            conditions = [c for c in self.conditions if (c[0], c[2]) in wanted]
            if len(conditions) != len(wanted):
                raise ConfigError(
                    f"shard {shard.index}: items {sorted(wanted - set(self.items()))} are not "
                    "evaluated by this selection; plan the shards from this evaluator's items()"
                )
        cache = OutputCache(opts.cache_dir or default_cache_dir()) if opts.cache else None
        restore: int | None = None  # torch's thread count to restore, when capped here
        try:
            if samples is None:
                images = self.iter_samples(todo)
            else:
                images = iter(samples if shard is None else samples[shard.start : shard.stop])
            batches = _same_shape_batches(images, opts.batch_size)
            lanes = self.lanes()
            if lanes <= 1:
                # options.threads caps torch's threads too (the noise, the resizing): a
                # process sharing the cores with others (an xdist worker) must not
                # oversubscribe them
                if opts.threads is not None and opts.threads < torch.get_num_threads():
                    restore = torch.get_num_threads()
                    torch.set_num_threads(opts.threads)
                for batch in batches:
                    work = _Work(self, batch, cache, conditions)
                    yield from work.run_here(self.runner, progress)
            else:
                yield from self._lane_records(batches, cache, lanes, progress, conditions)
        finally:
            if restore is not None:
                torch.set_num_threads(restore)
            if cache is not None:
                self.cache_problem = cache.problem
                cache.close()

    def _lane_records(
        self,
        batches: Iterator[list[Sample]],
        cache: OutputCache | None,
        lanes: int,
        progress: ProgressFn | None,
        conditions: Sequence[Condition],
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
            faults.checkpoint("inference")  # where Ctrl-C lands while the lanes compute
            work, item, done = window.popleft()
            yield from work.emit(item, done.result())
            if progress is not None:
                progress(len(work.batch), item.last)

        try:
            for batch in batches:
                work = _Work(self, batch, cache, conditions)
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

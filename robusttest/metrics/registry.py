"""The metric registry: each metric carries its computation, direction, unit and tasks.

The suite's allowed metrics per task, the suite schema, the engine's per-image scoring and
the per-case statistics all read this registry; adding a metric is one class:

    from robusttest.metrics import SegmentationBatch, SegmentationMetric, register_metric

    @register_metric
    class Sensitivity(SegmentationMetric):
        name = "sensitivity"
        description = "true-positive fraction |P∩T|/|T|"

        def values(self, batch: SegmentationBatch) -> np.ndarray:
            return batch.inter / np.maximum(batch.n_true, 1)

An installed package registers metrics through the entry-point group ``robusttest.metrics``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from robusttest import stats as S
from robusttest.errors import ConfigError
from robusttest.metrics import functional as F
from robusttest.registry import Registry

Task = Literal["segmentation", "classification"]
TASKS: tuple[Task, ...] = ("segmentation", "classification")
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SegmentationBatch:
    """One target's predictions and truth for N images, as the engine hands them over.

    ``pred``/``truth``: N×(H·W) bool (row-major, ``shape`` = (H, W)); ``n_pred``,
    ``n_true``, ``inter``: per-image pixel counts of the prediction, the truth and their
    overlap (made once, shared by every metric); ``spacing_mm``: N×2 (row, column) pixel
    spacing, 1.0 where the data does not say (a metric in mm is then in pixels).
    """

    pred: BoolArray
    truth: BoolArray
    n_pred: npt.NDArray[np.int64]
    n_true: npt.NDArray[np.int64]
    inter: npt.NDArray[np.int64]
    shape: tuple[int, int]
    spacing_mm: FloatArray

    @property
    def n(self) -> int:
        return int(self.pred.shape[0])

    def masks(self) -> tuple[BoolArray, BoolArray]:
        """(prediction, truth) as N×H×W masks (views)."""
        full = (self.n, *self.shape)
        return self.pred.reshape(full), self.truth.reshape(full)


class Metric(abc.ABC):
    """What suites, the engine, gates and reports know about a metric.

    ``unit``: the unit of its values ("" for fractions); ``spatial`` metrics are in ``unit``
    when the pixel spacing is known and in pixels otherwise. ``default``: computed when a
    suite names no metrics. ``compare_tolerance``: how much worse a run may get before
    ``robusttest compare`` calls it a regression: an amount in ``unit`` ("0.01") or a
    percentage of the base value ("10%"; for metrics whose scale varies, e.g. mm vs px).
    """

    name: ClassVar[str]
    tasks: ClassVar[tuple[Task, ...]]
    higher_is_better: ClassVar[bool] = True
    per_image: ClassVar[bool]
    unit: ClassVar[str] = ""
    spatial: ClassVar[bool] = False
    default: ClassVar[bool] = False
    description: ClassVar[str] = ""
    compare_tolerance: ClassVar[str] = "0.01"
    # the value of a model that ignores the image (AUROC 0.5), where the metric has one:
    # a clean CI containing it makes the metric's cases uninformative (gates.judge_floor)
    chance: ClassVar[float | None] = None

    @property
    def task(self) -> Task:
        return self.tasks[0]

    def unit_for(self, spacing_known: bool | None) -> str:
        """The unit of this metric's values: e.g. HD95 in mm with a known pixel spacing,
        px without (``None``: not known whether it is known)."""
        if not self.spatial:
            return self.unit
        if spacing_known is None:
            return f"{self.unit} or px"
        return self.unit if spacing_known else "px"


class SegmentationMetric(Metric):
    """A per-image metric of a predicted mask against the true one."""

    tasks: ClassVar[tuple[Task, ...]] = ("segmentation",)
    per_image: ClassVar[bool] = True

    @abc.abstractmethod
    def values(self, batch: SegmentationBatch) -> FloatArray:
        """One value per image (NaN where undefined)."""


class ClassificationMetric(Metric):
    """A metric of a set of scores against binary labels (defined on the set, not per image).

    ``weighted_value(y, scores, w)``: the metric with per-image weights ``w`` (patient
    multiplicities in a bootstrap resample; all 1 for the point estimate); NaN where it is
    undefined. The paired bootstrap and the paired test default to generic versions;
    override them where a faster or exact one exists (AUROC).
    """

    tasks: ClassVar[tuple[Task, ...]] = ("classification",)
    per_image: ClassVar[bool] = False

    @abc.abstractmethod
    def weighted_value(self, y: BoolArray, scores: FloatArray, w: FloatArray) -> float:
        """The metric of ``scores`` against ``y`` with image weights ``w``."""

    def paired_bootstrap(
        self,
        y: npt.ArrayLike,
        s_clean: npt.ArrayLike,
        s_noisy: npt.ArrayLike,
        groups: npt.ArrayLike | None,
        *,
        n_resamples: int,
        seed: int,
        ci: float,
    ) -> S.BootstrapResult:
        return S.paired_bootstrap_statistic(
            self.weighted_value,
            y,
            s_clean,
            s_noisy,
            groups,
            n_resamples=n_resamples,
            seed=seed,
            ci=ci,
            higher_is_better=self.higher_is_better,
        )

    def paired_test(
        self,
        y: npt.ArrayLike,
        s_clean: npt.ArrayLike,
        s_noisy: npt.ArrayLike,
        groups: npt.ArrayLike | None = None,
    ) -> tuple[float, str] | None:
        """(p-value, test name) of clean vs noisy on the same images, or None.

        ``groups``: one patient id per image; the test must take the patient as its unit
        (images of one patient are not independent), as the bootstrap does."""
        return None


METRICS: Registry[Metric] = Registry("metric", make=lambda cls: cls())


def register_metric(cls: type[Any]) -> type[Any]:
    """Class decorator: make a Metric subclass available by its ``name``."""
    return METRICS.register()(cls)


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; UnknownNameError lists the known ones."""
    return METRICS.get(name)


def _wrong_kind(name: str, metric: Metric, want: str) -> ConfigError:
    return ConfigError(
        f"metric {name!r} is a {metric.task} metric, not a {want} one; "
        f"use it with a {metric.task} suite"
    )


def segmentation_metric(name: str) -> SegmentationMetric:
    """The registered per-image segmentation metric ``name``."""
    metric = get_metric(name)
    if not isinstance(metric, SegmentationMetric):
        raise _wrong_kind(name, metric, "segmentation")
    return metric


def classification_metric(name: str) -> ClassificationMetric:
    """The registered set-level classification metric ``name``."""
    metric = get_metric(name)
    if not isinstance(metric, ClassificationMetric):
        raise _wrong_kind(name, metric, "classification")
    return metric


def available_metrics(task: str | None = None) -> tuple[str, ...]:
    """Registered metric names, those of ``task`` only when given."""
    return tuple(n for n, m in METRICS.items() if task is None or task in m.tasks)


def default_metrics(task: str) -> tuple[str, ...]:
    return tuple(n for n, m in METRICS.items() if task in m.tasks and m.default)


# --- built-in metrics ----------------------------------------------------------------------
@register_metric
class Dice(SegmentationMetric):
    name = "dice"
    default = True
    description = "Dice overlap 2|P∩T|/(|P|+|T|)"

    def values(self, batch: SegmentationBatch) -> FloatArray:
        return F.dice_from_counts(batch.inter, batch.n_pred, batch.n_true)


@register_metric
class IoU(SegmentationMetric):
    name = "iou"
    description = "Jaccard overlap |P∩T|/|P∪T|"

    def values(self, batch: SegmentationBatch) -> FloatArray:
        return F.iou_from_counts(batch.inter, batch.n_pred, batch.n_true)


@register_metric
class HD95(SegmentationMetric):
    name = "hd95"
    higher_is_better = False
    unit = "mm"
    spatial = True
    description = "95th-percentile symmetric Hausdorff distance"
    compare_tolerance = "10%"  # in mm or px: relative to the base value

    def values(self, batch: SegmentationBatch) -> FloatArray:
        pred, truth = batch.masks()
        return np.asarray(F.hd95(pred, truth, spacing_mm=batch.spacing_mm), dtype=np.float64)


@register_metric
class AUROC(ClassificationMetric):
    name = "auroc"
    default = True
    chance = 0.5
    description = "area under the ROC curve, per label"

    def weighted_value(self, y: BoolArray, scores: FloatArray, w: FloatArray) -> float:
        pos, neg = float(w[y].sum()), float(w[~y].sum())
        if pos == 0 or neg == 0:
            return math.nan
        order = np.argsort(scores, kind="stable")
        s, yy, ww = scores[order], y[order], w[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        p = np.add.reduceat(ww * yy, starts)
        q = np.add.reduceat(ww * ~yy, starts)
        below = np.cumsum(q) - q
        return float(np.sum(p * (below + 0.5 * q)) / (pos * neg))

    def paired_bootstrap(
        self,
        y: npt.ArrayLike,
        s_clean: npt.ArrayLike,
        s_noisy: npt.ArrayLike,
        groups: npt.ArrayLike | None,
        *,
        n_resamples: int,
        seed: int,
        ci: float,
    ) -> S.BootstrapResult:
        return S.paired_bootstrap_auroc(
            y, s_clean, s_noisy, groups, n_resamples=n_resamples, seed=seed, ci=ci
        )

    def paired_test(
        self,
        y: npt.ArrayLike,
        s_clean: npt.ArrayLike,
        s_noisy: npt.ArrayLike,
        groups: npt.ArrayLike | None = None,
    ) -> tuple[float, str] | None:
        res = S.delong_paired(y, s_clean, s_noisy, groups=groups)
        return res.p_value, "delong (clustered, Obuchowski)" if res.clustered else "delong"


__all__ = [
    "AUROC",
    "HD95",
    "METRICS",
    "TASKS",
    "ClassificationMetric",
    "Dice",
    "IoU",
    "Metric",
    "SegmentationBatch",
    "SegmentationMetric",
    "Task",
    "available_metrics",
    "classification_metric",
    "default_metrics",
    "get_metric",
    "register_metric",
    "segmentation_metric",
]

"""Metric math: segmentation overlap and boundary distance, label-wise AUROC.

Everything here is a pure function of model outputs and targets; nothing here knows
about noise, suites or pytest. Two rules run through the module:

- Segmentation metrics are per image. A 2-D mask pair gives a 0-d array, a batch of
  N×H×W masks gives N values, computed in one vectorised pass (Dice, IoU) or one
  distance transform per image (Hausdorff).
- An undefined value is NaN *with a reason* (a string saying why), never a silent 0.
  torchmetrics' AUROC returns 0.0 when a label has a single class among the images; a
  robustness gate comparing 0.0 with 0.0 would pass without having measured anything.

Empty-mask conventions:

==================  ====  ====  ===============================================
case                Dice  IoU   Hausdorff / HD95
==================  ====  ====  ===============================================
both empty          1     1     0 (both agree there is nothing)
exactly one empty   0     0     NaN with a reason, or ``one_empty_mm`` if given
==================  ====  ====  ===============================================

Distance is undefined with one empty mask (there is no boundary to measure from).
NaN is the honest answer but it drops the image out of a mean, so a noise level that
makes the model predict nothing would *improve* mean HD95. Gate on Dice alongside HD95
(Dice scores that image 0), or pass ``one_empty_mm`` (e.g. the image diagonal in mm)
to score it as a fixed, large distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.stats import rankdata

from robusttest.errors import ConfigError, InputError, UnknownNameError, check_range

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    ArrayIn: TypeAlias = npt.ArrayLike | torch.Tensor

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "MacroAUROC",
    "MetricValue",
    "PairwiseTask",
    "auroc",
    "auroc_per_label",
    "binarize",
    "dice",
    "dice_from_counts",
    "hausdorff",
    "hausdorff_with_reasons",
    "hd95",
    "iou",
    "iou_from_counts",
    "macro_auroc",
    "one_class_reason",
    "pairwise_task",
]


# --------------------------------------------------------------------------- inputs


def _to_numpy(x: ArrayIn) -> npt.NDArray[Any]:
    """numpy view of a numpy array, torch tensor (any device) or nested sequence."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        t = x.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()  # numpy has no bfloat16
        return np.asarray(t.numpy())
    return np.asarray(x)


def _as_mask(x: ArrayIn, name: str) -> BoolArray:
    a = _to_numpy(x)
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(f"{name}: dtype {a.dtype} is not a mask; use bool, or 0/1 integers")
    # 0/1 integer or float masks are common (PNG masks, model argmax); probabilities are not
    # masks, and silently thresholding them at 0 would turn every pixel on.
    ok = (a == 0) | (a == 1)
    if not bool(ok.all()):
        bad = a[~ok].ravel()[0].item()
        raise InputError(
            f"{name}: holds {bad!r}, not only 0/1; threshold probabilities first with "
            "binarize(prob, threshold)"
        )
    return a != 0


def _mask_pair(pred: ArrayIn, target: ArrayIn) -> tuple[BoolArray, BoolArray, bool]:
    """(pred N×H×W, target N×H×W, single) where single says the input was one 2-D mask."""
    p = _as_mask(pred, "pred")
    t = _as_mask(target, "target")
    if p.ndim not in (2, 3):
        raise InputError(f"pred: shape {p.shape} is not H×W or N×H×W")
    if p.shape != t.shape:
        raise InputError(f"pred shape {p.shape} differs from target shape {t.shape}")
    single = p.ndim == 2
    if single:
        p, t = p[None], t[None]
    return p, t, single


def _shaped(values: FloatArray, single: bool) -> FloatArray:
    # A 2-D input gives a 0-d array so float(dice(a, b)) works without a deprecation warning.
    return values.reshape(()) if single else values


# ----------------------------------------------------------------------- thresholding


def binarize(prob: ArrayIn, threshold: float = 0.5) -> Any:
    """Foreground where ``prob > threshold`` (strict, as torchmetrics does).

    Keeps the container: a torch tensor gives a bool tensor on the same device, anything
    else a numpy bool array. NaN probabilities raise InputError rather than silently
    becoming background.
    """
    thr = check_range("threshold", threshold, 0.0, 1.0)
    if hasattr(prob, "detach") and hasattr(prob, "isnan"):
        tensor = cast(Any, prob)  # a torch.Tensor; torch itself is not imported here
        if bool(tensor.isnan().any()):
            raise InputError("prob: contains NaN; cannot threshold")
        return tensor > thr
    a = np.asarray(prob)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"prob: dtype {a.dtype} is not numeric")
    if np.issubdtype(a.dtype, np.floating) and bool(np.isnan(a).any()):
        raise InputError("prob: contains NaN; cannot threshold")
    return a > thr


# -------------------------------------------------------------------- overlap metrics


def _counts(p: BoolArray, t: BoolArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = p.shape[0]
    pf = p.reshape(n, -1)
    tf = t.reshape(n, -1)
    inter = np.count_nonzero(pf & tf, axis=1).astype(np.float64)
    return (
        inter,
        np.count_nonzero(pf, axis=1).astype(np.float64),
        np.count_nonzero(tf, axis=1).astype(np.float64),
    )


def dice(pred: ArrayIn, target: ArrayIn) -> FloatArray:
    """Dice = 2|P∩T| / (|P|+|T|) per image; 1 when both masks are empty, 0 when one is.

    ``pred``/``target``: bool (or 0/1) arrays or tensors, H×W or N×H×W. Returns a 0-d
    array for H×W input, else N values.
    """
    p, t, single = _mask_pair(pred, target)
    return _shaped(dice_from_counts(*_counts(p, t)), single)


def dice_from_counts(
    inter: npt.ArrayLike, n_pred: npt.ArrayLike, n_true: npt.ArrayLike
) -> FloatArray:
    """Dice from per-image pixel counts |P∩T|, |P|, |T| (the same conventions as ``dice``)."""
    i, sp, st = (np.asarray(v, dtype=np.float64) for v in (inter, n_pred, n_true))
    denom = sp + st
    return np.where(denom == 0, 1.0, 2.0 * i / np.maximum(denom, 1.0))


def iou_from_counts(
    inter: npt.ArrayLike, n_pred: npt.ArrayLike, n_true: npt.ArrayLike
) -> FloatArray:
    """IoU from per-image pixel counts |P∩T|, |P|, |T| (the same conventions as ``iou``)."""
    i, sp, st = (np.asarray(v, dtype=np.float64) for v in (inter, n_pred, n_true))
    union = sp + st - i
    return np.where(union == 0, 1.0, i / np.maximum(union, 1.0))


def iou(pred: ArrayIn, target: ArrayIn) -> FloatArray:
    """IoU (Jaccard) = |P∩T| / |P∪T| per image; 1 when both are empty, 0 when one is."""
    p, t, single = _mask_pair(pred, target)
    return _shaped(iou_from_counts(*_counts(p, t)), single)


# ------------------------------------------------------------------ boundary distance


def _spacings(spacing_mm: float | Sequence[float] | npt.ArrayLike, n: int) -> FloatArray:
    """N×2 (row mm, col mm) from a scalar, a (row, col) pair, or an N×2 array."""
    s = np.asarray(spacing_mm, dtype=np.float64)
    if s.ndim == 0:
        s = np.full((n, 2), float(s))
    elif s.shape == (2,):
        s = np.broadcast_to(s, (n, 2))
    elif s.shape != (n, 2):
        raise ConfigError(
            f"spacing_mm: shape {s.shape} not allowed; give one number, a (row_mm, col_mm) "
            f"pair, or an array of shape ({n}, 2) with one pair per image"
        )
    if not bool(np.all(np.isfinite(s) & (s > 0))):
        raise ConfigError(f"spacing_mm: {spacing_mm!r} must be finite and > 0")
    return s


_CROSS = ndimage.generate_binary_structure(2, 1)


def _border(m: BoolArray) -> BoolArray:
    # Boundary = pixels of the mask with a 4-neighbour outside it (the image edge counts as
    # outside), as MONAI and medpy define it.
    eroded = ndimage.binary_erosion(m, structure=_CROSS, border_value=0)
    return m & ~eroded


def _directed_distances(
    p: BoolArray, t: BoolArray, sampling: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Distances (mm) from each boundary pixel of p to t's boundary, and from t's to p's."""
    # Crop to the union's bounding box plus one pixel: every boundary pixel lies inside,
    # so the nearest boundary pixel does too and the distances are exact; 1024² images
    # with small structures get much cheaper.
    rows = np.flatnonzero((p | t).any(axis=1))
    cols = np.flatnonzero((p | t).any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), rows[-1] + 2
    c0, c1 = max(cols[0] - 1, 0), cols[-1] + 2
    pc, tc = p[r0:r1, c0:c1], t[r0:r1, c0:c1]
    bp, bt = _border(pc), _border(tc)
    dt_t = ndimage.distance_transform_edt(~bt, sampling=sampling)
    dt_p = ndimage.distance_transform_edt(~bp, sampling=sampling)
    return np.asarray(dt_t[bp], dtype=np.float64), np.asarray(dt_p[bt], dtype=np.float64)


def hausdorff_with_reasons(
    pred: ArrayIn,
    target: ArrayIn,
    spacing_mm: float | Sequence[float] | npt.ArrayLike = 1.0,
    *,
    percentile: float = 95.0,
    one_empty_mm: float | None = None,
) -> tuple[FloatArray, list[str | None]]:
    """Percentile Hausdorff distance in mm per image, and a reason for every NaN.

    The distance is ``max(P(d(∂P→∂T)), P(d(∂T→∂P)))``: the larger of the two directed
    ``percentile``-th percentiles of boundary-to-boundary Euclidean distances (MONAI's
    ``compute_hausdorff_distance`` convention; medpy's ``hd95`` instead pools both
    directions before taking the percentile, which gives equal or smaller values).
    ``percentile=100`` is the classical Hausdorff distance. Percentiles interpolate
    linearly (numpy's default).

    ``spacing_mm``: pixel size, one number, a (row_mm, col_mm) pair, or an N×2 array with
    one pair per image. Empty masks: both empty → 0; exactly one empty → NaN and a reason,
    or ``one_empty_mm`` when given. Returns (values, reasons) with ``reasons[i]`` None
    where ``values[i]`` is defined; values is a 0-d array for H×W input.
    """
    pct = check_range("percentile", percentile, 0.0, 100.0)
    if one_empty_mm is not None:
        check_range("one_empty_mm", one_empty_mm, 0.0)
    p, t, single = _mask_pair(pred, target)
    n = p.shape[0]
    sp = _spacings(spacing_mm, n)
    values = np.empty(n, dtype=np.float64)
    reasons: list[str | None] = [None] * n
    for i in range(n):  # one distance transform per image: scipy has no batched EDT
        has_p, has_t = bool(p[i].any()), bool(t[i].any())
        if not has_p and not has_t:
            values[i] = 0.0
        elif has_p != has_t:
            if one_empty_mm is not None:
                values[i] = float(one_empty_mm)
            else:
                values[i] = math.nan
                which = "prediction" if not has_p else "target"
                other = "target" if not has_p else "prediction"
                reasons[i] = (
                    f"{which} mask is empty but the {other} is not: boundary distance is "
                    "undefined (pass one_empty_mm to score it as a fixed distance)"
                )
        else:
            d_pt, d_tp = _directed_distances(p[i], t[i], sp[i])
            values[i] = max(float(np.percentile(d_pt, pct)), float(np.percentile(d_tp, pct)))
    return _shaped(values, single), reasons


def hausdorff(
    pred: ArrayIn,
    target: ArrayIn,
    spacing_mm: float | Sequence[float] | npt.ArrayLike = 1.0,
    *,
    percentile: float = 100.0,
    one_empty_mm: float | None = None,
) -> FloatArray:
    """Hausdorff distance (mm) per image; see :func:`hausdorff_with_reasons`."""
    values, _ = hausdorff_with_reasons(
        pred, target, spacing_mm, percentile=percentile, one_empty_mm=one_empty_mm
    )
    return values


def hd95(
    pred: ArrayIn,
    target: ArrayIn,
    spacing_mm: float | Sequence[float] | npt.ArrayLike = 1.0,
    *,
    one_empty_mm: float | None = None,
) -> FloatArray:
    """95th-percentile symmetric Hausdorff distance (mm) per image; lower is better.

    Both empty → 0; exactly one empty → NaN (reason from :func:`hausdorff_with_reasons`)
    unless ``one_empty_mm`` is given. See the module docstring for why.
    """
    return hausdorff(pred, target, spacing_mm, percentile=95.0, one_empty_mm=one_empty_mm)


# ---------------------------------------------------------------------------- AUROC


@dataclass(frozen=True)
class MetricValue:
    """A metric value that may be undefined; ``reason`` says why whenever value is NaN."""

    value: float
    reason: str | None = None
    n: int | None = None  # images the value was computed on

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)

    def __float__(self) -> float:
        return self.value


def _scores_1d(x: ArrayIn, name: str) -> FloatArray:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise InputError(f"{name}: shape {a.shape} is not one-dimensional (one value per image)")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"{name}: dtype {a.dtype} is not numeric")
    a = a.astype(np.float64)
    if not bool(np.isfinite(a).all()):
        raise InputError(f"{name}: contains NaN or inf; scores must be finite")
    return a


def _targets_1d(x: ArrayIn, name: str) -> BoolArray:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise InputError(f"{name}: shape {a.shape} is not one-dimensional (one value per image)")
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"{name}: dtype {a.dtype} is not 0/1 or bool")
    ok = (a == 0) | (a == 1)
    if not bool(ok.all()):
        raise InputError(f"{name}: holds {a[~ok][0].item()!r}; binary targets must be 0/1 or bool")
    return a != 0


def _auc_midrank(scores: FloatArray, y: BoolArray) -> float:
    # Mann–Whitney: AUROC = (sum of positive midranks − m(m+1)/2) / (m·n); ties count ½.
    m = int(y.sum())
    n = y.size - m
    ranks = rankdata(scores)
    return float((ranks[y].sum() - m * (m + 1) / 2.0) / (m * n))


def one_class_reason(y: ArrayIn, label: str | None = None) -> str | None:
    """Why AUROC is undefined for binary targets ``y``, or None when it is defined."""
    t = _targets_1d(y, "targets")
    m = int(t.sum())
    what = f"label {label!r}" if label is not None else "the targets"
    if t.size == 0:
        return f"{what}: no images"
    if m == t.size:
        return f"{what} has only positive cases among {t.size} images; AUROC is undefined"
    if m == 0:
        return f"{what} has only negative cases among {t.size} images; AUROC is undefined"
    return None


def auroc(scores: ArrayIn, targets: ArrayIn, *, label: str | None = None) -> MetricValue:
    """Binary AUROC by midranks (Mann–Whitney U; ties count ½), equal to sklearn's.

    When the targets hold one class only (or no images), the value is NaN with a reason
    naming ``label`` and n, never torchmetrics' silent 0.0.
    """
    s = _scores_1d(scores, "scores")
    y = _targets_1d(targets, "targets")
    if s.shape != y.shape:
        raise InputError(f"scores has {s.size} values but targets has {y.size}")
    reason = one_class_reason(y, label)
    if reason is not None:
        return MetricValue(math.nan, reason, int(y.size))
    return MetricValue(_auc_midrank(s, y), None, int(y.size))


def _label_matrix(
    scores: ArrayIn, targets: ArrayIn, labels: Sequence[str]
) -> tuple[FloatArray, npt.NDArray[Any], list[str]]:
    s = _to_numpy(scores)
    t = _to_numpy(targets)
    names = list(labels)
    if s.ndim != 2:
        raise InputError(f"scores: shape {s.shape} is not N×L (images × labels)")
    if s.shape != t.shape:
        raise InputError(f"scores shape {s.shape} differs from targets shape {t.shape}")
    if len(names) != s.shape[1]:
        raise ConfigError(f"labels: {len(names)} names given for {s.shape[1]} score columns")
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise ConfigError(f"labels: duplicate names {dup}")
    return s, t, names


def auroc_per_label(
    scores: ArrayIn, targets: ArrayIn, labels: Sequence[str]
) -> dict[str, MetricValue]:
    """AUROC of each column of N×L ``scores`` against N×L binary ``targets``."""
    s, t, names = _label_matrix(scores, targets, labels)
    return {name: auroc(s[:, j], t[:, j], label=name) for j, name in enumerate(names)}


@dataclass(frozen=True)
class MacroAUROC:
    """Mean AUROC over the labels where it is defined, and which labels were left out."""

    value: float
    used: tuple[str, ...]
    ignored: Mapping[str, str] = field(default_factory=dict)  # label -> reason

    @property
    def reason(self) -> str | None:
        """None when every label counted; else which were left out (and why NaN if all)."""
        if not self.ignored:
            return None if self.used else "no labels given"
        parts = "; ".join(f"{k}: {v}" for k, v in self.ignored.items())
        head = (
            "no label has a defined AUROC"
            if not self.used
            else (f"mean over {len(self.used)} labels; ignored {len(self.ignored)}")
        )
        return f"{head} ({parts})"

    def as_metric_value(self) -> MetricValue:
        return MetricValue(self.value, self.reason)


def macro_auroc(per_label: Mapping[str, MetricValue]) -> MacroAUROC:
    """Unweighted mean of the defined per-label AUROCs; NaN labels are listed, not averaged."""
    used = tuple(k for k, v in per_label.items() if v.defined)
    ignored = {k: (v.reason or "undefined") for k, v in per_label.items() if not v.defined}
    value = float(np.mean([per_label[k].value for k in used])) if used else math.nan
    return MacroAUROC(value, used, ignored)


# ------------------------------------------------------------------- pairwise tasks


class PairwiseTask(NamedTuple):
    """Binary sub-task "positive vs negative label" on the images with exactly one of them."""

    subset_index: npt.NDArray[np.intp]  # rows of the original N images kept
    scores: FloatArray  # log-odds that the image has `positive` rather than `negative`
    targets: npt.NDArray[np.int64]  # 1 = positive label, 0 = negative label


def pairwise_task(
    scores: ArrayIn,
    targets: ArrayIn,
    labels: Sequence[str],
    positive: str = "Pneumothorax",
    negative: str = "Atelectasis",
    *,
    scores_are_logits: bool = False,
    eps: float = 1e-12,
) -> PairwiseTask:
    """Restrict a multi-label problem to "``positive`` vs ``negative``" (e.g. PTX vs ATL).

    Keeps the images positive for exactly one of the two labels; target is 1 for the
    ``positive`` label. The task score is ``logit(p_pos) − logit(p_neg)``. Why: with
    independent sigmoid outputs (how multi-label CXR models are trained) the probability
    that an image has ``positive`` *given that it has exactly one of the two* is
    ``p_pos(1−p_neg) / (p_pos(1−p_neg) + p_neg(1−p_pos)) = sigmoid(logit p_pos − logit
    p_neg)``, so this score is that conditional probability's log-odds: it matches the
    subset definition, and it is monotone in p_pos and in 1−p_neg. The log-odds form is
    returned, not the sigmoid, because the sigmoid rounds to exactly 1.0 in float64 for
    confident pairs and would create false ties for AUROC. Probabilities are clipped to
    [eps, 1−eps] before the logit; pass ``scores_are_logits=True`` for raw logits (then
    no clipping is needed and nothing saturates).
    """
    if positive == negative:
        raise ConfigError(f"pairwise_task: positive and negative are both {positive!r}")
    s, t, names = _label_matrix(scores, targets, labels)
    for lab in (positive, negative):
        if lab not in names:
            raise UnknownNameError("label", lab, names)
    check_range("eps", eps, 0.0, 0.5, low_open=True, high_open=True)
    jp, jn = names.index(positive), names.index(negative)
    tp = _targets_1d(t[:, jp], f"targets[{positive}]")
    tn = _targets_1d(t[:, jn], f"targets[{negative}]")
    sp = _scores_1d(s[:, jp], f"scores[{positive}]")
    sn = _scores_1d(s[:, jn], f"scores[{negative}]")
    index = np.flatnonzero(tp != tn)
    if scores_are_logits:
        diff = sp - sn
    else:
        for name, col in ((positive, sp), (negative, sn)):
            if bool(((col < 0) | (col > 1)).any()):
                raise InputError(
                    f"scores[{name}]: values outside [0, 1]; pass scores_are_logits=True for logits"
                )
        pc = np.clip(sp, eps, 1.0 - eps)
        nc = np.clip(sn, eps, 1.0 - eps)
        diff = (np.log(pc) - np.log1p(-pc)) - (np.log(nc) - np.log1p(-nc))
    return PairwiseTask(index, diff[index], tp[index].astype(np.int64))

"""Patient-clustered paired bootstrap of a drop: per-image means, AUROC, any statistic.

Percentile CIs of the drop by resampling **patients** with replacement (images of one
patient are correlated; resampling images would make the CI too narrow). Vectorised:
each chunk of resamples is one matrix of per-patient counts, so there is no Python loop
over resamples. The same seed gives the same resample matrix for every noise level, so
the CIs of a degradation curve share their random numbers and the curve is not jagged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from robusttest.errors import UnknownNameError
from robusttest.stats.inputs import (
    FloatArray,
    IntArray,
    _binary,
    _check_resampling,
    _group_codes,
    _same_length,
    _vector,
)

# Elements per resample-chunk matrix (8 MiB of float64): bounds memory for large N while
# keeping each chunk one vectorised numpy operation.
_CHUNK_ELEMS = 1 << 20


def _count_chunks(seed: int, n_groups: int, n_resamples: int, width: int) -> Iterator[FloatArray]:
    """Per-resample patient multiplicities, b×G per chunk (rows: resamples), from
    ``default_rng(seed)``.

    Drawing G patients with replacement and counting them (bincount over the flattened
    index matrix) gives the multinomial weights without a loop over resamples. Every case
    of a run draws the same weights (same seed, same patients): up to
    ``_SHARED_WEIGHTS_ELEMS`` they are drawn once and shared (read only).
    """
    rows = max(1, _CHUNK_ELEMS // max(n_groups, width, 1))
    if n_groups * n_resamples <= _SHARED_WEIGHTS_ELEMS:
        yield from _shared_weights(seed, n_groups, n_resamples, rows)
    else:
        yield from _draw_weights(seed, n_groups, n_resamples, rows)


_SHARED_WEIGHTS_ELEMS = 1 << 22  # 32 MiB of float64 per entry


def _draw_weights(seed: int, n_groups: int, n_resamples: int, rows: int) -> Iterator[FloatArray]:
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, rows):
        b = min(rows, n_resamples - start)
        idx = rng.integers(0, n_groups, size=(b, n_groups))
        flat = (idx + (np.arange(b) * n_groups)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups)
        yield counts.astype(np.float64)


@functools.lru_cache(maxsize=4)
def _shared_weights(
    seed: int, n_groups: int, n_resamples: int, rows: int
) -> tuple[FloatArray, ...]:
    chunks = tuple(_draw_weights(seed, n_groups, n_resamples, rows))
    for c in chunks:
        c.flags.writeable = False
    return chunks


def _percentile_ci(x: FloatArray, ci: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(x, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _sd(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def _relative(drop: float, clean: float) -> float:
    return drop / abs(clean) if clean != 0 and math.isfinite(clean) else math.nan


# ------------------------------------------------------------------------ bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """Paired patient-bootstrap of a clean-vs-noisy comparison.

    ``estimate``/``ci_low``/``ci_high``/``se``: the drop (positive = noisy is worse), in
    the metric's units, point estimate on all images and percentile CI over resamples.
    ``noisy_*``: the noisy metric itself (for ``min`` gates). ``relative_*``: the drop as
    a fraction of |clean| (for ``max_relative_drop`` gates), from the same resamples.
    ``n``: images used; ``n_groups``: patients; ``n_excluded``: image pairs dropped for
    a NaN in either arm; ``n_skipped``: resamples without both classes (AUROC only).
    ``reason``: set when the CI (or estimate) is NaN. ``replicates``: (clean, noisy) of
    every resample in draw order, NaN where one could not be scored: the same seed and
    patients draw the same resamples at every noise level, so a statistic of several
    levels (the failure frontier) is bootstrapped with the same patient weights at each.
    """

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    n_groups: int
    se: float
    clean: float
    noisy: float
    noisy_ci_low: float
    noisy_ci_high: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    higher_is_better: bool = True
    ci: float = 0.95
    n_resamples: int = 0
    seed: int = 0
    n_skipped: int = 0
    n_excluded: int = 0
    reason: str | None = None
    replicates: tuple[FloatArray, FloatArray] | None = field(
        default=None, compare=False, repr=False
    )


class _Setup(NamedTuple):
    """What every result of one bootstrap call records about how it was made."""

    hib: bool
    ci: float
    b: int
    seed: int
    n_excluded: int = 0


def _empty_result(
    reason: str,
    setup: _Setup,
    *,
    n: int,
    n_groups: int,
    clean: float = math.nan,
    noisy: float = math.nan,
    estimate: float = math.nan,
) -> BootstrapResult:
    """A result whose CI (and maybe estimate) is undefined, saying why."""
    nan = math.nan
    return BootstrapResult(
        estimate=estimate,
        ci_low=nan,
        ci_high=nan,
        n=n,
        n_groups=n_groups,
        se=nan,
        clean=clean,
        noisy=noisy,
        noisy_ci_low=nan,
        noisy_ci_high=nan,
        relative=_relative(estimate, clean),
        relative_ci_low=nan,
        relative_ci_high=nan,
        higher_is_better=setup.hib,
        ci=setup.ci,
        n_resamples=setup.b,
        seed=setup.seed,
        n_excluded=setup.n_excluded,
        reason=reason,
    )


def _from_resamples(
    setup: _Setup,
    *,
    clean: float,
    noisy: float,
    clean_b: FloatArray,
    noisy_b: FloatArray,
    sign: float,
    n: int,
    n_groups: int,
    n_skipped: int = 0,
    reason: str | None = None,
    replicates: tuple[FloatArray, FloatArray] | None = None,
) -> BootstrapResult:
    """Point estimates plus percentile CIs of drop, noisy value and relative drop;
    ``replicates``: every resample's (clean, noisy), unfiltered (see BootstrapResult)."""
    estimate = sign * (clean - noisy)
    drops = sign * (clean_b - noisy_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(clean_b != 0, drops / np.abs(clean_b), np.nan)
    lo, hi = _percentile_ci(drops, setup.ci)
    zlo, zhi = _percentile_ci(noisy_b, setup.ci)
    rlo, rhi = _percentile_ci(rel, setup.ci)
    return BootstrapResult(
        estimate=estimate,
        ci_low=lo,
        ci_high=hi,
        n=n,
        n_groups=n_groups,
        se=_sd(drops),
        clean=clean,
        noisy=noisy,
        noisy_ci_low=zlo,
        noisy_ci_high=zhi,
        relative=_relative(estimate, clean),
        relative_ci_low=rlo,
        relative_ci_high=rhi,
        higher_is_better=setup.hib,
        ci=setup.ci,
        n_resamples=setup.b,
        seed=setup.seed,
        n_skipped=n_skipped,
        n_excluded=setup.n_excluded,
        reason=reason,
        replicates=replicates,
    )


def paired_bootstrap(
    clean: npt.ArrayLike,
    noisy: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    statistic: str = "mean",
    higher_is_better: bool = True,
) -> BootstrapResult:
    """Patient-clustered paired bootstrap of the drop in a per-image metric's mean.

    ``clean``, ``noisy``: one value per image (average noise repeats first with
    :func:`average_repeats`); ``groups``: one patient id per image (None: every image its
    own patient). Each resample draws patients with replacement and takes the mean over
    all their images (images weigh equally, as in the point estimate). CI: percentile.
    Image pairs with NaN in either arm (e.g. HD95 of an empty prediction) are left out
    and counted in ``n_excluded``. Fewer than 2 patients: NaN CI with a reason.
    ``statistic``: only "mean" (per-patient sums make the mean exact and vectorised).
    """
    if statistic != "mean":
        raise UnknownNameError("bootstrap statistic", statistic, ["mean"])
    _check_resampling(n_resamples, seed, ci)
    c = _vector(clean, "clean", allow_nan=True)
    z = _vector(noisy, "noisy", allow_nan=True)
    n_all = _same_length(clean=c, noisy=z)
    codes, _ = _group_codes(groups, n_all)
    keep = np.isfinite(c) & np.isfinite(z)
    n_excluded = int(n_all - keep.sum())
    c, z, codes = c[keep], z[keep], codes[keep]
    codes, n_groups = _group_codes(codes, c.size)  # re-densify after exclusions
    n = int(c.size)
    sign = 1.0 if higher_is_better else -1.0
    setup = _Setup(higher_is_better, ci, n_resamples, seed, n_excluded)
    if n == 0:
        why = "no image pairs" + (f" ({n_excluded} excluded for NaN)" if n_excluded else "")
        return _empty_result(why, setup, n=0, n_groups=0)
    clean_mean, noisy_mean = float(c.mean()), float(z.mean())
    estimate = sign * (clean_mean - noisy_mean)
    if n_groups < 2:
        return _empty_result(
            "only 1 patient: a patient bootstrap cannot estimate uncertainty",
            setup,
            n=n,
            n_groups=n_groups,
            clean=clean_mean,
            noisy=noisy_mean,
            estimate=estimate,
        )

    # Per-patient sums of clean, noisy and image counts: a resample's means are then one
    # matrix product of its patient multiplicities with this G×3 table.
    table = np.stack(
        [
            np.bincount(codes, weights=c, minlength=n_groups),
            np.bincount(codes, weights=z, minlength=n_groups),
            np.bincount(codes, minlength=n_groups).astype(np.float64),
        ],
        axis=1,
    )
    parts = [w @ table for w in _count_chunks(seed, n_groups, n_resamples, 3)]
    sums = np.concatenate(parts, axis=0)
    clean_b, noisy_b = sums[:, 0] / sums[:, 2], sums[:, 1] / sums[:, 2]
    return _from_resamples(
        setup,
        clean=clean_mean,
        noisy=noisy_mean,
        clean_b=clean_b,
        noisy_b=noisy_b,
        sign=sign,
        n=n,
        n_groups=n_groups,
        replicates=(clean_b, noisy_b),
    )


class _AucPrep(NamedTuple):
    cols: IntArray  # patient code of each image, in ascending-score order
    y: npt.NDArray[np.bool_]  # targets in that order
    starts: IntArray  # first position of each block of tied scores


def _auc_prep(scores: FloatArray, y: npt.NDArray[np.bool_], codes: IntArray) -> _AucPrep:
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]).astype(np.intp)
    return _AucPrep(codes[order], y[order], starts)


def _weighted_auc(w: FloatArray, prep: _AucPrep) -> FloatArray:
    """AUROC of each row of patient multiplicities ``w`` (b×G); NaN where one class.

    Per block of tied scores: positive weight × (negative weight strictly below + ½ the
    tied negative weight), summed, over W_pos·W_neg; the Mann–Whitney AUROC with
    replicated images, for all resamples at once.
    """
    wi = w[:, prep.cols]  # b×n image weights, ascending score
    pos = np.add.reduceat(wi * prep.y, prep.starts, axis=1)
    neg = np.add.reduceat(wi * ~prep.y, prep.starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def paired_bootstrap_auroc(
    y: npt.ArrayLike,
    s_clean: npt.ArrayLike,
    s_noisy: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> BootstrapResult:
    """Patient bootstrap of the AUROC drop ``AUROC(clean) − AUROC(noisy)`` for one label.

    Each resample draws patients with replacement and recomputes both AUROCs on the same
    resampled images (midrank AUROC with multiplicities, all resamples vectorised).
    Resamples holding one class only are skipped and counted in ``n_skipped``; the CI
    uses the rest. One class in the full data: NaN estimate with a reason.
    """
    _check_resampling(n_resamples, seed, ci)
    t = _binary(y, "y")
    sc = _vector(s_clean, "s_clean", allow_nan=False)
    sz = _vector(s_noisy, "s_noisy", allow_nan=False)
    n = _same_length(y=t, s_clean=sc, s_noisy=sz)
    codes, n_groups = _group_codes(groups, n)
    setup = _Setup(True, ci, n_resamples, seed)
    m = int(t.sum())
    if m == 0 or m == n:
        which = "negative" if m == 0 else "positive"
        why = f"only {which} cases among {n} images: AUROC is undefined"
        return _empty_result(why, setup, n=n, n_groups=n_groups)
    pc, pz = _auc_prep(sc, t, codes), _auc_prep(sz, t, codes)
    ones = np.ones((1, n_groups))
    auc_c, auc_z = float(_weighted_auc(ones, pc)[0]), float(_weighted_auc(ones, pz)[0])
    if n_groups < 2:
        return _empty_result(
            "only 1 patient: a patient bootstrap cannot estimate uncertainty",
            setup,
            n=n,
            n_groups=n_groups,
            clean=auc_c,
            noisy=auc_z,
            estimate=auc_c - auc_z,
        )
    cs, zs = [], []
    for w in _count_chunks(seed, n_groups, n_resamples, n):
        cs.append(_weighted_auc(w, pc))
        zs.append(_weighted_auc(w, pz))
    bc, bz = np.concatenate(cs), np.concatenate(zs)
    valid = np.isfinite(bc) & np.isfinite(bz)
    n_skipped = int(n_resamples - valid.sum())
    reason = None
    if not valid.any():
        reason = f"all {n_resamples} resamples held one class only: no CI"
    return _from_resamples(
        setup,
        clean=auc_c,
        noisy=auc_z,
        clean_b=bc[valid],
        noisy_b=bz[valid],
        sign=1.0,
        n=n,
        n_groups=n_groups,
        n_skipped=n_skipped,
        reason=reason,
        replicates=(np.where(valid, bc, np.nan), np.where(valid, bz, np.nan)),
    )


WeightedStatistic = Callable[[npt.NDArray[np.bool_], FloatArray, FloatArray], float]


def paired_bootstrap_statistic(
    statistic: WeightedStatistic,
    y: npt.ArrayLike,
    s_clean: npt.ArrayLike,
    s_noisy: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    higher_is_better: bool = True,
) -> BootstrapResult:
    """Patient bootstrap of the drop in any set-level statistic ``statistic(y, scores, w)``.

    ``w`` holds one weight per image: its patient's multiplicity in the resample (all 1 for
    the point estimate), so the statistic sees exactly the images a resample drew, with
    the same weights as :func:`paired_bootstrap_auroc` (same seed, same patients). NaN
    from the statistic marks a resample it cannot score (skipped, counted in n_skipped).
    One Python call per resample: for extension metrics; AUROC has its vectorised path.
    """
    _check_resampling(n_resamples, seed, ci)
    t = _binary(y, "y")
    sc = _vector(s_clean, "s_clean", allow_nan=False)
    sz = _vector(s_noisy, "s_noisy", allow_nan=False)
    n = _same_length(y=t, s_clean=sc, s_noisy=sz)
    codes, n_groups = _group_codes(groups, n)
    setup = _Setup(higher_is_better, ci, n_resamples, seed)
    sign = 1.0 if higher_is_better else -1.0
    ones = np.ones(n)
    v_c, v_z = float(statistic(t, sc, ones)), float(statistic(t, sz, ones))
    if not (math.isfinite(v_c) and math.isfinite(v_z)):
        return _empty_result(
            "the statistic is undefined on these images", setup, n=n, n_groups=n_groups
        )
    if n_groups < 2:
        return _empty_result(
            "only 1 patient: a patient bootstrap cannot estimate uncertainty",
            setup,
            n=n,
            n_groups=n_groups,
            clean=v_c,
            noisy=v_z,
            estimate=sign * (v_c - v_z),
        )
    bc: list[float] = []
    bz: list[float] = []
    for chunk in _count_chunks(seed, n_groups, n_resamples, n):
        for row in chunk:
            w = row[codes]
            bc.append(float(statistic(t, sc, w)))
            bz.append(float(statistic(t, sz, w)))
    ac, az = np.asarray(bc), np.asarray(bz)
    valid = np.isfinite(ac) & np.isfinite(az)
    n_skipped = int(n_resamples - valid.sum())
    reason = None if valid.any() else f"no resample of {n_resamples} could be scored: no CI"
    return _from_resamples(
        setup,
        clean=v_c,
        noisy=v_z,
        clean_b=ac[valid],
        noisy_b=az[valid],
        sign=sign,
        n=n,
        n_groups=n_groups,
        n_skipped=n_skipped,
        reason=reason,
        replicates=(np.where(valid, ac, np.nan), np.where(valid, az, np.nan)),
    )

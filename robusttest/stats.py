"""Paired statistics for clean-vs-noisy comparisons (gates judge them: robusttest.gates).

Every comparison is paired: the same images are scored clean and noisy, so the quantity
of interest is the *drop* and its uncertainty comes from which images (patients) were
sampled, not from two independent samples.

- :func:`paired_bootstrap` / :func:`paired_bootstrap_auroc`: percentile CIs of the drop
  by resampling **patients** with replacement (images of one patient are correlated;
  resampling images would make the CI too narrow). Vectorised: each chunk of resamples
  is one matrix of per-patient counts, so there is no Python loop over resamples.
  The same seed gives the same resample matrix for every noise level, so the CIs of a
  degradation curve share their random numbers and the curve is not jagged by chance.
- :func:`delong_paired`: DeLong's test for two correlated AUROCs (Sun & Xu's midrank
  algorithm). It treats images as independent; use the patient bootstrap when patients
  contribute several images.
- :func:`wilcoxon_paired`, :func:`average_repeats`, :func:`holm`: small helpers.

Orientation: a *drop* is always "how much worse noisy is than clean", in the metric's
units: ``clean − noisy`` when higher is better (Dice, AUROC), ``noisy − clean`` when
lower is better (HD95). A positive drop is a degradation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from robusttest.errors import ConfigError, InputError, UnknownNameError, check_range

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

__all__ = [
    "BootstrapResult",
    "DeLongResult",
    "WilcoxonResult",
    "average_repeats",
    "delong_paired",
    "holm",
    "paired_bootstrap",
    "paired_bootstrap_auroc",
    "paired_bootstrap_statistic",
    "wilcoxon_paired",
]

# Elements per resample-chunk matrix (8 MiB of float64): bounds memory for large N while
# keeping each chunk one vectorised numpy operation.
_CHUNK_ELEMS = 1 << 20


# --------------------------------------------------------------------------- inputs


def _vector(x: npt.ArrayLike, name: str, *, allow_nan: bool) -> FloatArray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{name}: shape {a.shape} is not one-dimensional (one value per image)")
    if not (
        np.issubdtype(a.dtype, np.floating)
        or np.issubdtype(a.dtype, np.integer)
        or a.dtype == np.bool_
    ):
        raise InputError(f"{name}: dtype {a.dtype} is not numeric")
    a = a.astype(np.float64)
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bool(bad.any()):
        raise InputError(f"{name}: contains {'inf' if allow_nan else 'NaN or inf'}")
    return a


def _binary(x: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{name}: shape {a.shape} is not one-dimensional (one value per image)")
    if a.dtype == np.bool_:
        return a
    ok = (a == 0) | (a == 1)
    if not bool(np.all(ok)):
        raise InputError(f"{name}: holds {a[~ok][0].item()!r}; binary targets must be 0/1 or bool")
    return a != 0


def _same_length(**arrays: npt.NDArray[Any]) -> int:
    sizes = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(
            "paired inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in sizes.items())
        )
    return next(iter(sizes.values()))


def _group_codes(groups: npt.ArrayLike | None, n: int) -> tuple[IntArray, int]:
    """Dense integer codes 0..G-1 for patient ids (any hashable); None: one per image."""
    if groups is None:
        return np.arange(n, dtype=np.intp), n
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise InputError(f"groups: shape {g.shape}, expected ({n},): one patient id per image")
    if g.dtype == object:
        g = g.astype(str)  # mixed ids (e.g. int and str) cannot be sorted by np.unique
    _, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1).astype(np.intp)
    return codes, int(codes.max()) + 1 if n else 0


def _check_resampling(n_resamples: int, seed: int, ci: float) -> None:
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise ConfigError(f"n_resamples: {n_resamples!r} must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: {seed!r} must be an integer >= 0")
    check_range("ci", ci, 0.0, 1.0, low_open=True, high_open=True)


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
    ``reason``: set when the CI (or estimate) is NaN.
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
) -> BootstrapResult:
    """Point estimates plus percentile CIs of drop, noisy value and relative drop."""
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
    return _from_resamples(
        setup,
        clean=clean_mean,
        noisy=noisy_mean,
        clean_b=sums[:, 0] / sums[:, 2],
        noisy_b=sums[:, 1] / sums[:, 2],
        sign=sign,
        n=n,
        n_groups=n_groups,
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
    )


# --------------------------------------------------------------------------- DeLong


@dataclass(frozen=True)
class DeLongResult:
    """DeLong test of AUROC(s1) − AUROC(s2) on the same images (two-sided)."""

    auc1: float
    auc2: float
    diff: float  # auc1 − auc2; with s1 clean and s2 noisy this is the AUROC drop
    se: float
    z: float
    p_value: float
    ci_low: float  # normal-approximation CI of diff at level `ci`
    ci_high: float
    n_pos: int
    n_neg: int
    ci: float = 0.95
    reason: str | None = None


def delong_paired(
    y: npt.ArrayLike, s1: npt.ArrayLike, s2: npt.ArrayLike, *, ci: float = 0.95
) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) for two correlated AUROCs.

    Uses Sun & Xu (2014): with midranks of positives alone (T_X), negatives alone (T_Y)
    and all images (T_Z), the placement of positive i is (T_Z,i − T_X,i)/n (fraction of
    negatives below it, ties ½) and of negative j is 1 − (T_Z,j − T_Y,j)/m; the
    covariance of the two AUROCs is S10/m + S01/n from the sample covariances of these
    placements. O(N log N). Identical scores give diff 0, z 0, p 1. Fewer than two
    cases of a class: NaN se/z/p with a reason.
    """
    check_range("ci", ci, 0.0, 1.0, low_open=True, high_open=True)
    t = _binary(y, "y")
    a = _vector(s1, "s1", allow_nan=False)
    b = _vector(s2, "s2", allow_nan=False)
    _same_length(y=t, s1=a, s2=b)
    m, n = int(t.sum()), int((~t).sum())

    def undefined(auc1: float, auc2: float, why: str) -> DeLongResult:
        nan = math.nan
        return DeLongResult(auc1, auc2, auc1 - auc2, nan, nan, nan, nan, nan, m, n, ci, why)

    if m == 0 or n == 0:
        which = "negative" if m == 0 else "positive"
        why = f"only {which} cases among {m + n} images: AUROC is undefined"
        return undefined(math.nan, math.nan, why)
    scores = np.vstack([a, b])
    x, yy = scores[:, t], scores[:, ~t]
    tx = sps.rankdata(x, axis=1)
    ty = sps.rankdata(yy, axis=1)
    tz = sps.rankdata(np.hstack([x, yy]), axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    auc1, auc2 = float(aucs[0]), float(aucs[1])
    diff = auc1 - auc2
    if m < 2 or n < 2:
        why = f"DeLong needs >= 2 positive and >= 2 negative cases (have {m}, {n})"
        return undefined(auc1, auc2, why)
    v10 = (tz[:, :m] - tx) / n  # positive placements, 2×m
    v01 = 1.0 - (tz[:, m:] - ty) / m  # negative placements, 2×n
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    zq = float(sps.norm.ppf(0.5 + ci / 2.0))
    if se == 0.0:
        # No placement varies between the two scores: identical rankings (diff 0, p 1), or
        # a difference that is the same for every image (p 0).
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    else:
        z = diff / se
        p = float(2.0 * sps.norm.sf(abs(z)))
    return DeLongResult(auc1, auc2, diff, se, z, p, diff - zq * se, diff + zq * se, m, n, ci)


# ------------------------------------------------------------------ small helpers


class WilcoxonResult(NamedTuple):
    statistic: float
    p_value: float


def wilcoxon_paired(
    clean: npt.ArrayLike,
    noisy: npt.ArrayLike,
    *,
    zero_method: Literal["wilcox", "pratt", "zsplit"] = "wilcox",
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of ``clean − noisy`` (scipy.stats.wilcoxon).

    Zero differences (images the noise did not change, common for Dice at mild noise):
    ``zero_method="wilcox"`` (scipy's default) discards them, so the test asks whether the
    images that changed got worse or better; "pratt" ranks them and then drops them;
    "zsplit" splits their ranks between signs (most conservative). Pairs with a NaN are
    left out. When no pair differs: statistic 0, p 1 (scipy would give NaN); no pairs:
    NaN, NaN. ``alternative="greater"``: clean tends to exceed noisy.
    """
    c = _vector(clean, "clean", allow_nan=True)
    z = _vector(noisy, "noisy", allow_nan=True)
    _same_length(clean=c, noisy=z)
    keep = np.isfinite(c) & np.isfinite(z)
    d = c[keep] - z[keep]
    if d.size == 0:
        return WilcoxonResult(math.nan, math.nan)
    if not bool(np.any(d != 0)):
        return WilcoxonResult(0.0, 1.0)
    res = sps.wilcoxon(d, zero_method=zero_method, alternative=alternative)
    return WilcoxonResult(float(res.statistic), float(res.pvalue))


def average_repeats(values: npt.ArrayLike) -> FloatArray:
    """Mean over K noise repeats per image: N×K → N, ignoring NaN; a 1-D input is K=1.

    An image whose repeats are all NaN stays NaN (no RuntimeWarning).
    """
    a = _vector_or_matrix(values)
    if a.ndim == 1:
        return a
    counts = np.isfinite(a).sum(axis=1)
    sums = np.where(np.isfinite(a), a, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _vector_or_matrix(values: npt.ArrayLike) -> FloatArray:
    a = np.asarray(values)
    if a.ndim not in (1, 2):
        raise InputError(f"values: shape {a.shape} is not N or N×K (images × repeats)")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"values: dtype {a.dtype} is not numeric")
    a = a.astype(np.float64)
    if bool(np.isinf(a).any()):
        raise InputError("values: contains inf")
    return a


def holm(p_values: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    Sorted ascending, the k-th (0-based) smallest of m is multiplied by m − k, made
    non-decreasing by a running maximum, and capped at 1. NaN p-values are not counted
    in m and stay NaN.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    finite = ~np.isnan(p)
    if bool(((p[finite] < 0) | (p[finite] > 1)).any()):
        raise InputError(
            f"p_values: {p[finite][(p[finite] < 0) | (p[finite] > 1)][0].item()!r} is not in [0, 1]"
        )
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(finite)
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out

"""Paired tests of clean vs noisy on the same images: DeLong (AUROC), Wilcoxon, Holm.

Both tests take the patient as their unit, as the patient bootstrap does: images of one
patient are correlated, so counting them as independent makes p-values far too small
(10 patients × 3 images: Wilcoxon p = 1.7e-6 on the images, 0.002 on the patients).
With ``groups`` (one patient id per image), the Wilcoxon test ranks the patients' mean
differences, and DeLong's variance becomes Obuchowski's (1997) clustered one. Where every
patient has one image, both are exactly the image-level tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from robusttest.errors import InputError, check_range
from robusttest.stats.inputs import FloatArray, _binary, _group_codes, _same_length, _vector

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
    clustered: bool = False  # Obuchowski's clustered variance (some patient has 2+ images)
    n_groups: int = 0  # patients (= images when not clustered)


def delong_paired(
    y: npt.ArrayLike,
    s1: npt.ArrayLike,
    s2: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    ci: float = 0.95,
) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) for two correlated AUROCs.

    Uses Sun & Xu (2014): with midranks of positives alone (T_X), negatives alone (T_Y)
    and all images (T_Z), the placement of positive i is (T_Z,i − T_X,i)/n (fraction of
    negatives below it, ties ½) and of negative j is 1 − (T_Z,j − T_Y,j)/m; the
    covariance of the two AUROCs is S10/m + S01/n from the sample covariances of these
    placements. O(N log N). Identical scores give diff 0, z 0, p 1. Fewer than two
    cases of a class: NaN se/z/p with a reason.

    ``groups``: one patient id per image. When a patient has several images the
    placements are summed per patient and the covariance is Obuchowski's (1997) clustered
    one (S10, S01 over patients with a positive / a negative image, plus the S11 term of
    patients with both); with one image per patient it is DeLong's, exactly.
    """
    check_range("ci", ci, 0.0, 1.0, low_open=True, high_open=True)
    t = _binary(y, "y")
    a = _vector(s1, "s1", allow_nan=False)
    b = _vector(s2, "s2", allow_nan=False)
    n_all = _same_length(y=t, s1=a, s2=b)
    codes, n_groups = _group_codes(groups, n_all)
    clustered = n_groups < n_all
    m, n = int(t.sum()), int((~t).sum())

    def undefined(auc1: float, auc2: float, why: str) -> DeLongResult:
        nan = math.nan
        return DeLongResult(
            auc1, auc2, auc1 - auc2, nan, nan, nan, nan, nan, m, n, ci, why, clustered, n_groups
        )

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
    if clustered:
        cov = _clustered_cov(v10, v01, codes[t], codes[~t], aucs, n_groups)
        if cov is None:
            why = "clustered DeLong needs >= 2 patients with a positive and >= 2 with a negative"
            return undefined(auc1, auc2, why)
    else:
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
    return DeLongResult(
        auc1,
        auc2,
        diff,
        se,
        z,
        p,
        diff - zq * se,
        diff + zq * se,
        m,
        n,
        ci,
        None,
        clustered,
        n_groups,
    )


def _clustered_cov(
    v10: FloatArray,
    v01: FloatArray,
    pos_codes: npt.NDArray[np.intp],
    neg_codes: npt.NDArray[np.intp],
    aucs: FloatArray,
    n_groups: int,
) -> FloatArray | None:
    """Obuchowski's covariance of the two AUROCs with placements summed per patient.

    X_k, Y_k: patient k's sums of positive / negative placements; m_k, n_k its positive /
    negative image counts; M, N the totals. With I10 (I01) patients holding a positive
    (negative) image and I patients in all:
    S10 = I10/((I10−1)M) Σ (X_k − m_k θ)(X_k − m_k θ)ᵀ, S01 likewise over negatives,
    S11 = I/(I−1) Σ (X_k − m_k θ)(Y_k − n_k θ)ᵀ; cov = S10/M + S01/N + (S11 + S11ᵀ)/(MN).
    None when fewer than two patients hold a positive or a negative image.
    """
    M, N = v10.shape[1], v01.shape[1]
    mk = np.bincount(pos_codes, minlength=n_groups).astype(np.float64)
    nk = np.bincount(neg_codes, minlength=n_groups).astype(np.float64)
    X = np.stack([np.bincount(pos_codes, weights=r, minlength=n_groups) for r in v10])
    Y = np.stack([np.bincount(neg_codes, weights=r, minlength=n_groups) for r in v01])
    dx = X - aucs[:, None] * mk[None, :]  # 2×I
    dy = Y - aucs[:, None] * nk[None, :]
    i10, i01, i_all = int((mk > 0).sum()), int((nk > 0).sum()), n_groups
    if i10 < 2 or i01 < 2:
        return None
    s10 = i10 / ((i10 - 1) * M) * (dx @ dx.T)
    s01 = i01 / ((i01 - 1) * N) * (dy @ dy.T)
    s11 = i_all / (i_all - 1) * (dx @ dy.T)
    out: FloatArray = s10 / M + s01 / N + (s11 + s11.T) / (M * N)
    return out


# ------------------------------------------------------------------ small helpers


class WilcoxonResult(NamedTuple):
    statistic: float
    p_value: float


def patient_means(
    clean: npt.ArrayLike, noisy: npt.ArrayLike, groups: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Per patient, the mean of ``clean`` and of ``noisy`` over the images where both are
    defined (patients without such an image are left out), in sorted patient-id order."""
    c = _vector(clean, "clean", allow_nan=True)
    z = _vector(noisy, "noisy", allow_nan=True)
    n = _same_length(clean=c, noisy=z)
    codes, n_groups = _group_codes(groups, n)
    keep = np.isfinite(c) & np.isfinite(z)
    k = np.bincount(codes[keep], minlength=n_groups).astype(np.float64)
    sc = np.bincount(codes[keep], weights=c[keep], minlength=n_groups)
    sz = np.bincount(codes[keep], weights=z[keep], minlength=n_groups)
    has = k > 0
    return sc[has] / k[has], sz[has] / k[has]


def wilcoxon_paired(
    clean: npt.ArrayLike,
    noisy: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    zero_method: Literal["wilcox", "pratt", "zsplit"] = "wilcox",
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of ``clean − noisy`` (scipy.stats.wilcoxon).

    ``groups``: one patient id per image; the test then ranks the patients' mean
    differences (:func:`patient_means`), the unit the bootstrap resamples. Where every
    patient has one image this is the image-level test, image for image.

    Zero differences (images the noise did not change, common for Dice at mild noise):
    ``zero_method="wilcox"`` (scipy's default) discards them, so the test asks whether the
    images that changed got worse or better; "pratt" ranks them and then drops them;
    "zsplit" splits their ranks between signs (most conservative). Pairs with a NaN are
    left out. When no pair differs: statistic 0, p 1 (scipy would give NaN); no pairs:
    NaN, NaN. ``alternative="greater"``: clean tends to exceed noisy.
    """
    c = _vector(clean, "clean", allow_nan=True)
    z = _vector(noisy, "noisy", allow_nan=True)
    n = _same_length(clean=c, noisy=z)
    if groups is not None and _group_codes(groups, n)[1] < n:
        c, z = patient_means(c, z, groups)
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

"""Moments of every noise family against analytic expectations (DESIGN.md §2).

The expectations are computed here, independently of ``robusttest.noise``: the Beer–Lambert
count model from the documented physics, binomial / Poisson moments, scipy's distributions
(binom, poisson, truncnorm, norm) and the documented rounded-normal approximation.

Tolerances. Every comparison of a sample statistic uses a 5-sigma band of its standard error
for the ``m`` i.i.d. pixels of the draw (a uniform image is m independent draws of one pixel
value): SE(mean) = sd/√m, SE(variance) = √(E[(d² − s²)²]/m) from the sample's own fourth
moment (exact for any distribution, large m). A 5-sigma band fails a correct sampler with
probability ≈ 6×10⁻⁷ per check. Where the documented sampler replaces an exact draw by a
rounded normal (count variance ≥ NORMAL_APPROX_MIN_VAR, count-domain families only) the
variance band is widened by the 1/12 of a count that rounding adds (Sheppard's correction);
the image-domain ``poisson`` family draws exact Poisson counts at every rate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from robusttest.noise import (
    NORMAL_APPROX_MIN_VAR,
    NoiseSpec,
    ladder,
    sample_binomial,
    sample_poisson,
)

# Documented physics, recomputed from its stated ingredients (not imported):
# 2.5 µGy × 3.0e4 photons/mm²/µGy behind the lung at p = 0.45, with ℓ_max = 5.
LMAX = 5.0
OPEN_BEAM_PER_MM2 = 2.5 * 3.0e4 * math.exp(5.0 * 0.45)  # ≈ 7.116e5 photons/mm²
FALLBACK_FIELD_MM = 430.0
SIDE = 256  # uniform test images are SIDE² = 65,536 independent pixels
Z = 5.0  # sigma band of every statistical check
SHEPPARD = 1.0 / 12.0  # variance added by rounding a continuous draw to an integer

QUANTUM_LADDER = (0.5, 0.25, 0.10, 0.05, 0.02)
ELECTRONIC_LADDER = (5.0, 10.0, 20.0, 50.0, 100.0)
GAUSSIAN_LADDER = (0.04, 0.08, 0.12, 0.18, 0.26)
POISSON_LADDER = (60.0, 25.0, 12.0, 5.0, 3.0)


# --- helpers -----------------------------------------------------------------------------
def n0_of(spacing_mm: float) -> float:
    return OPEN_BEAM_PER_MM2 * spacing_mm**2


def p_for_count(count: int, n0: float, lmax: float = LMAX) -> float:
    """float32 display value whose full-dose expected count is `count` (far from .5 rounding)."""
    p = np.float32(-math.log(count / n0) / lmax)
    k0 = n0 * math.exp(-lmax * float(p))
    assert abs(k0 - count) < 0.05, "float32 p must reproduce the integral count"
    return float(p)


def counts_from_output(y: torch.Tensor, scale: float, lmax: float = LMAX) -> np.ndarray:
    """Invert p_a = −ln(k / scale) / ℓ_max, scale = a·N0 (valid where not clipped/floored)."""
    return scale * np.exp(-lmax * y.double().numpy().ravel())


def assert_integral(k: np.ndarray) -> None:
    """Counts read back from float32 output lie on the integer lattice: p carries a relative
    error ≈ 6e-8, so k = a·N0·e^(−ℓmax·p) carries ≈ ℓmax·p·6e-8 ≲ 1e-6 relative."""
    dev = np.abs(k - np.rint(k))
    assert (dev < 0.01 + 1e-6 * k).all(), f"non-integral count, deviation {dev.max()}"


def uniform(p: float, side: int = SIDE) -> torch.Tensor:
    return torch.full((1, side, side), p, dtype=torch.float32)


def se_var(x: np.ndarray) -> float:
    d2 = (x - x.mean()) ** 2
    return float(np.sqrt(np.mean((d2 - d2.mean()) ** 2) / x.size))


def assert_moments(
    x: np.ndarray, mean: float, var: float, *, var_extra: float = 0.0, what: str = ""
) -> None:
    """Sample mean within 5 SE of `mean`; sample variance in [var, var + var_extra] ± 5 SE."""
    m = x.size
    got_mean, got_var = float(x.mean()), float(x.var(ddof=1))
    tol_mean = Z * math.sqrt((var + var_extra) / m)
    assert abs(got_mean - mean) <= tol_mean, f"{what}: mean {got_mean} vs {mean} ± {tol_mean}"
    tol_var = Z * se_var(x)
    assert var - tol_var <= got_var <= var + var_extra + tol_var, (
        f"{what}: variance {got_var} vs {var} (+{var_extra}) ± {tol_var}"
    )


def count_pmf(
    kind: str, n: float, a: float = 1.0, exact_below: float = NORMAL_APPROX_MIN_VAR
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of one pixel's count as documented: exact binomial(n, a) / Poisson(n)
    where the variance is below ``exact_below`` (NORMAL_APPROX_MIN_VAR for the count-domain
    families, ∞ for the image-domain ``poisson``), else a rounded normal with the same
    mean and variance clamped to [0, n] (binomial) or [0, ∞) (Poisson)."""
    if kind == "binomial":
        mu, var, top = n * a, n * a * (1 - a), n
    else:
        mu, var, top = n, n, math.inf
    sd = math.sqrt(var)
    lo = max(0, math.floor(mu - 15 * sd - 2))
    hi = min(top, math.ceil(mu + 15 * sd + 2))
    k = np.arange(lo, hi + 1, dtype=np.float64)
    if var < exact_below:
        pmf = stats.binom.pmf(k, n, a) if kind == "binomial" else stats.poisson.pmf(k, n)
    else:
        cdf = stats.norm.cdf((k + 0.5 - mu) / sd)
        cdf[-1] = 1.0 if hi == top else cdf[-1]
        pmf = np.diff(np.concatenate([[0.0], cdf]))
    return k, pmf / pmf.sum()


def pmf_moments(values: np.ndarray, pmf: np.ndarray) -> tuple[float, float]:
    mean = float(np.sum(pmf * values))
    return mean, float(np.sum(pmf * (values - mean) ** 2))


def load_png(path: Path) -> torch.Tensor:
    pil = pytest.importorskip("PIL.Image")
    arr = np.asarray(pil.open(path).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None]


@pytest.fixture(scope="module")
def real_image(shared_data: Path) -> torch.Tensor:
    path = shared_data / "montgomery" / "CXR_png" / "MCUCXR_0001_0.png"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return load_png(path)


# --- the ladders are the documented ones --------------------------------------------------
@pytest.mark.parametrize(
    ("name", "levels"),
    [
        ("quantum", QUANTUM_LADDER),
        ("electronic", ELECTRONIC_LADDER),
        ("gaussian", GAUSSIAN_LADDER),
        ("poisson", POISSON_LADDER),
    ],
)
def test_default_ladders_are_the_documented_ones(name: str, levels: tuple[float, ...]) -> None:
    assert tuple(s.level for s in ladder(name)) == levels


# --- quantum: binomial thinning ----------------------------------------------------------
@pytest.mark.parametrize("spacing", [0.143, None], ids=["0.143mm", "fov430"])
@pytest.mark.parametrize("dose", QUANTUM_LADDER)
def test_quantum_thinning_uniform_image(dose: float, spacing: float | None) -> None:
    sp = 430.0 / SIDE if spacing is None else spacing
    n0 = n0_of(sp)
    n = round(n0 * math.exp(-LMAX * 0.45))  # full-dose count behind lung
    p = p_for_count(n, n0)
    y = NoiseSpec("quantum", dose).apply(uniform(p), seed=3, pixel_spacing_mm=spacing)
    got = y.double().numpy().ravel()
    # (1) count domain: k_a ~ Binomial(n, a). The clip points a·N0·e^{-ℓmax} and a·N0 are
    # > 5 SD from a·n, so at most a stray pixel in 65,536 clips (expected < 0.01)
    k = counts_from_output(y, dose * n0)
    var = dose * (1 - dose) * n
    sd = math.sqrt(var)
    assert dose * n - 5 * sd > dose * n0 * math.exp(-LMAX) and dose * n + 5 * sd < dose * n0
    assert_integral(k[(got > 0) & (got < 1)])  # thinning yields integral counts
    extra = SHEPPARD if var >= NORMAL_APPROX_MIN_VAR else 0.0
    assert_moments(k, dose * n, var, var_extra=extra, what=f"counts, dose {dose}")
    # (2) display units, exact: the documented count distribution pushed through
    # p = clip(−ln(max(k, ½)/(a·N0))/ℓmax, 0, 1)
    mean, pvar = thinned_p_moments(n, dose, n0)
    assert_moments(got, mean, pvar, what=f"p units, dose {dose}")
    # (3) delta method: SD ≈ sqrt((1−a)/(a·n))/ℓmax. Its next term raises the SD of ln k by a
    # relative ≈ 1.25·(1−a)/(a·n) (expand ln(μ + δ) to third order), so allow 2/(a·n) plus
    # 5 SE of a sample SD (SE ≈ SD/√(2m))
    delta_sd = math.sqrt((1 - dose) / (dose * n)) / LMAX
    rel = abs(got.std() / delta_sd - 1)
    tol = 2.0 / (dose * n) + Z / math.sqrt(2 * got.size)
    assert rel < tol, f"dose {dose}: SD off the delta method by {rel:.4f} > {tol:.4f}"


def thinned_p_moments(n: int, dose: float, n0: float) -> tuple[float, float]:
    """Exact mean/variance in display units of clip(−ln(max(k, ½)/(a·N0))/ℓmax, 0, 1) for the
    documented count distribution of k (clipping and the half-count floor included)."""
    k, pmf = count_pmf("binomial", n, dose)
    vals = np.clip(-np.log(np.maximum(k, 0.5) / (dose * n0)) / LMAX, 0.0, 1.0)
    return pmf_moments(vals, pmf)


@pytest.mark.realdata
@pytest.mark.parametrize("spacing", [0.143, None], ids=["0.143mm", "fov430"])
@pytest.mark.parametrize("dose", QUANTUM_LADDER)
def test_quantum_thinning_on_real_image(
    real_image: torch.Tensor, dose: float, spacing: float | None
) -> None:
    h, w = real_image.shape[-2:]
    sp = 430.0 / max(h, w) if spacing is None else spacing
    n0 = n0_of(sp)
    y = NoiseSpec("quantum", dose).apply(
        real_image, seed=5, image_ids=["MCUCXR_0001_0"], pixel_spacing_mm=spacing
    )
    x = real_image.double().numpy().ravel()
    out = y.double().numpy().ravel()
    k0 = n0 * np.exp(-LMAX * x)
    n = np.rint(k0)
    # (1) count domain, pixels whose clip/floor points lie > 6 SD away (chosen from the INPUT)
    mu, sd = dose * n, np.sqrt(dose * (1 - dose) * n)
    keep = (mu - 6 * sd > max(1.0, dose * n0 * math.exp(-LMAX))) & (mu + 6 * sd < dose * n0)
    assert keep.sum() > 50_000
    z = (counts_from_output(y, dose * n0)[keep] - mu[keep]) / sd[keep]
    # standardized residuals: mean 0, variance 1 (+ rounding: 1/(12·var) ≤ 1/300 where the
    # rounded normal is used)
    approx = sd[keep] ** 2 >= NORMAL_APPROX_MIN_VAR
    extra = float(np.mean(np.where(approx, SHEPPARD / sd[keep] ** 2, 0.0)))
    assert_moments(z, 0.0, 1.0, var_extra=extra, what=f"counts, dose {dose}")
    # (2) display units, EVERY pixel: an 8-bit image has ≤ 256 grey levels, so each level's
    # exact clipped distribution is a pmf sum; pool the standardized residuals
    levels, inv = np.unique(x, return_inverse=True)
    means, variances = np.zeros(levels.size), np.zeros(levels.size)
    usable = np.zeros(levels.size, dtype=bool)
    for i, lv in enumerate(levels):
        kk = n0 * math.exp(-LMAX * float(lv))
        # skip the rare level whose k0 sits on a .5 rounding edge (float32 vs float64)
        usable[i] = abs(kk - math.floor(kk) - 0.5) > 0.01
        means[i], variances[i] = thinned_p_moments(round(kk), dose, n0)
    use = usable[inv] & (variances[inv] > 0)
    assert use.mean() > 0.95
    z = (out[use] - means[inv][use]) / np.sqrt(variances[inv][use])
    assert_moments(z, 0.0, 1.0, what=f"display units, dose {dose}")
    if spacing == 0.143 and dose <= 0.05:  # the exact small-count sampler takes part
        assert np.mean(dose * (1 - dose) * n[use] < NORMAL_APPROX_MIN_VAR) > 0.2


def test_quantum_n0_from_photons_per_mm2_and_spacing() -> None:
    assert pytest.approx(711_580.2, rel=1e-6) == OPEN_BEAM_PER_MM2
    d = NoiseSpec("quantum", 0.1).describe(pixel_spacing_mm=0.143)
    assert d["pixel_spacing_mm"] == 0.143
    assert d["n0"] == pytest.approx(OPEN_BEAM_PER_MM2 * 0.143**2, rel=1e-9)
    assert d["n0"] == pytest.approx(14_551, rel=1e-4)  # ≈ 1.5e4 per NIH detector pixel
    # ... and ≈ 1.5e3 behind the lung (p = 0.45), as DESIGN.md §2 states
    assert d["n0"] * math.exp(-LMAX * 0.45) == pytest.approx(1534, rel=1e-3)
    d = NoiseSpec("quantum", 0.1, {"photons_per_mm2": 1e5}).describe(pixel_spacing_mm=0.2)
    assert d["n0"] == pytest.approx(1e5 * 0.04, rel=1e-12)
    d = NoiseSpec("quantum", 0.1, {"n0": 1234.0}).describe(pixel_spacing_mm=0.2)
    assert d["n0"] == 1234.0 and d["n0_source"] == "n0"
    # unknown spacing: a 430 mm field across the longer side
    assert NoiseSpec("quantum", 0.1).describe()["pixel_spacing_mm"] == pytest.approx(430 / 512)
    d = NoiseSpec("quantum", 0.1).describe(shape=(1000, 800))
    assert d["pixel_spacing_mm"] == pytest.approx(0.43)
    assert d["n0"] == pytest.approx(OPEN_BEAM_PER_MM2 * 0.43**2, rel=1e-9)


def test_quantum_unknown_spacing_falls_back_to_430mm_field() -> None:
    h, w = 200, 160  # non-square: the longer side (200 px) spans 430 mm → 2.15 mm pixels
    sp = 430.0 / h
    n0 = n0_of(sp)
    n = round(n0 * math.exp(-LMAX * 0.6))
    p = p_for_count(n, n0)
    x = torch.full((2, h, w), p)
    dose = 0.05
    y = NoiseSpec("quantum", dose).apply(x, seed=1, image_ids=["a", "b"])
    # identical to passing that spacing explicitly; NaN / None entries fall back too
    assert torch.equal(
        y, NoiseSpec("quantum", dose).apply(x, seed=1, image_ids=["a", "b"], pixel_spacing_mm=sp)
    )
    assert torch.equal(
        y,
        NoiseSpec("quantum", dose).apply(
            x, seed=1, image_ids=["a", "b"], pixel_spacing_mm=[None, math.nan]
        ),
    )
    # and the observed count variance is that of N0 = photons/mm² × (430/200)²
    k = counts_from_output(y, dose * n0)
    var = dose * (1 - dose) * n
    assert_moments(k, dose * n, var, var_extra=SHEPPARD, what="430 mm fallback")
    # a different spacing gives a visibly different variance (the check can fail)
    y2 = NoiseSpec("quantum", dose).apply(x, seed=1, image_ids=["a", "b"], pixel_spacing_mm=1.0)
    assert float(y2.std()) > 1.5 * float(y.std())


# --- quantum: resample variant -----------------------------------------------------------
@pytest.mark.parametrize("dose", (1.0, *QUANTUM_LADDER))
def test_quantum_resample_counts_are_poisson(dose: float) -> None:
    sp = 0.143
    n0 = n0_of(sp)
    p = 0.45
    k0 = n0 * math.exp(-LMAX * float(np.float32(p)))  # not rounded in this variant
    y = NoiseSpec("quantum", dose, {"variant": "resample"}).apply(
        uniform(p), seed=6, pixel_spacing_mm=sp
    )
    k = counts_from_output(y, dose * n0)
    lam = dose * k0
    assert_integral(k)  # Poisson counts are integers
    extra = SHEPPARD if lam >= NORMAL_APPROX_MIN_VAR else 0.0
    assert_moments(k, lam, lam, var_extra=extra, what=f"resample dose {dose}")


def test_resample_differs_from_thinning_by_the_full_dose_noise() -> None:
    # thinning adds a(1−a)n, resampling a·k0: at a = 0.5 the variances differ by a factor 2
    sp, dose = 0.143, 0.5
    x = uniform(0.45)
    thin = NoiseSpec("quantum", dose).apply(x, seed=2, pixel_spacing_mm=sp)
    res = NoiseSpec("quantum", dose, {"variant": "resample"}).apply(x, seed=2, pixel_spacing_mm=sp)
    ratio = float(res.double().var() / thin.double().var())
    # SE of the ratio of two independent m-pixel sample variances ≈ 2·√(2/m + 2/m) ≈ 0.016
    assert abs(ratio - 2.0) < Z * 2.0 * 2 / SIDE


# --- electronic --------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", [0.143, None], ids=["0.143mm", "fov430"])
@pytest.mark.parametrize("sigma_e", ELECTRONIC_LADDER)
def test_electronic_at_full_dose_adds_gaussian_counts(
    sigma_e: float, spacing: float | None
) -> None:
    sp = 430.0 / SIDE if spacing is None else spacing
    n0 = n0_of(sp)
    p = float(np.float32(0.45))
    k0 = n0 * math.exp(-LMAX * p)
    sig_pix = sigma_e * sp / 0.143  # quanta per 0.143 mm element, summed over binned elements
    # clip points > 10 SD away
    assert k0 - 10 * sig_pix > n0 * math.exp(-LMAX) and k0 + 10 * sig_pix < n0
    y = NoiseSpec("electronic", sigma_e).apply(uniform(p), seed=7, pixel_spacing_mm=spacing)
    k = counts_from_output(y, n0)
    assert_moments(k, k0, sig_pix**2, what=f"electronic {sigma_e}")
    d = NoiseSpec("electronic", sigma_e).describe(pixel_spacing_mm=spacing, shape=(SIDE, SIDE))
    assert d["sigma_e_pixel"] == pytest.approx(sig_pix, rel=1e-12)


@pytest.mark.parametrize("sigma_e", ELECTRONIC_LADDER)
def test_electronic_with_dose_adds_variances(sigma_e: float) -> None:
    sp, dose = 430.0 / SIDE, 0.1
    n0 = n0_of(sp)
    n = round(n0 * math.exp(-LMAX * 0.45))
    p = p_for_count(n, n0)
    sig_pix = sigma_e * sp / 0.143
    var = dose * (1 - dose) * n + sig_pix**2
    assert dose * n - 8 * math.sqrt(var) > dose * n0 * math.exp(-LMAX)  # no clipping
    y = NoiseSpec("electronic", sigma_e, {"dose": dose}).apply(uniform(p), seed=8)
    k = counts_from_output(y, dose * n0)
    assert_moments(k, dose * n, var, var_extra=SHEPPARD, what=f"electronic {sigma_e} + dose")


# --- gaussian ----------------------------------------------------------------------------
def clipped_normal_moments(p: float, sigma: float) -> tuple[float, float]:
    """Mean and variance of clip(p + σz, 0, 1): mass at 0 and 1 plus a truncated normal."""
    a, b = (0 - p) / sigma, (1 - p) / sigma
    p_lo, p_hi = stats.norm.cdf(a), stats.norm.sf(b)
    p_in = 1 - p_lo - p_hi
    tn = stats.truncnorm(a, b, loc=p, scale=sigma)
    mean = p_in * tn.mean() + p_hi * 1.0
    second = p_in * (tn.var() + tn.mean() ** 2) + p_hi * 1.0
    return float(mean), float(second - mean**2)


def test_clipped_normal_reference_is_right() -> None:
    # far from the edges it is the plain normal; a hand case at the edge: p = 0, σ = 1
    assert clipped_normal_moments(0.5, 0.01) == pytest.approx((0.5, 1e-4), rel=1e-9)
    phi0 = stats.norm.pdf(0.0)
    # clip(z, 0, 1): mean = ∫0^1 zφ + P(z>1) = φ(0) − φ(1) + Φ̄(1)
    mean = phi0 - stats.norm.pdf(1.0) + stats.norm.sf(1.0)
    assert clipped_normal_moments(0.0, 1.0)[0] == pytest.approx(mean, rel=1e-9)


@pytest.mark.parametrize("p", [0.01, 0.5, 0.97])
@pytest.mark.parametrize("sigma", GAUSSIAN_LADDER)
def test_gaussian_matches_clipped_normal(sigma: float, p: float) -> None:
    y = NoiseSpec("gaussian", sigma).apply(uniform(p, 128), seed=9)
    mean, var = clipped_normal_moments(float(np.float32(p)), sigma)
    assert_moments(y.double().numpy().ravel(), mean, var, what=f"gaussian {sigma} at {p}")


# --- image-domain poisson ----------------------------------------------------------------
@pytest.mark.parametrize("p", [0.05, 0.3, 0.6, 0.95])
@pytest.mark.parametrize("rate", POISSON_LADDER)
def test_image_poisson_matches_clipped_poisson(rate: float, p: float) -> None:
    p32 = float(np.float32(p))
    y = NoiseSpec("poisson", rate).apply(uniform(p, 128), seed=10)
    k, pmf = count_pmf("poisson", float(np.float32(p32 * rate)), exact_below=math.inf)
    mean, var = pmf_moments(np.minimum(k / rate, 1.0), pmf)
    assert_moments(y.double().numpy().ravel(), mean, var, what=f"poisson {rate} at {p}")
    if stats.poisson.sf(rate, p32 * rate) < 1e-9:  # away from clipping: mean p, var p/r
        assert_moments(y.double().numpy().ravel(), p32, p32 / rate)


# --- exact small-count region vs normal approximation -------------------------------------
@pytest.mark.parametrize(
    ("n0", "dose", "exact"),
    [(1000.0, 0.5, True), (200_000.0, 0.5, False), (1000.0, 0.1, True), (200_000.0, 0.02, False)],
)
def test_exact_and_approximate_regions_match_binomial(n0: float, dose: float, exact: bool) -> None:
    lmax = 20.0  # with ℓmax = 20 neither clip point is reachable, even at tiny counts
    n = round(n0 * math.exp(-lmax * 0.2))
    p = p_for_count(n, n0, lmax)
    var = dose * (1 - dose) * n
    assert (var < NORMAL_APPROX_MIN_VAR) == exact
    spec = NoiseSpec("quantum", dose, {"n0": n0, "lmax": lmax})
    y = spec.apply(uniform(p), seed=11, pixel_spacing_mm=0.5)
    k = counts_from_output(y, dose * n0, lmax)
    k = np.where(k < 0.75, 0.0, k)  # the 0.5-count floor reads back as 0.5: that is k = 0
    assert_integral(k)
    assert k.min() >= 0 and k.max() <= n
    assert_moments(k, dose * n, var, var_extra=0.0 if exact else SHEPPARD, what=f"n={n}")
    if exact:  # the exact sampler reproduces the whole binomial distribution
        ks, counts = np.unique(np.rint(k), return_counts=True)
        expected = stats.binom.pmf(ks, n, dose) * k.size
        mask = expected >= 5
        chi2 = float(np.sum((counts[mask] - expected[mask]) ** 2 / expected[mask]))
        assert chi2 < stats.chi2.ppf(1 - 1e-6, int(mask.sum()) - 1)


def dkw(m: int, delta: float = 1e-6) -> float:
    """Dvoretzky–Kiefer–Wolfowitz: P(sup|F_m − F| > ε) ≤ 2·exp(−2mε²) = delta."""
    return math.sqrt(math.log(2 / delta) / (2 * m))


@pytest.mark.parametrize(
    ("n", "a"), [(2600, 0.01), (1276, 0.02), (400, 0.5), (5000, 0.02), (50, 0.3)]
)
def test_sample_binomial_kolmogorov_distance(n: int, a: float) -> None:
    shape = (1, 256, 512)  # 131,072 draws of one pixel value
    g = torch.Generator().manual_seed(12)
    draws = sample_binomial(torch.full(shape, float(n)), a, [g]).numpy().ravel()
    m = draws.size
    k = np.arange(0, n + 1)
    emp = np.searchsorted(np.sort(draws), k, side="right") / m
    sup_exact = float(np.abs(emp - stats.binom.cdf(k, n, a)).max())
    sigma = math.sqrt(n * a * (1 - a))
    if sigma**2 < NORMAL_APPROX_MIN_VAR:
        assert sup_exact < dkw(m)  # exact sampler
        return
    # documented bound of the rounded normal (Berry–Esseen), plus the DKW sampling slack
    bound = 0.4748 * (1 - 2 * a * (1 - a)) / sigma
    assert sup_exact < bound + dkw(m)
    # the bound itself holds for the distribution (no sampling involved)
    rounded = stats.norm.cdf((k + 0.5 - n * a) / sigma)
    rounded[-1] = 1.0
    assert float(np.abs(rounded - stats.binom.cdf(k, n, a)).max()) < bound
    # and the sampler draws exactly that rounded normal (within the sampling slack)
    assert float(np.abs(emp - rounded).max()) < dkw(m)


@pytest.mark.parametrize("lam", [3.0, 20.0, 30.0, 400.0])
def test_sample_poisson_kolmogorov_distance(lam: float) -> None:
    shape = (1, 256, 512)
    # exact by default (the image-domain family)
    g = torch.Generator().manual_seed(13)
    draws = sample_poisson(torch.full(shape, lam), [g]).numpy().ravel()
    m = draws.size
    k = np.arange(0, math.ceil(lam + 15 * math.sqrt(lam) + 2))
    emp = np.searchsorted(np.sort(draws), k, side="right") / m
    assert float(np.abs(emp - stats.poisson.cdf(k, lam)).max()) < dkw(m)
    # with the count domain's threshold: the documented rounded normal from 25 on
    g = torch.Generator().manual_seed(13)
    draws = sample_poisson(torch.full(shape, lam), [g], NORMAL_APPROX_MIN_VAR).numpy().ravel()
    k, pmf = count_pmf("poisson", lam)
    emp = np.searchsorted(np.sort(draws), k, side="right") / m
    assert float(np.abs(emp - np.cumsum(pmf)).max()) < dkw(m)
    assert float(np.abs(emp - stats.poisson.cdf(k, lam)).max()) < 0.4748 / math.sqrt(lam) + dkw(m)


def test_samplers_key_each_image_to_its_generator() -> None:
    n = torch.full((3, 32, 32), 500.0)  # var 125: approximate; and 0.02·500: exact
    for a in (0.5, 0.02):
        gens = [torch.Generator().manual_seed(s) for s in (1, 2, 1)]
        k = sample_binomial(n, a, gens)
        assert torch.equal(k[0], k[2]) and not torch.equal(k[0], k[1])
    lam = torch.cat([torch.full((1, 32, 32), v) for v in (5.0, 300.0)] * 2)
    gens = [torch.Generator().manual_seed(s) for s in (4, 4, 4, 4)]
    k = sample_poisson(lam, gens)
    assert torch.equal(k[0], k[2]) and torch.equal(k[1], k[3]) and not torch.equal(k[0], k[1])

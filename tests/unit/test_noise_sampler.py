"""The exact small-count binomial sampler of ``robusttest.noise`` (Walker/Vose alias tables).

Reference distributions come from scipy (``binom.pmf`` / ``binom.cdf``), independently of the
tables. Statistical checks use tolerances that a correct sampler fails with probability
≤ 1e-6 each:

* chi-square goodness of fit over the counts' bins, pooled so every bin expects ≥ 5 draws,
  against the chi-square quantile 1 − 1e-6 (the multinomial → chi-square limit);
* Dvoretzky–Kiefer–Wolfowitz: sup_k |F̂(k) − F(k)| ≤ √(ln(2/δ)/(2m)), δ = 1e-6, which holds
  for any m, so it needs no large-sample argument (m = 2^18 draws: 0.0037);
* standardized residual moments with a 5-sigma band (as in test_noise_moments.py).

The table test needs no sampling: it decodes the stored tables into the distribution they
sample and compares it with the binomial pmf directly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from robusttest.noise import ALIAS_TAIL_MASS, NORMAL_APPROX_MIN_VAR, sample_binomial, sampling

M = 1 << 18  # draws per distribution check
DELTA = 1e-6


def dkw(m: int, delta: float = DELTA) -> float:
    return math.sqrt(math.log(2 / delta) / (2 * m))


def chi2_stat(draws: np.ndarray, pmf_at: np.ndarray, ks: np.ndarray) -> tuple[float, int]:
    """Pearson statistic of integer draws against pmf over the support ks, with the bins
    pooled from both ends until each expects ≥ 5 draws; returns (statistic, dof)."""
    m = draws.size
    assert set(np.unique(draws)) <= set(ks.tolist()), "a draw outside the support"
    observed = np.bincount((draws - ks[0]).astype(np.int64), minlength=ks.size)[: ks.size]
    expected = pmf_at * m
    bins_o, bins_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            bins_o.append(acc_o)
            bins_e.append(acc_e)
            acc_o = acc_e = 0.0
    if bins_e:  # the leftover upper tail joins the last bin
        bins_o[-1] += acc_o
        bins_e[-1] += acc_e
    o_arr, e_arr = np.array(bins_o), np.array(bins_e)
    return float(((o_arr - e_arr) ** 2 / e_arr).sum()), max(len(bins_e) - 1, 1)


@pytest.fixture
def no_torch_binomial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the alias tables, not the torch.binomial fallback, produce the draws."""

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("torch.binomial called: the alias tables were not used")

    monkeypatch.setattr(torch, "binomial", boom)


# --- the tables themselves (no sampling) -----------------------------------------------
def implied_pmf(tab: sampling._AliasTable) -> tuple[np.ndarray, np.ndarray]:
    """Decode the stored tables into the distribution the sampler draws from (rows × K)."""
    rows, width = tab.rows, tab.width
    t = tab.table.cpu().numpy().reshape(rows, width)
    dw = np.trunc(t).astype(np.int64)  # d + width, as the sampler reads it
    keep = 2 * (t - dw)
    alias = np.arange(width)[None, :] - (dw - width)
    assert ((alias >= 0) & (alias < width)).all() and ((keep >= 0) & (keep <= 1)).all()
    pmf = keep / width
    np.add.at(pmf, (np.repeat(np.arange(rows), width), alias.ravel()), (1 - keep).ravel() / width)
    lo = np.zeros(rows, np.int64) if tab.lo is None else tab.lo.cpu().numpy()
    return pmf, lo


@pytest.mark.parametrize("a", [0.5, 0.25, 0.1, 0.02, 0.005, 0.9])
def test_tables_are_the_binomial_up_to_the_documented_tail(a: float) -> None:
    rows = sampling._exact_region_rows(a, NORMAL_APPROX_MIN_VAR)
    tab = sampling._alias_table_cpu(a, rows)
    assert tab is not None and tab.rows == rows
    # every count of the exact region, and no more: n·a(1−a) < 25 ⇔ n < rows
    assert (rows - 1) * a * (1 - a) < NORMAL_APPROX_MIN_VAR <= rows * a * (1 - a)
    assert tab.width <= 70  # the documented window length
    pmf, lo = implied_pmf(tab)
    n = np.arange(rows)[:, None]
    k = lo[:, None] + np.arange(tab.width)[None, :]
    exact = stats.binom.pmf(k, n, a)
    # total variation = ½Σ|p̂ − p| over the window + ½·(mass outside it): the documented
    # tail (< 1e-12) plus float64 rounding of the table (≈ 1e-13)
    tv = 0.5 * (np.abs(pmf - exact).sum(1) + (1 - exact.sum(1)))
    assert tv.max() < ALIAS_TAIL_MASS + 1e-13
    # no probability beyond n (rows shorter than the window are padded with zeros)
    assert (pmf[k > n] < 1e-15).all()


def test_tables_are_cached_and_reused() -> None:
    sampling._alias_table_cpu.cache_clear()
    sampling._alias_table.cache_clear()
    rows = sampling._exact_region_rows(0.02, NORMAL_APPROX_MIN_VAR)
    first = sampling._alias_table(0.02, rows, "cpu")
    info = sampling._alias_table_cpu.cache_info()
    assert info.misses == 1 and info.hits == 0
    x = torch.full((2, 64, 64), 700.0)  # 700·0.02·0.98 = 13.7 < 25: all exact
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    sample_binomial(x, 0.02, gens)
    sample_binomial(x, 0.02, gens)
    # later batches reuse the one CPU table: no new build, the same object
    assert sampling._alias_table_cpu.cache_info().misses == 1
    assert sampling._alias_table(0.02, rows, "cpu") is first
    assert sampling._alias_table_cpu(0.02, rows) is first


# --- sampled distributions ---------------------------------------------------------------
CASES = [
    (0, 0.02),
    (0, 0.5),
    (1, 0.02),
    (1, 0.5),
    (2, 0.5),
    (17, 0.5),
    (99, 0.5),  # the largest exact count at a = 0.5 (variance 24.75)
    (50, 0.02),
    (1275, 0.02),  # the largest exact count at a = 0.02 (variance 24.99)
    (250, 0.1),
    (40, 0.9),  # window not starting at 0
    (12_000, 0.001),
]


def test_mixed_image_matches_binomial_in_both_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the pixels exact (n = 600), half approximate (n = 5000), interleaved so every
    piece is mixed; with the CPU pieces and with one piece per image (the CUDA layout)."""
    a = 0.02
    n = torch.full((1, 512, 512), 600.0)
    n[0, :, 1::2] = 5000.0
    for piece in (sampling._CPU_PIECE, 1 << 30):
        monkeypatch.setattr(sampling, "_CPU_PIECE", piece)
        k = sample_binomial(n, a, [torch.Generator().manual_seed(9)])[0]
        exact, approx = k[:, 0::2].numpy().ravel(), k[:, 1::2].numpy().ravel()
        ks = np.arange(601)
        chi2, dof = chi2_stat(exact, stats.binom.pmf(ks, 600, a), ks)
        assert chi2 < stats.chi2.ppf(1 - DELTA, dof)
        var = 5000 * a * (1 - a)  # 98: rounded normal, variance + 1/12 from rounding
        assert abs(approx.mean() - 5000 * a) < 5 * math.sqrt(var / approx.size)
        assert abs(approx.var() / (var + 1 / 12) - 1) < 5 * math.sqrt(2 / approx.size)


@pytest.mark.parametrize(("n", "a"), CASES)
def test_alias_sampler_matches_binomial_pmf(n: int, a: float, no_torch_binomial: None) -> None:
    assert n * a * (1 - a) < NORMAL_APPROX_MIN_VAR  # the exact region
    g = torch.Generator().manual_seed(1000 + n)
    draws = sample_binomial(torch.full((1, 512, 512), float(n)), a, [g]).numpy().ravel()
    assert draws.size == M
    assert np.array_equal(draws, np.rint(draws)) and draws.min() >= 0 and draws.max() <= n
    ks = np.arange(n + 1)
    if n == 0:
        assert (draws == 0).all()
        return
    # chi-square over pooled bins
    chi2, dof = chi2_stat(draws, stats.binom.pmf(ks, n, a), ks)
    assert chi2 < stats.chi2.ppf(1 - DELTA, dof), f"chi2 {chi2:.1f} on {dof} dof"
    # DKW on the distribution function
    emp = np.searchsorted(np.sort(draws), ks, side="right") / draws.size
    assert float(np.abs(emp - stats.binom.cdf(ks, n, a)).max()) < dkw(draws.size)
    if n == 1:  # Bernoulli(a): the fraction of ones within 5 SE
        assert abs(draws.mean() - a) < 5 * math.sqrt(a * (1 - a) / draws.size)


@pytest.mark.parametrize("a", [0.02, 0.1, 0.5])
def test_every_row_of_the_table_is_addressed_right(a: float, no_torch_binomial: None) -> None:
    """All counts of the exact region at once: a row mix-up shifts the mean by ≥ a."""
    rows = sampling._exact_region_rows(a, NORMAL_APPROX_MIN_VAR)
    n = torch.arange(rows, dtype=torch.float32).repeat(-(-M // rows))[:M].view(1, 512, 512)
    g = torch.Generator().manual_seed(7)
    k = sample_binomial(n, a, [g]).double().numpy().ravel()
    nn = n.double().numpy().ravel()
    assert (k >= 0).all() and (k <= nn).all() and (k[nn == 0] == 0).all()
    pos = nn > 0
    z = (k[pos] - a * nn[pos]) / np.sqrt(a * (1 - a) * nn[pos])
    m = z.size
    assert abs(z.mean()) < 5 / math.sqrt(m)
    d2 = (z - z.mean()) ** 2
    assert abs(z.var() - 1) < 5 * math.sqrt(np.mean((d2 - d2.mean()) ** 2) / m)
    # and per count n: the c draws of that row sum to Binomial(c·n, a) exactly, so an exact
    # two-sided binomial test per row (Bonferroni: δ / rows each)
    idx = nn.astype(np.int64)
    sums = np.rint(np.bincount(idx, weights=k, minlength=rows)).astype(np.int64)
    trials = np.bincount(idx, minlength=rows) * np.arange(rows)
    p_value = 2 * np.minimum(stats.binom.cdf(sums, trials, a), stats.binom.sf(sums - 1, trials, a))
    assert p_value.min() > DELTA / rows, f"row {p_value.argmin()}: p = {p_value.min():.2e}"


# --- determinism per image ---------------------------------------------------------------
def counts_image(seed: int, low: float, high: float, side: int = 300) -> torch.Tensor:
    """Integral counts with smooth structure spanning [low, high] (both regions, pieces)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    f = 0.5 + 0.5 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(4 * yy + rng.uniform(0, 6))
    return torch.from_numpy(np.rint(low + (high - low) * f).astype(np.float32))


@pytest.mark.parametrize("one_piece", [False, True], ids=["cpu-pieces", "whole-image"])
@pytest.mark.parametrize("a", [0.02, 0.3, 3e-4])
def test_each_image_draws_the_same_in_any_batch(
    a: float, one_piece: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if one_piece:  # the CUDA layout: one piece per image
        monkeypatch.setattr(sampling, "_CPU_PIECE", 1 << 30)
    region = sampling._exact_region_rows(a, NORMAL_APPROX_MIN_VAR)
    # at a = 3e-4 the exact region exceeds ALIAS_MAX_ROWS: each image gets a table sized to
    # its own largest count ("exact": 8192 rows, "big": 32768), or torch.binomial ("mixed")
    mixed = counts_image(1, 0, 2 * region)  # exact and approximate pixels, several pieces
    exact = counts_image(2, 0, min(region - 1, 5000))
    approx = counts_image(3, region, 3 * region)
    big = counts_image(4, 0, min(region - 1, 30_000))
    seeds = {"mixed": 11, "exact": 12, "approx": 13, "big": 14}
    imgs = {"mixed": mixed, "exact": exact, "approx": approx, "big": big}

    def run(names: list[str]) -> dict[str, torch.Tensor]:
        gens = [torch.Generator().manual_seed(seeds[nm]) for nm in names]
        out = sample_binomial(torch.stack([imgs[nm] for nm in names]), a, gens)
        return dict(zip(names, out, strict=True))

    alone = {nm: run([nm])[nm] for nm in imgs}
    for order in (["mixed", "exact", "approx", "big"], ["big", "approx", "mixed", "exact"]):
        for nm, k in run(order).items():
            assert torch.equal(k, alone[nm]), f"{nm} changed with the batch {order}"
    for nm, k in alone.items():  # and they are counts of the right size
        assert (k >= 0).all() and (k <= imgs[nm]).all() and torch.equal(k, k.round())


def test_tiny_dose_uses_tables_sized_to_the_image(no_torch_binomial: None) -> None:
    a = 3e-4  # the exact region (n < 83,361) exceeds ALIAS_MAX_ROWS
    region = sampling._exact_region_rows(a, NORMAL_APPROX_MIN_VAR)
    assert region > sampling.ALIAS_MAX_ROWS
    tab = sampling._table_for(a, region, 900.0, "cpu")
    assert tab is not None and tab.rows == 1024
    g = torch.Generator().manual_seed(3)
    draws = sample_binomial(torch.full((1, 512, 512), 900.0), a, [g]).numpy().ravel()
    ks = np.arange(901)
    emp = np.searchsorted(np.sort(draws), ks, side="right") / draws.size
    assert float(np.abs(emp - stats.binom.cdf(ks, 900, a)).max()) < dkw(draws.size)


def test_counts_beyond_any_table_fall_back_to_torch_binomial() -> None:
    a = 3e-4
    region = sampling._exact_region_rows(a, NORMAL_APPROX_MIN_VAR)
    assert sampling._table_for(a, region, 70_000.0, "cpu") is None  # 2^17 rows: too many
    n = torch.full((1, 128, 128), 70_000.0)  # variance 21: exact, via torch.binomial
    k = sample_binomial(n, a, [torch.Generator().manual_seed(4)]).double().numpy().ravel()
    var = 70_000 * a * (1 - a)
    assert abs(k.mean() - 70_000 * a) < 5 * math.sqrt(var / k.size)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_alias_sampler_on_cuda(no_torch_binomial: None) -> None:
    dev = torch.device("cuda")
    for n, a in [(1275, 0.02), (99, 0.5), (40, 0.9)]:
        g = torch.Generator(device=dev).manual_seed(5)
        x = torch.full((1, 512, 512), float(n), device=dev)
        k = sample_binomial(x, a, [g])
        assert k.device.type == "cuda"
        draws = k.cpu().numpy().ravel()
        ks = np.arange(n + 1)
        chi2, dof = chi2_stat(draws, stats.binom.pmf(ks, n, a), ks)
        assert chi2 < stats.chi2.ppf(1 - DELTA, dof)
        # the same image draws the same on its own and in a batch
        g1 = torch.Generator(device=dev).manual_seed(5)
        g2 = torch.Generator(device=dev).manual_seed(6)
        both = sample_binomial(torch.cat([x, x * 0 + 3]), a, [g1, g2])
        assert torch.equal(both[0], k[0])
    rows = sampling._exact_region_rows(0.02, NORMAL_APPROX_MIN_VAR)
    tab = sampling._alias_table(0.02, rows, str(dev))
    assert tab is not None and tab.table.device.type == "cuda"
    assert sampling._alias_table(0.02, rows, str(dev)) is tab  # moved to the device once

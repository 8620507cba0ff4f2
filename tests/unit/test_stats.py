"""robusttest.stats against slow reference implementations, scipy and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from robusttest import stats as S
from robusttest.errors import ConfigError, InputError, UnknownNameError
from robusttest.stats import bootstrap as B

# --------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_width_of_normal_mean() -> None:
    rng = np.random.default_rng(0)
    n, sigma = 400, 2.0
    clean = rng.normal(5.0, sigma, n)
    res = S.paired_bootstrap(clean, np.zeros(n), None, n_resamples=4000, seed=1)
    assert res.estimate == pytest.approx(clean.mean())
    expected = 2 * 1.959964 * clean.std(ddof=1) / math.sqrt(n)
    assert res.ci_high - res.ci_low == pytest.approx(expected, rel=0.08)
    assert res.se == pytest.approx(clean.std(ddof=1) / math.sqrt(n), rel=0.08)
    assert res.n == n and res.n_groups == n and res.n_excluded == 0 and res.reason is None


def test_bootstrap_ci_covers_true_mean_about_95_percent() -> None:
    rng = np.random.default_rng(2)
    hits, reps = 0, 200
    for r in range(reps):
        clean = rng.normal(0.8, 0.1, 60)
        noisy = clean - rng.normal(0.05, 0.05, 60)  # true drop 0.05
        res = S.paired_bootstrap(clean, noisy, None, n_resamples=500, seed=r)
        hits += res.ci_low <= 0.05 <= res.ci_high
    assert 0.89 <= hits / reps <= 0.99


def test_patient_clustering_widens_ci_with_duplicated_images() -> None:
    rng = np.random.default_rng(3)
    patients, copies = 150, 5
    drop = rng.normal(0.02, 0.05, patients)
    clean = np.repeat(rng.normal(0.9, 0.03, patients), copies)
    noisy = clean - np.repeat(drop, copies)  # every image of a patient moves together
    groups = np.repeat([f"p{i:04d}" for i in range(patients)], copies)
    naive = S.paired_bootstrap(clean, noisy, None, n_resamples=3000, seed=0)
    clustered = S.paired_bootstrap(clean, noisy, groups, n_resamples=3000, seed=0)
    assert clustered.n == patients * copies and clustered.n_groups == patients
    ratio = (clustered.ci_high - clustered.ci_low) / (naive.ci_high - naive.ci_low)
    assert ratio == pytest.approx(math.sqrt(copies), rel=0.12)
    # Clustered CI ≈ the CI of one image per patient.
    single = S.paired_bootstrap(clean[::copies], noisy[::copies], None, n_resamples=3000, seed=0)
    assert clustered.ci_high - clustered.ci_low == pytest.approx(
        single.ci_high - single.ci_low, rel=0.1
    )


def _loop_bootstrap(
    clean: np.ndarray, noisy: np.ndarray, codes: np.ndarray, b: int, seed: int
) -> np.ndarray:
    """Reference: one resample at a time, concatenating the images of drawn patients."""
    g = int(codes.max()) + 1
    members = [np.flatnonzero(codes == k) for k in range(g)]
    idx = np.random.default_rng(seed).integers(0, g, size=(b, g))  # same draws, one chunk
    out = np.empty(b)
    for r in range(b):
        images = np.concatenate([members[k] for k in idx[r]])
        out[r] = clean[images].mean() - noisy[images].mean()
    return out


def test_vectorised_bootstrap_equals_loop_reference() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 30, 90)
    codes[:30] = np.arange(30)  # every patient present
    clean, noisy = rng.random(90), rng.random(90)
    res = S.paired_bootstrap(clean, noisy, codes, n_resamples=300, seed=7, ci=0.9)
    ref = _loop_bootstrap(clean, noisy, codes, 300, 7)
    lo, hi = np.quantile(ref, [0.05, 0.95])
    assert res.ci_low == pytest.approx(lo) and res.ci_high == pytest.approx(hi)
    assert res.se == pytest.approx(ref.std(ddof=1))


def test_bootstrap_seeded_oriented_and_nan_aware() -> None:
    rng = np.random.default_rng(5)
    clean, noisy = rng.random(50), rng.random(50)
    a = S.paired_bootstrap(clean, noisy, None, seed=3, n_resamples=200)
    assert a == S.paired_bootstrap(clean, noisy, None, seed=3, n_resamples=200)
    assert a != S.paired_bootstrap(clean, noisy, None, seed=4, n_resamples=200)
    low = S.paired_bootstrap(clean, noisy, None, seed=3, n_resamples=200, higher_is_better=False)
    assert low.estimate == pytest.approx(-a.estimate)
    assert low.ci_low == pytest.approx(-a.ci_high) and low.ci_high == pytest.approx(-a.ci_low)
    assert low.noisy_ci_low == pytest.approx(a.noisy_ci_low)
    assert a.relative == pytest.approx(a.estimate / clean.mean())
    assert a.relative_ci_low < a.relative < a.relative_ci_high
    noisy_nan = noisy.copy()
    noisy_nan[[3, 9]] = np.nan  # e.g. HD95 of an emptied prediction
    r = S.paired_bootstrap(clean, noisy_nan, None, n_resamples=200)
    keep = np.isfinite(noisy_nan)
    assert r.n == 48 and r.n_excluded == 2
    assert r.estimate == pytest.approx(clean[keep].mean() - noisy[keep].mean())


def test_bootstrap_degenerate_and_bad_inputs() -> None:
    one = S.paired_bootstrap([0.9, 0.8], [0.7, 0.6], ["p", "p"])
    assert one.estimate == pytest.approx(0.2) and math.isnan(one.ci_high)
    assert one.reason is not None and "1 patient" in one.reason
    none = S.paired_bootstrap([np.nan], [0.5], None)
    assert none.n == 0 and none.reason is not None and "1 excluded" in none.reason
    with pytest.raises(InputError, match="clean=3, noisy=2"):
        S.paired_bootstrap([1, 2, 3], [1, 2], None)
    with pytest.raises(InputError, match="groups"):
        S.paired_bootstrap([1, 2, 3], [1, 2, 3], ["a"])
    with pytest.raises(ConfigError, match="n_resamples"):
        S.paired_bootstrap([1, 2], [1, 2], None, n_resamples=0)
    with pytest.raises(ConfigError, match="ci"):
        S.paired_bootstrap([1, 2], [1, 2], None, ci=1.0)
    with pytest.raises(UnknownNameError, match="known bootstrap statistics: mean"):
        S.paired_bootstrap([1, 2], [1, 2], None, statistic="median")


def _loop_bootstrap_auroc(
    y: np.ndarray, sc: np.ndarray, sz: np.ndarray, codes: np.ndarray, b: int, seed: int
) -> tuple[np.ndarray, int]:
    g = int(codes.max()) + 1
    members = [np.flatnonzero(codes == k) for k in range(g)]
    idx = np.random.default_rng(seed).integers(0, g, size=(b, g))
    drops, skipped = [], 0
    for r in range(b):
        im = np.concatenate([members[k] for k in idx[r]])
        if y[im].all() or not y[im].any():
            skipped += 1
            continue
        drops.append(roc_auc_score(y[im], sc[im]) - roc_auc_score(y[im], sz[im]))
    return np.array(drops), skipped


def test_auroc_bootstrap_equals_sklearn_loop_reference() -> None:
    rng = np.random.default_rng(6)
    n = 40
    codes = np.r_[np.arange(20), rng.integers(0, 20, n - 20)]
    y = np.zeros(n, bool)
    y[[0, 1, 25]] = True  # rare positives: some resamples hold none
    sc = np.round(rng.normal(size=n) + y, 1)  # ties
    sz = np.round(sc + rng.normal(0, 0.8, n), 1)
    res = S.paired_bootstrap_auroc(y, sc, sz, codes, n_resamples=400, seed=11)
    ref, skipped = _loop_bootstrap_auroc(y, sc, sz, codes, 400, 11)
    assert res.clean == pytest.approx(roc_auc_score(y, sc))
    assert res.noisy == pytest.approx(roc_auc_score(y, sz))
    assert res.estimate == pytest.approx(res.clean - res.noisy)
    assert res.n_skipped == skipped > 0
    lo, hi = np.quantile(ref, [0.025, 0.975])
    assert res.ci_low == pytest.approx(lo) and res.ci_high == pytest.approx(hi)


def test_auroc_bootstrap_one_class_and_seed() -> None:
    r = S.paired_bootstrap_auroc([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert math.isnan(r.estimate) and r.reason is not None and "only positive" in r.reason
    rng = np.random.default_rng(7)
    y = rng.random(80) < 0.5
    s = rng.random(80) + y
    a = S.paired_bootstrap_auroc(y, s, s * 0.5 + rng.random(80), n_resamples=300, seed=2)
    b = S.paired_bootstrap_auroc(y, s, s * 0.5 + rng.random(80), n_resamples=300, seed=2)
    assert a.clean == b.clean and a.n_resamples == 300
    same = S.paired_bootstrap_auroc(y, s, s, n_resamples=100)
    assert same.estimate == 0 and same.ci_low == same.ci_high == 0


# ------------------------------------------------------------------------- DeLong


def _delong_reference(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float, float]:
    """O(n²) structural components (DeLong 1988): explicit placements V10 and V01."""
    pos, neg = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for s in (s1, s2):
        x, z = s[pos], s[neg]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        v10.append(psi.mean(axis=1))  # per positive
        v01.append(psi.mean(axis=0))  # per negative
        aucs.append(psi.mean())
    s10 = np.cov(np.vstack(v10))
    s01 = np.cov(np.vstack(v01))
    cov = s10 / pos.sum() + s01 / neg.sum()
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return aucs[0], aucs[1], math.sqrt(var)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_quadratic_reference_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    y = (rng.random(n) < 0.35).astype(int)
    s1 = np.round(rng.normal(size=n) + 1.2 * y, 1)
    s2 = np.round(0.6 * s1 + rng.normal(size=n), 1)
    res = S.delong_paired(y, s1, s2)
    a1, a2, se = _delong_reference(y, s1, s2)
    assert res.auc1 == pytest.approx(a1) and res.auc1 == pytest.approx(roc_auc_score(y, s1))
    assert res.auc2 == pytest.approx(a2) and res.auc2 == pytest.approx(roc_auc_score(y, s2))
    assert res.se == pytest.approx(se)
    assert res.z == pytest.approx((a1 - a2) / se)
    assert res.p_value == pytest.approx(2 * sps.norm.sf(abs((a1 - a2) / se)))
    assert res.ci_low == pytest.approx(res.diff - 1.959964 * se, abs=1e-6)
    assert res.n_pos == y.sum() and res.n_neg == n - y.sum()


def test_delong_hand_case() -> None:
    # Positives 3, negatives 2. Score 1 separates perfectly (AUC 1, no variance); score 2
    # has positive placements (0, 1, 1) -> var 1/3, /m = 1/9; negative placements (2/3,
    # 2/3) -> var 0. So AUC2 = 2/3, se = 1/3, z = (1/3)/(1/3) = 1, p = 2·(1 − Φ(1)).
    y = np.array([1, 1, 1, 0, 0])
    s1 = np.array([0.6, 0.7, 0.8, 0.1, 0.2])
    s2 = np.array([0.2, 0.7, 0.9, 0.3, 0.6])
    res = S.delong_paired(y, s1, s2)
    assert res.auc1 == 1.0 and res.auc2 == pytest.approx(2 / 3)
    assert res.se == pytest.approx(1 / 3) and res.z == pytest.approx(1.0)
    assert res.p_value == pytest.approx(0.31731050786291415)


def test_delong_identical_and_degenerate() -> None:
    rng = np.random.default_rng(8)
    y = rng.random(60) < 0.5
    s = rng.random(60)
    same = S.delong_paired(y, s, s)
    assert same.diff == 0 and same.p_value == 1.0 and same.z == 0.0
    one = S.delong_paired(np.ones(4), s[:4], s[:4])
    assert math.isnan(one.p_value) and one.reason is not None and "only positive" in one.reason
    single = S.delong_paired([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4])
    assert single.auc1 == 1.0 and math.isnan(single.se)
    assert single.reason is not None and "(have 1, 3)" in single.reason


# ------------------------------------------------------------------------- helpers


def test_wilcoxon_equals_scipy() -> None:
    rng = np.random.default_rng(9)
    clean = rng.random(40)
    noisy = clean - rng.normal(0.02, 0.05, 40)
    noisy[:5] = clean[:5]  # zero differences
    for zm in ("wilcox", "pratt", "zsplit"):
        ref = sps.wilcoxon(clean - noisy, zero_method=zm)
        got = S.wilcoxon_paired(clean, noisy, zero_method=zm)
        assert got.statistic == pytest.approx(ref.statistic)
        assert got.p_value == pytest.approx(ref.pvalue)
    stat, p = S.wilcoxon_paired(clean, clean)
    assert (stat, p) == (0.0, 1.0)
    noisy[7] = np.nan
    got = S.wilcoxon_paired(clean, noisy)
    keep = np.isfinite(noisy)
    assert got.p_value == pytest.approx(sps.wilcoxon(clean[keep] - noisy[keep]).pvalue)


def test_average_repeats() -> None:
    v = np.array([[1.0, 3.0, np.nan], [np.nan, np.nan, np.nan], [2.0, 2.0, 5.0]])
    out = S.average_repeats(v)
    np.testing.assert_allclose(out, [2.0, np.nan, 3.0])
    np.testing.assert_array_equal(S.average_repeats([1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(InputError, match="N or N×K"):
        S.average_repeats(np.zeros((2, 2, 2)))


def test_holm_hand_cases() -> None:
    # sorted: .005·4 = .02, .01·3 = .03, .03·2 = .06, .04·1 = .04 -> running max .06
    np.testing.assert_allclose(S.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.holm([0.5, 0.2, 0.9]), [1.0, 0.6, 1.0])  # capped at 1
    np.testing.assert_allclose(S.holm([0.01, np.nan, 0.02]), [0.02, np.nan, 0.02])
    assert S.holm([]).size == 0
    with pytest.raises(InputError, match="not in"):
        S.holm([0.2, 1.5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_properties(p: list[float]) -> None:
    adj = S.holm(p)
    arr = np.asarray(p)
    assert (adj >= arr - 1e-15).all() and (adj <= 1).all()
    order = np.argsort(arr, kind="stable")
    assert (np.diff(adj[order]) >= -1e-15).all()  # monotone in the raw p-values
    assert (adj <= np.minimum(arr * len(p), 1) + 1e-15).all()  # never worse than Bonferroni


def test_cases_share_one_draw_of_bootstrap_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    # every case of a run resamples the same patients with the same seed: the weights are
    # drawn once, and a case gets exactly what a fresh draw would give it
    rng = np.random.default_rng(5)
    clean, noisy = rng.uniform(0.7, 1.0, 60), rng.uniform(0.5, 1.0, 60)
    groups = np.repeat(np.arange(30), 2)
    y = rng.integers(0, 2, 60)
    B._shared_weights.cache_clear()
    first = S.paired_bootstrap(clean, noisy, groups, n_resamples=500, seed=3)
    auc_first = S.paired_bootstrap_auroc(y, clean, noisy, groups, n_resamples=500, seed=3)
    assert B._shared_weights.cache_info().misses == 2  # rows per chunk differ: two entries
    again = S.paired_bootstrap(clean, noisy[::-1], groups, n_resamples=500, seed=3)
    assert B._shared_weights.cache_info().hits >= 1
    chunks = B._shared_weights(3, 30, 500, B._CHUNK_ELEMS // 30)
    assert not chunks[0].flags.writeable
    # fresh draws (nothing shared) give the same numbers
    monkeypatch.setattr(B, "_SHARED_WEIGHTS_ELEMS", 0)
    assert S.paired_bootstrap(clean, noisy, groups, n_resamples=500, seed=3) == first
    assert S.paired_bootstrap(clean, noisy[::-1], groups, n_resamples=500, seed=3) == again
    assert S.paired_bootstrap_auroc(y, clean, noisy, groups, n_resamples=500, seed=3) == auc_first
    # and another seed is another draw
    assert S.paired_bootstrap(clean, noisy, groups, n_resamples=500, seed=4).ci_low != first.ci_low

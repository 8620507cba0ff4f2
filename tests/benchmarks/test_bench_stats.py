"""Timings of the vectorised patient bootstraps (skipped unless benchmarks are enabled).

Run: python -m pytest tests/benchmarks/test_bench_stats.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robusttest import stats as S


def test_bench_paired_bootstrap_2000_images_2000_resamples(benchmark: Any) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    clean = rng.beta(20, 2, n)  # Dice-like values near 0.9
    noisy = np.clip(clean - rng.normal(0.02, 0.03, n), 0, 1)
    groups = rng.integers(0, 1400, n)  # some patients with several images
    res = benchmark(S.paired_bootstrap, clean, noisy, groups, n_resamples=2000, seed=0)
    assert res.ci_low < res.estimate < res.ci_high


def test_bench_paired_bootstrap_auroc_600_images(benchmark: Any) -> None:
    rng = np.random.default_rng(1)
    n = 600
    y = rng.random(n) < 0.2
    clean = rng.normal(size=n) + 1.5 * y
    noisy = clean + rng.normal(0, 0.7, n)
    groups = rng.integers(0, 450, n)
    res = benchmark(S.paired_bootstrap_auroc, y, clean, noisy, groups, n_resamples=2000, seed=0)
    assert res.ci_low < res.estimate < res.ci_high

"""Throughput of the phantom generator (single core).

Run: python -m pytest tests/benchmarks/test_bench_phantom.py --benchmark-enable -p no:cacheprovider
The target is ≥ 50 images/s at 256² on one core.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from robusttest.phantom import generate_case

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("size", [256, 512])
def test_generate_case_throughput(benchmark, size: int) -> None:  # type: ignore[no-untyped-def]
    counter = itertools.count()
    generate_case(0, 0, size=size)  # warm the per-size caches

    def one() -> None:
        generate_case(0, next(counter), size=size, finding_prob=0.3)

    benchmark.pedantic(one, rounds=60 if size == 256 else 20, iterations=1, warmup_rounds=3)
    per_s = 1.0 / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = round(per_s, 1)
    print(f"\nphantom {size}²: {per_s:.0f} images/s (median)")

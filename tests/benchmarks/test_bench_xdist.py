"""pytest-xdist speed-up: ``pytest --model ... -n 2`` against ``-n 0`` on the engine
benchmark's grid, both in one run (issue 17).

    ROBUSTTEST_BENCH_N=200 python -m pytest tests/benchmarks/test_bench_xdist.py \\
        --benchmark-only -p no:cacheprovider -s

The grid of tests/benchmarks/test_bench_engine.py: N phantom images (256², default
N = 200; ``ROBUSTTEST_BENCH_N``) × (clean + the default quantum and gaussian ladders: 11
conditions), Dice per image, 1000 bootstrap resamples per case, the fixture lung model
(ONNX) on the CPU, no output cache. Each round times a whole ``pytest`` subprocess with
``-n 0`` (pedantic's setup, timed here) right before the benchmarked ``-n 2`` one, so
both see the same machine load; the ratio reported is the median over rounds
(``ROBUSTTEST_BENCH_ROUNDS``, default 3) of (-n 2) / (-n 0).

* one lane per process (``--robust-lanes 1``): ``-n 0`` evaluates on one core, ``-n 2``
  splits the shards over two workers. Target on 2 cores: ratio ≤ 0.65.
* the default lanes (one per core in one process; under ``-n 2`` each worker takes its
  share of the cores): both fill the cores. Target: ratio ≤ 1.1.

``ROBUSTTEST_BENCH_STRICT=1`` turns the targets into assertions. Every round checks that
both runs wrote the same results JSON (without its run block).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("xdist")

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"
N = int(os.environ.get("ROBUSTTEST_BENCH_N", "200"))
ROUNDS = int(os.environ.get("ROBUSTTEST_BENCH_ROUNDS", "3"))

SUITE = f"""\
name: bench
task: segmentation
data: {{adapter: phantom, options: {{n: {N}, size: 256}}}}
noise: {{quantum: default, gaussian: default}}
repeats: 1
metrics: [dice]
targets: [lungs]
bootstrap: {{resamples: 1000}}
gates: {{default: {{max_drop: 0.1}}}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-xdist")
    (root / "bench.yaml").write_text(SUITE)
    (root / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:hypothesispytest -p no:benchmark -p no:anyio -p no:randomly\n"
    )
    return root


def _pytest(root: Path, n: int, lanes: list[str], out: str) -> float:
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--model={MODEL}",
        "--suite=bench.yaml",
        "--robust-no-cache",
        "--device=cpu",
        f"--robust-json={out}",
        "-n",
        str(n),
        *lanes,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]  # 1: gates
    return seconds


def _same_results(root: Path) -> None:
    a, b = (json.loads((root / f).read_text()) for f in ("n0.json", "n2.json"))
    assert {k: v for k, v in a.items() if k not in ("run", "digest")} == {
        k: v for k, v in b.items() if k not in ("run", "digest")
    }
    assert a["run"]["shards"]["backend"] == "local" and b["run"]["shards"]["backend"] == "xdist"


def _bench(benchmark: Any, project: Path, lanes: list[str], target: float, what: str) -> None:
    serial: list[float] = []

    def timed_serial() -> None:
        serial.append(_pytest(project, 0, lanes, "n0.json"))

    benchmark.pedantic(
        _pytest,
        args=(project, 2, lanes, "n2.json"),
        setup=timed_serial,
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=0,
    )
    _same_results(project)
    parallel = list(benchmark.stats.stats.data)
    ratios = sorted(p / s for p, s in zip(parallel, serial, strict=True))
    ratio = statistics.median(ratios)
    load = os.getloadavg()
    benchmark.extra_info.update(
        {
            "n_images": N,
            "conditions": 11,
            "lanes": what,
            "serial_s": serial,
            "parallel_s": parallel,
            "ratios": ratios,
            "ratio_median": ratio,
            "target": target,
            "load_avg_1_5_15": load,
            "cpus": os.cpu_count(),
        }
    )
    print(
        f"\n-n 2 vs -n 0 ({what}), {N} images x 11 conditions, {os.cpu_count()} CPUs, load "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}: -n 0 "
        f"{', '.join(f'{s:.1f}' for s in serial)} s; -n 2 "
        f"{', '.join(f'{p:.1f}' for p in parallel)} s; ratio per round "
        f"{', '.join(f'{r:.3f}' for r in ratios)}; median {ratio:.3f} (target <= {target})"
    )
    if os.environ.get("ROBUSTTEST_BENCH_STRICT") == "1":
        assert ratio <= target


def test_bench_xdist_one_lane_per_process(benchmark: Any, project: Path) -> None:
    _bench(benchmark, project, ["--robust-lanes=1"], 0.65, "--robust-lanes 1")


def test_bench_xdist_default_lanes(benchmark: Any, project: Path) -> None:
    _bench(benchmark, project, [], 1.1, "default lanes")

"""Engine overhead: a whole suite run against a bare onnxruntime loop over the same inputs.

Run (the project's addopts carry --benchmark-skip, which only --benchmark-only overrides):

    ROBUSTTEST_BENCH_N=200 python -m pytest tests/benchmarks/test_bench_engine.py \
        --benchmark-only -p no:cacheprovider -s

N phantom images (256², default N = 24; set ``ROBUSTTEST_BENCH_N``; timing rounds
``ROBUSTTEST_BENCH_ROUNDS``, default 3) × (clean + 10 noise
conditions: the default quantum and gaussian ladders), Dice per image, 1000 bootstrap
resamples per case, on the CPU. The model is ``fixtures/models/lungs_tinyunet.onnx`` when it
exists, else a TinyUNet(base=8) exported here with a 128² input.

* engine: ``robusttest.engine.evaluate`` with its defaults (on the CPU: one lane per torch
  thread) — batching, noise at native resolution, preprocessing, the model,
  postprocessing, Dice, the paired statistics and verdicts.
* bare: ``InferenceSession.run`` over the very same preprocessed batches (noise applied and
  preprocessed beforehand, outside the timing), in a session with onnxruntime's default
  threading (one intra-op thread per core), as a user would write it.

Rounds interleave: a bare pass is timed right before each engine round, so both see the
same machine load; the ratio reported is the median over rounds of engine / bare (and the
ratio of the two minima). Image decoding is left out of both: the phantom images are
rendered once before timing and served from memory, so the ratio measures what the
engine adds around inference. Target: engine / bare ≤ 1.15 at N = 200
(``ROBUSTTEST_BENCH_STRICT=1`` turns the target into an assertion; at small N the fixed
per-run costs, e.g. the bootstrap, weigh more).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from robusttest import engine
from robusttest.data import Sample
from robusttest.models import ModelCard, export_onnx, load_model, preprocess
from robusttest.suite import Suite, parse_suite
from robusttest.zoo.nets import TinyUNet

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"
N = int(os.environ.get("ROBUSTTEST_BENCH_N", "24"))
BATCH = 16
ROUNDS = int(os.environ.get("ROBUSTTEST_BENCH_ROUNDS", "3"))
TARGET = 1.15


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if FIXTURE.is_file():
        return FIXTURE
    card = ModelCard(
        task="segmentation",
        input_size=(128, 128),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        structures=("lungs",),
        output_activation="sigmoid",
    )
    torch.manual_seed(0)
    return export_onnx(TinyUNet(base=8), tmp_path_factory.mktemp("bench") / "tinyunet.onnx", card)


def bench_suite() -> Suite:
    return parse_suite(
        {
            "name": "bench",
            "task": "segmentation",
            "data": {"adapter": "phantom", "options": {"n": N, "size": 256}},
            "noise": {"quantum": "default", "gaussian": "default"},
            "repeats": 1,
            "metrics": ["dice"],
            "targets": ["lungs"],
            "bootstrap": {"resamples": 1000},
            "gates": {"default": {"max_drop": 0.1}},
        }
    )


def test_bench_engine_vs_bare_onnxruntime(benchmark: Any, model_path: Path) -> None:
    suite = bench_suite()
    assert len(suite.conditions) == 11
    dataset = engine.open_suite_data(suite, None)
    decoded: dict[str, Sample] = {r.image_id: dataset.load(r) for r in dataset.records}
    dataset.load = lambda rec: decoded[rec.image_id]  # type: ignore[method-assign,assignment]
    runner = load_model(model_path, device="cpu")
    options = engine.EngineOptions(device="cpu", cache=False, gallery=0, batch_size=BATCH)

    # the same batches the engine builds (the phantom's images all have one shape)
    samples = [decoded[r.image_id] for r in dataset.records]
    inputs: list[np.ndarray] = []
    for start in range(0, len(samples), BATCH):
        batch = samples[start : start + BATCH]
        x = torch.from_numpy(np.stack([s.image for s in batch]))
        ids = [s.image_id for s in batch]
        spacing = [s.pixel_spacing_mm for s in batch]
        for cond in suite.conditions:
            spec = suite.noise_spec(cond)
            xin = (
                x
                if spec is None
                else spec.apply(x, seed=suite.seed, image_ids=ids, pixel_spacing_mm=spacing)
            )
            inputs.append(preprocess(xin.unsqueeze(1), runner.card).numpy())
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    in_name = session.get_inputs()[0].name

    def bare() -> None:
        for x in inputs:
            session.run(None, {in_name: x})

    bare()  # warm-up
    bare_times: list[float] = []

    def timed_bare() -> None:  # pedantic's untimed setup: a bare pass right before each round
        t0 = time.perf_counter()
        bare()
        bare_times.append(time.perf_counter() - t0)

    result = benchmark.pedantic(
        engine.evaluate,
        args=(runner, suite, dataset, options),
        setup=timed_bare,
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    assert len(result.records) == N * 11

    engine_times = list(benchmark.stats.stats.data)
    bare_times = bare_times[-len(engine_times) :]  # the warm-up round has a setup call too
    ratios = sorted(e / b for e, b in zip(engine_times, bare_times, strict=True))
    ratio = statistics.median(ratios)
    engine_s, bare_s = min(engine_times), min(bare_times)
    benchmark.extra_info.update(
        {
            "n_images": N,
            "conditions": 11,
            "engine_s": engine_s,
            "bare_s": bare_s,
            "ratio_median": ratio,
            "ratio_of_minima": engine_s / bare_s,
            "ratios": ratios,
            "lanes": result.run["lanes"],
        }
    )
    print(
        f"\nengine {engine_s:.3f} s vs bare onnxruntime {bare_s:.3f} s (best of {ROUNDS}) for "
        f"{N} images x 11 conditions ({N * 11} inferences, {model_path.name}, "
        f"{result.run['lanes']} lanes): engine/bare per round "
        f"{', '.join(f'{r:.3f}' for r in ratios)}; median {ratio:.3f}, "
        f"of the minima {engine_s / bare_s:.3f} (target <= {TARGET} at N=200)"
    )
    if os.environ.get("ROBUSTTEST_BENCH_STRICT") == "1":
        assert ratio <= TARGET

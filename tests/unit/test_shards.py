"""Shards (issue 17): the evaluation splits into deterministic shards (image ranges ×
conditions × repeats) whose records merge into one result; the results JSON without its
``run`` block is byte-identical whatever the shard count, the lanes, the decode threads,
the backend or the order the shards complete in.

The reference is the evaluation streamed in one pass (``Evaluator.records``, the path
tests/unit/test_engine.py checks against hand computations), and the run with one shard.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from robusttest import engine
from robusttest.engine import EngineOptions, Evaluator
from robusttest.engine.shards import (
    LocalExecutor,
    Shard,
    ShardOutcome,
    auto_count,
    merge_outcomes,
    plan_shards,
    run_shard,
)
from robusttest.errors import ConfigError
from robusttest.models import load_model, spread_device
from robusttest.options import RunSettings, SettingsError
from robusttest.results import RunResult
from robusttest.suite import Suite, parse_suite

REPO = Path(__file__).resolve().parents[2]
SEG = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"
CLS = REPO / "fixtures" / "models" / "findings_tinycnn.onnx"


def seg_suite(n: int = 7) -> Suite:
    return parse_suite(
        {
            "name": "shards-seg",
            "task": "segmentation",
            "data": {"adapter": "phantom", "options": {"n": n, "size": 64}},
            "noise": {"gaussian": {"sigma": [0.1]}, "quantum": {"dose": [0.25, 0.5]}},
            "repeats": 2,
            "seed": 5,
            "metrics": ["dice", "hd95"],
            "targets": ["lungs"],
            "bootstrap": {"resamples": 200},
        }
    )


def cls_suite() -> Suite:
    return parse_suite(
        {
            "name": "shards-cls",
            "task": "classification",
            "data": {
                "adapter": "phantom",
                "options": {"n": 10, "size": 64, "task": "classification", "finding_prob": 0.5},
            },
            "noise": {"gaussian": {"sigma": [0.2]}},
            "repeats": 2,
            "metrics": ["auroc"],
            "pairwise": [["pneumothorax", "effusion"]],
            "bootstrap": {"resamples": 200},
        }
    )


class Shuffled:
    """Runs the shards here in a shuffled order and hands back each outcome through JSON,
    as a pytest-xdist worker's file does: another completion order, another backend."""

    name = "shuffled"
    shows_warnings = True

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def slots(self, ev: Evaluator) -> int:
        return 3

    def run(
        self, ev: Evaluator, shards: Sequence[Shard], progress: Any
    ) -> Generator[ShardOutcome, None, None]:
        order = list(shards)
        random.Random(self.seed).shuffle(order)
        for shard in order:
            outcome = run_shard(ev, shard)
            yield ShardOutcome.from_dict(json.loads(json.dumps(outcome.to_dict())))

    def close(self) -> None:
        return None


def _evaluate(model: Path, suite: Suite, executor: Any = None, **options: Any) -> RunResult:
    runner, s, ds = engine.prepare(model, suite, device="cpu")
    opts = EngineOptions(cache=False, progress=False, batch_size=3, **options)
    return engine.evaluate(runner, s, ds, opts, executor=executor)


# --- the plan ----------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 7, 16])
@pytest.mark.parametrize("n_items", [1, 3, 11])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
@pytest.mark.parametrize("align", [1, 4])
def test_plan_covers_every_image_and_item_once(
    n: int, n_items: int, count: int, align: int
) -> None:
    items = [(f"c{i // 2}", i % 2) for i in range(n_items)]
    shards = plan_shards(n, items, count, align=align)
    assert len(shards) == min(count, n * n_items)  # exactly the count asked, where possible
    assert [s.index for s in shards] == list(range(len(shards)))
    cells = [(i, it) for s in shards for i in range(s.start, s.stop) for it in s.items]
    assert sorted(cells) == sorted((i, it) for i in range(n) for it in items)
    for s in shards:  # each image is in exactly one shard of group 0
        assert s.n_images >= 1 and s.items
    zero = [i for s in shards if s.group == 0 for i in range(s.start, s.stop)]
    assert sorted(zero) == list(range(n))
    assert plan_shards(n, items, count, align=align) == shards  # deterministic


def test_plan_keeps_batches_whole_when_it_can() -> None:
    shards = plan_shards(100, [("clean", 0)], 3, align=16)
    assert [(s.start, s.stop) for s in shards] == [(0, 32), (32, 64), (64, 100)]


def test_plan_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="shards"):
        plan_shards(4, [("clean", 0)], 0)
    with pytest.raises(ConfigError, match="nothing to split"):
        plan_shards(0, [("clean", 0)], 1)
    with pytest.raises(ConfigError, match="shards: 0"):
        EngineOptions(shards=0)


def test_auto_count() -> None:
    assert auto_count(10_000, 1, 16) == 1  # one process: one shard
    assert auto_count(10_000, 2, 16) == 8  # four per slot
    assert auto_count(40, 2, 16) == 2  # no shard smaller than a batch
    assert auto_count(4, 8, 16) == 1


# --- byte-identical results --------------------------------------------------------------
def test_same_json_whatever_the_shard_count_and_completion_order() -> None:
    suite = seg_suite()
    runner, s, ds = engine.prepare(SEG, suite, device="cpu")
    opts = EngineOptions(cache=False, progress=False, batch_size=3, gallery=1)
    streamed = list(Evaluator(runner, ds, s, opts).records())  # one pass, no shards
    one = engine.evaluate(runner, s, ds, opts)
    assert one.run["shards"] == {**one.run["shards"], "backend": "local", "count": 1}
    assert list(one.records) == sorted(streamed, key=lambda r: (r.image_id, r.condition, r.repeat))
    want = one.to_json(include_run=False)
    assert len(one.records) == 7 * (1 + 3 * 2) and len(one.gallery) > 0
    for count in (2, 3, 7, 23):
        for seed in (0, 1):
            got = engine.evaluate(
                runner, s, ds, replace(opts, shards=count), executor=Shuffled(seed)
            )
            assert got.run["shards"]["done"] == count
            assert got.to_json(include_run=False) == want, (count, seed)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_same_json_whatever_the_lanes_and_decode_threads(count: int) -> None:
    suite = seg_suite()
    want = _evaluate(SEG, suite).to_json(include_run=False)
    got = _evaluate(SEG, suite, Shuffled(count), shards=count, lanes=2, workers=0)
    assert got.run["lanes"] == 2
    assert got.to_json(include_run=False) == want


def test_same_json_for_classification_with_pairwise_tasks() -> None:
    suite = cls_suite()
    want = _evaluate(CLS, suite).to_json(include_run=False)
    for count in (2, 3, 7):
        got = _evaluate(CLS, suite, Shuffled(count), shards=count)
        assert got.to_json(include_run=False) == want, count


def test_shards_with_a_selection_compute_only_its_conditions() -> None:
    picked = ["lungs-dice[quantum-dose50]", "lungs-hd95[gaussian-sigma0.1]"]
    runner, s, ds = engine.prepare(SEG, seg_suite(), device="cpu")
    opts = EngineOptions(cache=False, progress=False, batch_size=3)
    want = engine.evaluate(runner, s, ds, opts, cases=picked)
    got = engine.evaluate(
        runner, s, ds, replace(opts, shards=5), cases=picked, executor=Shuffled(2)
    )
    assert got.to_json(include_run=False) == want.to_json(include_run=False)
    assert {r.condition for r in got.records} == {"clean", "quantum-dose50", "gaussian-sigma0.1"}
    assert [c.case_id for c in got.cases] == picked


def test_merge_counts_a_shard_redone_once() -> None:
    suite = seg_suite(n=4)
    runner, s, ds = engine.prepare(SEG, suite, device="cpu")
    ev = Evaluator(runner, ds, s, EngineOptions(cache=False, batch_size=2))
    shards = plan_shards(len(ds), ev.items(), 3, align=2)
    outcomes = [run_shard(ev, sh) for sh in shards]
    merged = merge_outcomes(ev, shards, [*outcomes, run_shard(ev, shards[1])])  # redone
    assert merged.done == 3 and merged.missing == 0 and not merged.interrupted
    assert len(merged.records) == 4 * len(ev.items())
    partial = merge_outcomes(ev, shards, outcomes[:2])
    assert partial.missing == 1


def test_outcome_round_trips_through_json() -> None:
    suite = seg_suite(n=3)
    runner, s, ds = engine.prepare(SEG, suite, device="cpu")
    ev = Evaluator(runner, ds, s, EngineOptions(cache=False))
    [shard] = plan_shards(len(ds), ev.items(), 1)
    outcome = run_shard(ev, shard)
    back = ShardOutcome.from_dict(json.loads(json.dumps(outcome.to_dict())))
    assert back == outcome
    assert back.bit_depths == {"float": 3} and back.spacing_seen == (True,)


def test_a_shard_outside_the_selection_is_refused() -> None:
    suite = seg_suite(n=2)
    runner, s, ds = engine.prepare(SEG, suite, device="cpu")
    ev = Evaluator(runner, ds, s, EngineOptions(cache=False))
    with pytest.raises(ConfigError, match="not evaluated by this selection"):
        list(ev.records(shard=Shard(0, 0, 2, 0, (("no-such-condition", 0),))))


def test_local_executor_is_the_default() -> None:
    r = _evaluate(SEG, seg_suite(n=2))
    assert r.run["shards"]["backend"] == LocalExecutor.name


# --- options and devices -------------------------------------------------------------------
def test_shard_and_backend_options() -> None:
    here = Path.cwd()
    s = RunSettings.from_sources({"shards": "5", "backend": "local"}, invocation_dir=here)
    assert (s.shards, s.backend, s.ray_address) == (5, "local", None)
    with pytest.raises(SettingsError, match="--robust-shards: 0 is not >= 1"):
        RunSettings.from_sources({"shards": "0"}, invocation_dir=here)
    with pytest.raises(SettingsError, match="'spark' is not a backend; use local or ray"):
        RunSettings.from_sources({"backend": "spark"}, invocation_dir=here)
    with pytest.raises(SettingsError, match="--robust-ray-address: only applies with"):
        RunSettings.from_sources({"ray_address": "auto"}, invocation_dir=here)
    with pytest.raises(ConfigError, match="only applies with backend='ray'"):
        engine.pipeline.executor_for("local", "auto")


def test_backend_ray_without_ray_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from robusttest import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(SettingsError) as info:
        RunSettings.from_sources({"backend": "ray"}, invocation_dir=Path.cwd())
    assert str(info.value) == (
        "--robust-backend: ray is not installed; install the ray extra: "
        "pip install 'robusttest[ray]'"
    )
    code = cli.main(["run", str(SEG), "--backend", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].endswith(
        "--backend: ray is not installed; install the ray extra: pip install 'robusttest[ray]'"
    )


def test_worker_i_uses_cuda_i_mod_the_gpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [spread_device("cuda", i) for i in range(5)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
        "cuda:1",
    ]
    assert spread_device("auto", 4) == "cuda:1"
    assert spread_device("cuda:2", 0) == "cuda:2"  # an explicit device is kept
    assert spread_device("cpu", 1) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert spread_device("auto", 1) == "auto"


def test_load_model_is_the_one_the_shards_use() -> None:
    # a Ray task or xdist worker loads the model from its bytes and the driver's card
    runner = load_model(SEG, device="cpu")
    again = load_model(SEG, device="cpu", card_overrides=runner.card.to_dict())
    assert again.card == runner.card and again.sha256 == runner.sha256

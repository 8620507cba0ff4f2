"""The lung fixture's Dice frontier under `gaussian`, and the ladder on either side of it.

The gate of the built-in `lungs` suite under `gaussian` (Dice ≥ 0.8 and a drop ≤ 0.15,
on the CI's conservative bound) fails somewhere between σ = 0.12 and 0.18; the frontier
says where, and a ladder 3 % below and 3 % above that level passes and fails.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from robusttest import engine
from robusttest.noise import NoiseSpec
from robusttest.suite import load_suite

MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "lungs_tinyunet.onnx"


@pytest.mark.slow
def test_lung_fixture_gaussian_frontier_and_the_ladder_around_it() -> None:
    lungs = load_suite("lungs")
    gaussian = tuple(n for n in lungs.noise if n.name == "gaussian")
    suite = dataclasses.replace(lungs, noise=gaussian, frontier={"gaussian": {"dice": None}})
    kw = {"cache": False, "gallery": 0, "progress": False, "device": "cpu"}
    result = engine.run(MODEL, suite, **kw)
    f = result.frontier("lungs-dice[gaussian-frontier]")
    ladder = {c.level: c.verdict for c in result.cases if c.metric == "dice" and c.noise}
    assert ladder[0.12] == "pass" and ladder[0.18] == "fail"
    assert f.reached and f.level is not None and 0.12 < f.level < 0.18
    assert f.ci_low is not None and f.ci_high is not None and f.estimate is not None
    assert f.ci_low < f.estimate < f.ci_high and f.ci_high - f.ci_low < 0.06
    assert f.level == pytest.approx(f.ci_low, abs=0.003)
    assert f.gate == "min" and f.limit == 0.8 and 1 <= f.evaluations <= 8
    below, above = f.level * 0.97, f.level * 1.03
    around = dataclasses.replace(
        suite, noise=(NoiseSpec("gaussian", below), NoiseSpec("gaussian", above)), frontier={}
    )
    again = engine.run(MODEL, around, **kw)
    verdicts = {c.level: c.verdict for c in again.cases if c.metric == "dice" and c.noise}
    assert verdicts == {below: "pass", above: "fail"}

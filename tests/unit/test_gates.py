"""Gates: the judgement of one limit, and of a case (robusttest.gates)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robusttest import gates as G
from robusttest import stats as S
from robusttest.errors import ConfigError, UnknownNameError

# --------------------------------------------------------------------------- judge


def test_judge_max_drop_ci_and_point() -> None:
    v = G.judge("max_drop", 0.05, 0.03, 0.01, 0.06, 0.91, True, metric="dice", n=120,
                context="quantum a=0.10")  # fmt: skip
    assert not v.passed and v.value_used == 0.06
    assert v.explanation == (
        "dice quantum a=0.10: drop 0.03 [95% CI 0.01, 0.06], clean 0.91, n=120 images; "
        "upper 95% CI bound 0.06 > limit 0.05: FAIL"
    )
    p = G.judge("max_drop", 0.05, 0.03, 0.01, 0.06, 0.91, True, on="point")
    assert (
        p.passed and p.value_used == 0.03 and "point estimate 0.03 <= limit 0.05" in p.explanation
    )


def test_judge_min_mirrors_for_lower_is_better() -> None:
    # Dice floor: lower CI bound of the noisy value must reach the limit.
    assert G.judge("min", 0.85, 0.88, 0.86, 0.90, 0.92, True).passed
    assert not G.judge("min", 0.87, 0.88, 0.86, 0.90, 0.92, True).passed
    # HD95 (lower is better): "min" quality is a ceiling, judged on the upper bound.
    v = G.judge("min", 10.0, 8.0, 6.0, 11.0, 5.0, False)
    assert not v.passed and v.value_used == 11.0 and "11 > limit 10" in v.explanation
    assert G.judge("min", 12.0, 8.0, 6.0, 11.0, 5.0, False).passed


def test_judge_relative_nan_and_errors() -> None:
    v = G.judge("max_relative_drop", 0.05, 0.02, 0.01, 0.04, 0.9, True)
    assert v.passed and "4.00% <= limit 5.00%" in v.explanation
    nan = G.judge("max_drop", 0.05, 0.0, math.nan, math.nan, 0.9, True, reason="only 1 patient")
    assert not nan.passed and "undefined (only 1 patient)" in nan.explanation
    with pytest.raises(UnknownNameError, match="known gate kinds: max_drop"):
        G.judge("max_dorp", 0.05, 0, 0, 0, 0, True)
    with pytest.raises(UnknownNameError, match="judge mode"):
        G.judge("max_drop", 0.05, 0, 0, 0, 0, True, on="mean")
    with pytest.raises(ConfigError, match="limit"):
        G.judge("max_drop", math.nan, 0, 0, 0, 0, True)


def test_judge_bootstrap_uses_the_gated_quantity() -> None:
    rng = np.random.default_rng(10)
    clean = rng.normal(0.9, 0.02, 200)
    noisy = clean - rng.normal(0.03, 0.01, 200)
    res = S.paired_bootstrap(clean, noisy, None, n_resamples=1000)
    drop = G.judge_bootstrap("max_drop", 0.05, res, metric="dice")
    assert drop.passed and drop.value_used == res.ci_high
    assert "n=200 images / 200 patients" in drop.explanation
    floor = G.judge_bootstrap("min", 0.9, res)
    assert not floor.passed and floor.value_used == res.noisy_ci_low
    rel = G.judge_bootstrap("max_relative_drop", 0.02, res)
    assert not rel.passed and rel.value_used == res.relative_ci_high
    with pytest.raises(UnknownNameError):
        G.gated_values(res, "maximum")


def _boot(clean: float, noisy: float, lo: float, hi: float) -> S.BootstrapResult:
    return S.BootstrapResult(
        estimate=clean - noisy, ci_low=lo, ci_high=hi, n=10, n_groups=10, se=0.01,
        clean=clean, noisy=noisy, noisy_ci_low=noisy - 0.01, noisy_ci_high=noisy + 0.01,
        relative=(clean - noisy) / clean, relative_ci_low=lo / clean, relative_ci_high=hi / clean,
    )  # fmt: skip


def test_judge_case_every_limit_must_hold() -> None:
    boot = _boot(0.9, 0.8, 0.08, 0.12)  # drop 0.1 [0.08, 0.12], noisy 0.8 [0.79, 0.81]
    gate = G.GateSpec(min=0.75, max_drop=0.11)
    v = G.judge_case(gate, boot, metric="dice", target="lungs", condition="gaussian-sigma0.1")
    assert v.verdict == "fail" and v.failed == ("max_drop",)
    assert v.message.startswith("dice lungs [gaussian-sigma0.1]: noisy value 0.8")
    assert "upper 95% CI bound 0.12 > limit 0.11: FAIL" in v.message
    ok = G.judge_case(G.GateSpec(min=0.75, max_drop=0.13), boot, metric="dice", target="lungs",
                      condition="x")  # fmt: skip
    assert ok.verdict == "pass" and ok.failed == ()
    none = G.judge_case(None, boot, metric="dice", target="lungs", condition="x")
    assert none.verdict == "no-gate" and none.message.endswith("no gate")


def test_gate_table_levels() -> None:
    table = G.GateTable(
        default={"min": 0.5, "max_drop": 0.1},
        metrics={"dice": {"max_drop": 0.2}},
        conditions={"gaussian": {"dice": None}, "gaussian-sigma0.2": {"dice": {"min": 0.3}}},
    )
    assert table.for_case("dice", "quantum-dose10", "quantum") == G.GateSpec(min=0.5, max_drop=0.2)
    assert table.for_case("dice", "gaussian-sigma0.1", "gaussian") is None
    assert table.for_case("dice", "gaussian-sigma0.2", "gaussian") == G.GateSpec(min=0.3)
    assert table.for_case("dice", "clean", None) == G.GateSpec(min=0.5)
    assert G.GateSpec(min=0.5, max_drop=0.2).limits() == {"min": 0.5, "max_drop": 0.2}

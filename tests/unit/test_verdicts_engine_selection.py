"""Issue 14, point 1 at the engine: ``robusttest.run(..., cases=...)`` computes only the
conditions, targets and metrics of the selected cases, judges only them, and records the
selection; their numbers are those of the whole grid (Holm spans the cases judged)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import robusttest
from robusttest import stats as S
from robusttest.engine.evaluation import Evaluator
from robusttest.errors import ConfigError

MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "lungs_tinyunet.onnx"
KW = {"limit": 6, "cache": False, "progress": False, "gallery": 0, "lanes": 1, "batch_size": 3}


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Model calls per condition (each batch × condition × repeat is one call)."""
    calls: Counter[str] = Counter()
    orig = Evaluator.noisy

    def counting(self: Evaluator, x, spec, ids, repeat, spacing):  # type: ignore[no-untyped-def]
        calls["clean" if spec is None else spec.slug] += 1
        return orig(self, x, spec, ids, repeat, spacing)

    monkeypatch.setattr(Evaluator, "noisy", counting)
    return calls


def test_selection_engine_a_deselected_condition_costs_no_model_call(
    model_calls: Counter[str],
) -> None:
    full = robusttest.run(MODEL, "lungs", **KW)
    full_calls = dict(model_calls)
    model_calls.clear()
    wanted = [c.case_id for c in full.cases if c.noise == "quantum"]
    sel = robusttest.run(MODEL, "lungs", cases=wanted, **KW)
    # 2 batches of 3 images; the clean pass once, each quantum level twice (2 repeats)
    quantum = {k: v for k, v in full_calls.items() if k.startswith("quantum")}
    assert dict(model_calls) == {"clean": 2, **quantum} and set(quantum.values()) == {4}
    assert sum(full_calls.values()) == 2 + 15 * 4  # 15 noisy levels in the lungs suite

    assert [c.case_id for c in sel.cases] == wanted
    assert {r.condition for r in sel.records} == {"clean", *quantum}
    by_id = {c.case_id: c for c in full.cases}
    for c in sel.cases:
        f = by_id[c.case_id]
        same = ("clean", "noisy", "drop", "ci_low", "ci_high", "noisy_ci_low", "p_value")
        assert all(getattr(c, k) == getattr(f, k) for k in same), c.case_id
        assert (c.verdict, c.failed_limits) == (f.verdict, f.failed_limits)
    # Holm over the judged cases only
    ps = [c.p_value for c in sel.cases if c.p_value is not None]
    np.testing.assert_allclose(
        [c.p_adjusted for c in sel.cases if c.p_value is not None], S.holm(ps)
    )
    assert sel.provenance["selection"] == {
        "n_grid": 32,
        "n_selected": 10,
        "cases": wanted,
        "by": "robusttest.run(cases=...)",
    }
    assert full.provenance["selection"]["by"] is None
    assert full.provenance["selection"]["n_selected"] == 32


def test_selection_engine_restricts_metrics_too(model_calls: Counter[str]) -> None:
    sel = robusttest.run(MODEL, "lungs", cases=["lungs-hd95[gaussian-sigma0.26]"], **KW)
    assert set(model_calls) == {"clean", "gaussian-sigma0.26"}
    assert {k for r in sel.records for k in r.values} == {"hd95/lungs"}
    assert [c.case_id for c in sel.cases] == ["lungs-hd95[gaussian-sigma0.26]"]


def test_selection_engine_unknown_case_names_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"case 'lungs-dice\[quantum-dose0\.033\]' is not in the"):
        robusttest.run(MODEL, "lungs", cases=["lungs-dice[quantum-dose0.033]"], **KW)
    with pytest.raises(ConfigError, match=r"closest: lungs-dice\[quantum-dose0\.03\]"):
        robusttest.run(MODEL, "lungs", cases=["lungs-dice[quantum-dose0.033]"], **KW)
    with pytest.raises(ConfigError, match="no case selected"):
        robusttest.run(MODEL, "lungs", cases=[], **KW)


def test_selecting_a_frontier_searches_only_it_on_the_same_numbers() -> None:
    fid = "lungs-dice[gaussian-frontier]"
    whole = robusttest.run(MODEL, "lungs", frontier=True, **KW)
    assert fid in {f.frontier_id for f in whole.frontiers} and len(whole.frontiers) > 1
    sel = robusttest.run(MODEL, "lungs", cases=[fid], frontier=True, **KW)
    # no grid case was selected: none is judged; the clean pass it pairs with is evaluated
    assert sel.cases == () or list(sel.cases) == []
    (f,) = sel.frontiers
    want = whole.frontier(fid)
    assert (f.frontier_id, f.reached, f.estimate, f.ci_low, f.ci_high) == (
        want.frontier_id,
        want.reached,
        want.estimate,
        want.ci_low,
        want.ci_high,
    )
    # a grid case beside it: judged as in the whole run, and still only that frontier
    case = "lungs-dice[gaussian-sigma0.26]"
    both = robusttest.run(MODEL, "lungs", cases=[case, fid], frontier=True, **KW)
    assert [c.case_id for c in both.cases] == [case]
    assert [f.frontier_id for f in both.frontiers] == [fid]
    assert both.cases[0].drop == whole.case(case).drop

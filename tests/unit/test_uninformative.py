"""The clean-performance floor: a metric/target the model cannot do makes its cases
``uninformative`` (issue 19).

The end-to-end checks use a hand-built model whose output ignores the image (the same
logits for every input), so its AUROC is exactly 0.5 for every label, clean and noisy,
and every gate passes with a drop of 0: the floor is what must stop those passes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch import nn

import robusttest
from robusttest import engine
from robusttest.errors import SuiteError
from robusttest.gates import (
    FLOOR,
    CaseVerdict,
    GateTable,
    judge_floor,
    mark_uninformative,
)
from robusttest.models import ModelCard, export_onnx
from robusttest.phantom import FINDINGS
from robusttest.report import summary_line
from robusttest.report.html import render_html
from robusttest.report.junit import JUnitRenderer
from robusttest.results import RunResult
from robusttest.suite import load_suite, parse_suite

REPO = Path(__file__).resolve().parents[2]
FINDINGS_MODEL = REPO / "fixtures" / "models" / "findings_tinycnn.onnx"
HEADS = ("effusion", "pneumothorax", "cardiomegaly", "consolidation", "pneumothorax-vs-effusion")


# --- the judgement, by hand -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("clean", "lo", "hi", "floor", "expect"),
    [
        (0.55, 0.45, 0.65, None, "its CI contains chance (0.5)"),
        (0.5, 0.5, 0.5, None, "its CI contains chance (0.5)"),  # constant scores
        (0.62, 0.51, 0.72, None, None),  # above chance, no floor
        (0.62, 0.51, 0.72, 0.7, "below the suite's floor 0.7"),
        (0.45, 0.30, 0.60, 0.7, "its CI contains chance (0.5) and below the suite's floor 0.7"),
        (0.30, 0.20, 0.40, None, None),  # worse than chance, but distinguishable from it
        (0.71, 0.60, 0.80, 0.7, None),  # the floor is on the point estimate
        (math.nan, math.nan, math.nan, 0.7, None),  # undefined: its cases say why already
    ],
)
def test_judge_floor_auroc(
    clean: float, lo: float, hi: float, floor: float | None, expect: str | None
) -> None:
    why = judge_floor(
        clean,
        lo,
        hi,
        metric="auroc",
        target="nodule",
        higher_is_better=True,
        chance=0.5,
        floor=floor,
    )
    if expect is None:
        assert why is None
    else:
        assert why == f"clean auroc nodule {clean:.4g} [95% CI {lo:.4g}, {hi:.4g}]: {expect}"


def test_judge_floor_dice_and_a_ceiling_for_lower_is_better() -> None:
    kw = {"metric": "dice", "target": "lungs", "higher_is_better": True, "chance": None}
    assert judge_floor(0.79, 0.75, 0.83, floor=0.8, **kw) is not None  # type: ignore[arg-type]
    assert judge_floor(0.81, 0.75, 0.86, floor=0.8, **kw) is None  # type: ignore[arg-type]
    assert judge_floor(0.1, 0.0, 0.2, floor=None, **kw) is None  # type: ignore[arg-type]
    hd = {"metric": "hd95", "target": "lungs", "higher_is_better": False, "chance": None}
    why = judge_floor(31.0, 25.0, 40.0, floor=30.0, **hd)  # type: ignore[arg-type]
    assert why is not None and why.endswith("above the suite's floor 30")
    assert judge_floor(29.0, 25.0, 40.0, floor=30.0, **hd) is None  # type: ignore[arg-type]


def test_mark_uninformative_keeps_the_gate_outcome_and_errors() -> None:
    passed = CaseVerdict("pass", "auroc x [clean]: ...: PASS")
    failed = CaseVerdict("fail", "drop too large: FAIL", ("max_drop",))
    report = mark_uninformative(passed, "clean auroc x 0.5: at chance")
    assert report.verdict == "uninformative" and report.failed == ()
    assert report.message.startswith("uninformative: clean auroc x 0.5: at chance; not judged")
    assert "PASS" in report.message  # what the gate said is still there
    assert mark_uninformative(failed, "w").verdict == "uninformative"
    strict = mark_uninformative(passed, "w", "fail")
    assert strict.verdict == "fail" and strict.failed == (FLOOR,)
    assert "gates.uninformative: fail" in strict.message
    assert mark_uninformative(failed, "w", "fail").failed == ("max_drop", FLOOR)
    error = CaseVerdict("error", "undefined")
    assert mark_uninformative(error, "w", "fail") is error


# --- the suite grammar ----------------------------------------------------------------------
BASE = {
    "name": "s",
    "task": "classification",
    "data": {"adapter": "phantom", "options": {"task": "classification"}},
    "metrics": ["auroc"],
}


def test_suite_floor_and_policy_parse_and_enter_the_hash() -> None:
    plain = parse_suite(BASE)
    assert plain.gates.floor == {} and plain.gates.uninformative == "report"
    assert "floor" not in plain.gates.to_dict()  # suites without floors keep their hash
    floored = parse_suite({**BASE, "gates": {"floor": {"auroc": 0.7}}})
    assert floored.gates.floor == {"auroc": 0.7}
    strict = parse_suite({**BASE, "gates": {"floor": {"auroc": 0.7}, "uninformative": "fail"}})
    assert strict.gates.uninformative == "fail"
    assert len({plain.sha256, floored.sha256, strict.sha256}) == 3


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ({"floor": {"dice": 0.8}}, "s.yaml: gates.floor.dice: not a metric of this suite (auroc)"),
        ({"floor": {"auroc": "high"}}, "s.yaml: gates.floor.auroc: 'high' is not a number"),
        (
            {"uninformative": "skip"},
            "s.yaml: gates.uninformative: 'skip' is not one of report, fail",
        ),
    ],
)
def test_suite_floor_errors_are_one_line(gates: dict[str, object], message: str) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite({**BASE, "gates": gates}, "s.yaml")
    assert str(err.value) == message


def test_builtin_suites_set_floors() -> None:
    assert load_suite("findings").gates.floor == {"auroc": 0.7}
    assert load_suite("tb").gates.floor == {"auroc": 0.7}
    assert load_suite("lungs").gates.floor == {"dice": 0.8}
    assert load_suite("paper-2509.25265", "segmentation").gates.floor == {"dice": 0.8}
    assert load_suite("paper-2509.25265", "classification").gates.floor == {"auroc": 0.7}
    assert GateTable().to_dict() == {"on": "ci", "default": None, "metrics": {}, "conditions": {}}


# --- end to end: a model whose output ignores the image ---------------------------------------
class IgnoresTheImage(nn.Module):
    """The same logits for every image (a different one per label)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.linspace(-1.0, 1.0, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0.0 * x.mean()


@pytest.fixture(scope="module")
def ignorant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    card = ModelCard(
        task="classification",
        input_size=(128, 128),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        labels=tuple(FINDINGS),
        output_activation="sigmoid",
        name="ignores-the-image",
    )
    return export_onnx(
        IgnoresTheImage(len(FINDINGS)), tmp_path_factory.mktemp("m") / "c.onnx", card
    )


def _run(model: Path, suite: object, tmp: Path) -> RunResult:
    return robusttest.run(
        model, suite, limit=40, cache=False, progress=False, gallery=0, cache_dir=tmp
    )  # type: ignore[arg-type]


def _strict_findings(tmp: Path) -> Path:
    text = (REPO / "suites" / "findings.yaml").read_text()
    assert "  floor: {auroc: 0.70}" in text
    strict = text.replace("  floor: {auroc: 0.70}", "  floor: {auroc: 0.70}\n  uninformative: fail")
    path = tmp / "findings-strict.yaml"
    path.write_text(strict)
    return path


def test_a_model_that_ignores_the_image_is_uninformative_not_passing(
    ignorant: Path, tmp_path: Path
) -> None:
    result = _run(ignorant, "findings", tmp_path)
    assert {c.target for c in result.cases} == set(HEADS)
    assert {c.verdict for c in result.cases} == {"uninformative"}
    for c in result.cases:
        assert c.clean == 0.5 and c.drop == 0.0  # nothing to lose: every gate held
        assert "its CI contains chance (0.5)" in c.message
        assert ("no gate" if c.is_baseline else "PASS") in c.message
    assert result.passed  # reported apart; the suite did not ask to fail them
    n = len(result.cases)
    assert result.counts() == {"pass": 0, "fail": 0, "no-gate": 0, "uninformative": n, "error": 0}
    assert summary_line(result) == (
        f"PASSED: {n} cases: 0 passed, 0 failed, 0 reported without a gate, "
        f"{n} uninformative (clean performance at chance or below the floor); "
        "not evaluated: nodule"  # the model's head the suite dropped, listed (issue 14)
    )
    junit = ET.fromstring(JUnitRenderer().render(result, rendered_at="t"))
    suite = junit.find("testsuite")
    assert suite is not None and suite.get("skipped") == str(n) and suite.get("failures") == "0"
    skipped = [s.get("message", "") for s in junit.iter("skipped")]
    assert len(skipped) == n and all(m.startswith("uninformative: clean auroc") for m in skipped)
    page = render_html(result, rendered_at="t")
    assert '<section id="uninformative"><h2>Uninformative (5 metric · target)</h2>' in page
    assert page.count('class="badge v-uninformative"') >= n
    # the saved results read back with the verdict
    assert RunResult.from_json(result.to_json()).counts()["uninformative"] == n


def test_the_suite_that_asks_fails_uninformative_cases(ignorant: Path, tmp_path: Path) -> None:
    result = _run(ignorant, _strict_findings(tmp_path), tmp_path)
    assert {c.verdict for c in result.cases} == {"fail"}
    assert all(c.failed_limits == (FLOOR,) and c.uninformative for c in result.cases)
    assert not result.passed
    n = len(result.cases)
    assert summary_line(result).startswith(
        f"FAILED: {n} cases: 0 passed, {n} failed ({n} of them uninformative)"
    )
    page = render_html(result, rendered_at="t")
    assert "— 16 cases, 16 failed (the suite fails them)" in page


def test_a_good_model_is_not_marked(tmp_path: Path) -> None:
    """The shipped findings model on the findings suite's 300 images: every head clears
    the floor. (The floor reads the clean cases only, so one noise level is enough.)"""
    import dataclasses

    suite = load_suite("findings")
    suite = dataclasses.replace(suite, noise=suite.noise[:1])
    result = robusttest.run(
        FINDINGS_MODEL, suite, cache=False, progress=False, gallery=0, cache_dir=tmp_path
    )
    clean = {c.target: c for c in result.cases if c.is_baseline}
    assert set(clean) == set(HEADS)
    assert all(c.clean >= 0.7 and c.noisy_ci_low > 0.5 for c in clean.values()), {
        t: (c.clean, c.noisy_ci_low) for t, c in clean.items()
    }
    assert not result.uninformative
    assert result.counts()["uninformative"] == 0


def test_summarise_marks_every_case_of_the_metric_and_target() -> None:
    """Synthetic Dice records: a floor above the clean Dice marks the clean case and each
    noisy one; the policy 'fail' fails them."""
    from test_engine import GATE_SUITE, SEG_PLAN, synthetic_records

    recs, clean, _ = synthetic_records()
    base = parse_suite(GATE_SUITE)
    floor = float(clean.mean()) + 0.01
    high = parse_suite({**GATE_SUITE, "gates": {"floor": {"dice": floor}}})
    low = parse_suite({**GATE_SUITE, "gates": {"floor": {"dice": floor - 0.1}}})
    strict = parse_suite(
        {**GATE_SUITE, "gates": {"floor": {"dice": floor}, "uninformative": "fail"}}
    )
    plain = engine.summarise(recs, base, SEG_PLAN)
    assert [c.verdict for c in engine.summarise(recs, low, SEG_PLAN)] == [c.verdict for c in plain]
    marked = engine.summarise(recs, high, SEG_PLAN)
    assert [c.verdict for c in marked] == ["uninformative"] * 4
    assert all(f"below the suite's floor {floor:g}" in c.message for c in marked)
    assert [(c.clean, c.drop) for c in marked] == [(c.clean, c.drop) for c in plain]
    failed = engine.summarise(recs, strict, SEG_PLAN)
    assert [c.verdict for c in failed] == ["fail"] * 4

"""Issue 14, point 9 (the library side; tests/plugin/test_verdicts_junit_pytest.py has pytest's):
one JUnit property per limit (limit_min, limit_max_drop, limit_max_relative_drop, whichever
apply), beside the CI each is judged on; the model's name and sha256 and the suite's hash
as testsuite properties; a ``type`` on each failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from report_factory import make_result

from robusttest.gates import GateSpec
from robusttest.report.junit import JUnitRenderer, case_properties, suite_properties
from robusttest.results import merge


@pytest.mark.parametrize(
    ("gate", "limits"),
    [
        (None, {}),
        (GateSpec(min=0.8), {"limit_min": "0.8"}),
        (GateSpec(min=0.8, max_drop=0.05), {"limit_min": "0.8", "limit_max_drop": "0.05"}),
        (
            GateSpec(min=0.7, max_drop=0.02, max_relative_drop=0.1, on="point"),
            {"limit_min": "0.7", "limit_max_drop": "0.02", "limit_max_relative_drop": "0.1"},
        ),
        (GateSpec(max_relative_drop=0.1), {"limit_max_relative_drop": "0.1"}),
    ],
)
def test_junit_one_property_per_limit(gate: GateSpec | None, limits: dict[str, str]) -> None:
    case = replace(make_result().cases[3], gate=gate)
    props = case_properties(case)
    assert {k: v for k, v in props.items() if k.startswith("limit")} == limits
    assert "limit" not in props  # the old single limit mixed the min with the drop's CI
    assert props["judged_on"] == gate.on if gate is not None else "judged_on" not in props
    # each limit's quantity is there to compare it with
    assert float(props["noisy_ci_low"]) == case.noisy_ci_low
    assert float(props["ci_high"]) == case.ci_high
    assert float(props["relative_ci_high"]) == case.relative_ci_high
    assert props["test_unit"] == "patient" and all(isinstance(v, str) for v in props.values())


def test_junit_renderer_suite_properties_and_failure_type() -> None:
    result = make_result()  # one Dice case fails its max_drop gate
    xml = JUnitRenderer().render(result, rendered_at="2025-01-01T00:00:00Z")
    root = ET.fromstring(xml.split("\n", 1)[1])
    [suite] = root.iter("testsuite")
    props = [(p.get("name"), p.get("value")) for p in suite.find("properties") or []]
    assert ("model", "unet_lungs.onnx") in props
    assert ("model_sha256", "3f" * 32) in props
    assert ("suite", "lungs") in props and ("suite_sha256", "ab" * 32) in props
    assert ("completed", "true") in props
    failures = list(root.iter("failure"))
    assert len(failures) == result.counts()["fail"] == 1
    assert failures[0].get("type") == "robusttest.GateFailure"
    assert failures[0].get("message", "").startswith("dice lungs [gaussian-sigma0.12]")


def test_junit_suite_properties_of_several_runs_in_order() -> None:
    a = make_result(model_name="a.onnx")
    b = make_result(model_name="b.onnx", task="lungs2")
    props = suite_properties(merge([a, b]))
    assert [v for k, v in props if k == "model"] == ["a.onnx", "b.onnx"]
    assert [v for k, v in props if k == "suite"] == ["lungs", "lungs2"]
    assert [v for k, v in suite_properties(merge([a, b]), "lungs2") if k == "model"] == ["b.onnx"]
    incomplete = suite_properties(make_result(completed=False))
    assert ("completed", "false") in incomplete and ("incomplete", "interrupted") in incomplete

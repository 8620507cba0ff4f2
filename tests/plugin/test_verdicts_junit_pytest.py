"""Issue 14, point 9 in pytest's --junitxml: one property per limit, the model's name and
sha256 and the suite's hash as testsuite properties, ``type`` on each failure; in both
JUnit families."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

import pytest
from plugin_helpers import Models, junit_cases, small, suite_yaml


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_junit_properties_and_failure_types_in_pytests_xml(
    project: pytest.Pytester, models: Models, family: str
) -> None:
    # quantum passes, the gaussian case fails its min: both kinds of testcase in the file
    project.makefile(
        ".yaml",
        tiny=suite_yaml(gate="{min: 0.0, max_drop: 0.5}")
        + "  conditions:\n    gaussian:\n      dice: {min: 1.01}\n",
    )
    result = project.runpytest(
        *small(models.seg), "--junitxml=j.xml", "--robust-json=r.json", "-o",
        f"junit_family={family}",
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=1, warnings=int(family == "xunit2"))
    doc = json.loads((project.path / "r.json").read_text())
    root = ET.parse(project.path / "j.xml").getroot()
    [suite] = root.iter("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert props["robusttest_model"] == "seg.onnx"
    assert props["robusttest_model_sha256"] == hashlib.sha256(models.seg.read_bytes()).hexdigest()
    assert props["robusttest_suite"] == "tiny"
    assert props["robusttest_suite_sha256"] == doc["provenance"]["suite"]["sha256"]
    assert props["robusttest_completed"] == "true"
    assert props["robusttest_summary"].startswith("FAILED: 3 cases: 2 passed, 1 failed")
    [failure] = root.iter("failure")
    assert failure.get("type") == "robusttest.GateFailure"
    assert failure.get("message", "").startswith("dice lungs [gaussian-sigma0.08]")
    if family == "xunit1":
        cases = junit_cases(project.path / "j.xml")
        assert cases["lungs-dice[quantum-dose10]"]["limit_min"] == "0.0"
        assert cases["lungs-dice[quantum-dose10]"]["limit_max_drop"] == "0.5"
        assert cases["lungs-dice[gaussian-sigma0.08]"]["limit_min"] == "1.01"
        assert "limit_max_drop" not in cases["lungs-dice[clean]"]  # a clean case keeps min only

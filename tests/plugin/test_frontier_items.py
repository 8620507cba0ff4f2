"""Failure frontiers under pytest: one item per frontier, failing on the suite's requirement."""

from __future__ import annotations

import pytest
from plugin_helpers import Models, junit_cases, lit, small, suite_yaml

# dice must reach 1.01 (so the gate fails from the clean images on: the gaussian frontier
# lies at σ = 0), except under quantum, where it is ungated in effect (min −1: never
# crossed, "not reached")
GATES = "{min: 1.01}\n  conditions:\n    quantum:\n      dice: {min: -1.0}"
FRONTIER = "frontier:\n  gaussian: {dice: {min_level: 0.1}}\n  quantum: {dice: {min_level: 0.5}}\n"


def test_one_item_per_frontier_failing_on_its_requirement(
    project: pytest.Pytester, models: Models
) -> None:
    project.makefile(".yaml", tiny=suite_yaml(gate=GATES) + FRONTIER)
    xml = project.path / "junit.xml"
    result = project.runpytest(
        *small(models.seg), "-v", "-m", "quantum or gaussian", f"--junitxml={xml}"
    )
    result.stdout.fnmatch_lines(
        [
            lit("robusttest::tiny::lungs-dice[quantum-frontier] PASSED") + "*",
            lit("robusttest::tiny::lungs-dice[gaussian-frontier] FAILED") + "*",
            lit(
                "dice lungs [gaussian-frontier]: min 1.01 (on ci) fails from sigma = 0; "
                "crossing 0 [95% CI 0, 0], 0 evaluations; required sigma >= 0.1: "
                "CI low 0 < 0.1: FAIL"
            ),
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "GateFailure" not in out
    props = junit_cases(xml)["lungs-dice[gaussian-frontier]"]
    assert props["frontier_level"] == "0.0" and props["frontier_reached"] == "true"
    assert props["min_level"] == "0.1" and props["verdict"] == "fail"
    assert junit_cases(xml)["lungs-dice[quantum-frontier]"]["frontier_reached"] == "false"


def test_robust_frontier_adds_every_gated_frontier(
    project: pytest.Pytester, models: Models
) -> None:
    result = project.runpytest(*small(models.seg), "--collect-only", "-q", "--robust-frontier")
    result.stdout.fnmatch_lines(
        [
            lit("robusttest::tiny::lungs-dice[quantum-frontier]"),
            lit("robusttest::tiny::lungs-dice[gaussian-frontier]"),
        ]
    )
    plain = project.runpytest(*small(models.seg), "--collect-only", "-q")
    assert "frontier" not in plain.stdout.str()

"""Issue 14, point 7 in pytest: --robust-baseline judges with compare's rules (beyond the
runs' CIs, per-metric tolerances, ungated cases reported): the same model with another
noise seed passes its baseline item."""

from __future__ import annotations

import pytest
from plugin_helpers import Models, small


def test_compare_baseline_item_other_seed_passes(project: pytest.Pytester, models: Models) -> None:
    base = project.runpytest(*small(models.seg), "--robust-json=base.json", "--robust-seed=0")
    base.assert_outcomes(passed=3)
    result = project.runpytest(
        *small(models.seg), "--robust-baseline=base.json", "--robust-seed=1", "-v"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["robusttest::robust-baseline?seg? PASSED*"])
    # a tolerance of zero on every metric: still only noise, still passes
    result = project.runpytest(
        *small(models.seg),
        "--robust-baseline=base.json",
        "--robust-seed=1",
        "--robust-baseline-tolerance=0",
        "--robust-baseline-fail-on-ungated",
        "-k",
        "baseline",
    )
    result.assert_outcomes(passed=1, deselected=3)

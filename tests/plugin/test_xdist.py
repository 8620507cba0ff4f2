"""pytest-xdist: the controller evaluates once; workers read its results; same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_helpers import COUNTER_CONFTEST, Models, evaluations, junit_cases, small

pytest.importorskip("xdist")


def test_n2_matches_n0_and_evaluates_once_on_the_controller(
    project: pytest.Pytester, models: Models
) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    # a user's test that reads the result through the fixture, on a worker
    project.makepyfile(
        test_mine="""
        def test_mine(robust_eval):
            assert robust_eval().case("lungs-dice[clean]").n == 4
        """
    )
    base = [*small(models.seg), "--robust-no-cache"]
    serial = project.runpytest_subprocess(
        *base, "-n", "0", "--robust-json=n0.json", "--junitxml=n0.xml"
    )
    serial.assert_outcomes(passed=4)
    assert evaluations(project) == ["main seg.onnx tiny"]
    (project.path / "evaluations.log").unlink()

    parallel = project.runpytest_subprocess(
        *base, "-n", "2", "--robust-json=n2.json", "--junitxml=n2.xml"
    )
    parallel.assert_outcomes(passed=4)
    # one evaluation, by the controller (a worker's log line would name gw0 or gw1)
    assert evaluations(project) == ["main seg.onnx tiny"]
    parallel.stdout.fnmatch_lines(
        ["seg.onnx × tiny: sha256 *; PASSED: 3 cases: 3 passed, 0 failed*"]
    )

    n0, n2 = (json.loads((project.path / f).read_text()) for f in ("n0.json", "n2.json"))
    assert n0["cases"] == n2["cases"] and n0["records"] == n2["records"]
    assert n0["provenance"] == n2["provenance"]
    j0, j2 = junit_cases(project.path / "n0.xml"), junit_cases(project.path / "n2.xml")
    assert sorted(j0) == sorted(j2) and all(j0[k] == j2[k] for k in j0)
    assert len(j0) == 4 and all(j0[c["case_id"]]["clean"] == repr(c["clean"]) for c in n0["cases"])


def test_n2_deselected_evaluates_nothing_and_cleans_up(
    project: pytest.Pytester, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    project.makepyfile("def test_plain(): pass")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the exchange folder goes
    result = project.runpytest_subprocess(*small(models.seg), "-n", "2", "-m", "not robusttest")
    result.assert_outcomes(passed=1)  # (xdist's controller does not count deselections)
    result.stdout.fnmatch_lines(["seg.onnx × tiny: not evaluated (no item of it was selected)"])
    assert evaluations(project) == []
    assert list(tmp_path.glob("robusttest-xdist-*")) == []

"""Issue 14, point 1: selection. With -k, -m, --lf, --ff, node ids or --deselect only the
selected cases are evaluated (a deselected condition costs no model call) and judged; the
JSON, HTML and JUnit cover exactly those cases and record the selection; exit code, JUnit,
JSON and HTML agree."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from plugin_helpers import INI, Models, junit_cases, lit, small

# Logs every condition the engine runs the model under (one line per batch × condition ×
# repeat; the gallery's thumbnails included), in whichever process evaluates.
CONDITIONS_CONFTEST = """
import os
import robusttest.engine.evaluation as E

_orig = E.Evaluator.infer
_noisy = E.Evaluator.noisy

def _log(cond):
    with open(os.path.join(os.environ["RT_LOG_DIR"], "conditions.log"), "a") as fh:
        fh.write(cond + "\\n")

def noisy(self, x, spec, ids, repeat, spacing):
    _log("clean" if spec is None else spec.slug)
    return _noisy(self, x, spec, ids, repeat, spacing)

def pytest_configure(config):
    E.Evaluator.noisy = noisy

def pytest_unconfigure(config):
    E.Evaluator.noisy = _noisy
"""

# quantum passes, gaussian fails: what is selected decides the verdict
SUITE = """\
name: tiny
task: segmentation
data: {adapter: phantom, options: {n: 4, size: 64, seed: 0}}
noise:
  quantum: {dose: [0.1]}
  gaussian: {sigma: [0.08]}
repeats: 1
metrics: [dice]
targets: [lungs]
bootstrap: {resamples: 100}
gates:
  metrics:
    dice: {min: 0.0}
  conditions:
    gaussian:
      dice: {min: 1.01}
"""
CLEAN, QUANTUM, GAUSSIAN = (
    "lungs-dice[clean]",
    "lungs-dice[quantum-dose10]",
    ("lungs-dice[gaussian-sigma0.08]"),
)
OUT = ["--robust-json=r.json", "--robust-html=r.html", "--junitxml=j.xml", "--robust-no-cache"]


@pytest.fixture
def sel_project(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    project.makeconftest(CONDITIONS_CONFTEST)
    project.makefile(".yaml", tiny=SUITE)
    monkeypatch.setenv("RT_LOG_DIR", str(project.path))
    return project


def _conditions(project: pytest.Pytester) -> set[str]:
    log = project.path / "conditions.log"
    found = set(log.read_text().split()) if log.exists() else set()
    log.unlink(missing_ok=True)
    return found


def _reports(project: pytest.Pytester) -> tuple[dict, str, ET.Element]:
    doc = json.loads((project.path / "r.json").read_text())
    html = (project.path / "r.html").read_text()
    return doc, html, ET.parse(project.path / "j.xml").getroot()


def _agree(
    result: pytest.RunResult, project: pytest.Pytester, cases: list[str], by: str | None
) -> dict:
    """Exit code, JSON, HTML and JUnit all cover exactly ``cases`` and say the same."""
    doc, html, junit = _reports(project)
    assert [c["case_id"] for c in doc["cases"]] == cases
    robust = {k: v for k, v in junit_cases(project.path / "j.xml").items() if "verdict" in v}
    assert sorted(robust) == sorted(cases)  # a user's own test is in the XML too
    failed = [c["case_id"] for c in doc["cases"] if c["verdict"] == "fail"]
    assert doc["summary"]["fail"] == len(failed)
    assert result.ret == (1 if failed else 0)
    word = "FAILED" if failed else "PASSED"
    assert f"<title>{word} ·" in html
    suite = junit.find("testsuite")
    assert suite is not None and int(suite.get("failures", "-1")) == len(failed)
    sel = doc["provenance"]["selection"]
    assert sel["cases"] == cases and sel["n_selected"] == len(cases) and sel["n_grid"] == 3
    if by is not None:
        assert sel["by"] == by
        assert f"{len(cases)} of the grid&#x27;s 3 cases selected by" in html or (
            f"{len(cases)} of the grid's 3 cases selected by" in html
        )
    return doc


def test_selection_m_evaluates_and_judges_only_the_marked_cases(
    sel_project: pytest.Pytester, models: Models
) -> None:
    # the reproduction: -m quantum used to say "passed" while the reports failed
    result = sel_project.runpytest(*small(models.seg), "-m", "quantum", *OUT)
    result.assert_outcomes(passed=1, deselected=2)
    _agree(result, sel_project, [QUANTUM], "pytest -m quantum")
    assert _conditions(sel_project) == {"clean", "quantum-dose10"}  # gaussian cost nothing
    result = sel_project.runpytest(*small(models.seg), *OUT)
    result.assert_outcomes(passed=2, failed=1)
    doc = _agree(result, sel_project, [CLEAN, QUANTUM, GAUSSIAN], None)
    assert doc["provenance"]["selection"]["by"] is None  # the whole grid
    assert _conditions(sel_project) == {"clean", "quantum-dose10", "gaussian-sigma0.08"}


def test_selection_k(sel_project: pytest.Pytester, models: Models) -> None:
    result = sel_project.runpytest(*small(models.seg), "-k", "gaussian", *OUT)
    result.assert_outcomes(failed=1, deselected=2)
    _agree(result, sel_project, [GAUSSIAN], "pytest -k gaussian")
    assert _conditions(sel_project) == {"clean", "gaussian-sigma0.08"}


def test_selection_lf_reruns_only_the_failed_case(
    sel_project: pytest.Pytester, models: Models
) -> None:
    sel_project.runpytest(*small(models.seg), "--robust-no-cache").assert_outcomes(
        passed=2, failed=1
    )
    _conditions(sel_project)
    result = sel_project.runpytest(*small(models.seg), "--lf", "-v", *OUT)
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure"])
    _agree(result, sel_project, [GAUSSIAN], "pytest --lf")
    assert _conditions(sel_project) == {"clean", "gaussian-sigma0.08"}


def test_selection_ff_runs_the_failed_case_first(
    sel_project: pytest.Pytester, models: Models
) -> None:
    sel_project.runpytest(*small(models.seg), "--robust-no-cache").assert_outcomes(
        passed=2, failed=1
    )
    result = sel_project.runpytest(*small(models.seg), "--ff", "-v", *OUT)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [lit(f"robusttest::tiny::{GAUSSIAN} FAILED*"), lit(f"robusttest::tiny::{CLEAN} PASSED*")]
    )
    _agree(result, sel_project, [CLEAN, QUANTUM, GAUSSIAN], None)


def test_selection_node_ids(sel_project: pytest.Pytester, models: Models) -> None:
    # as pytest prints them (session-level items) and under a suite file given as a path
    node = f"robusttest::tiny::{QUANTUM}"
    result = sel_project.runpytest(*small(models.seg), node, *OUT)
    result.assert_outcomes(passed=1, deselected=2)
    _agree(result, sel_project, [QUANTUM], f"pytest '{node}'")
    assert _conditions(sel_project) == {"clean", "quantum-dose10"}
    args = [f"--model={models.seg}", "--robust-limit=4", "--robust-repeats=1"]
    result = sel_project.runpytest(*args, f"tiny.yaml::{GAUSSIAN}", *OUT)
    result.assert_outcomes(failed=1)
    _agree(result, sel_project, [GAUSSIAN], f"pytest 'tiny.yaml::{GAUSSIAN}'")
    assert _conditions(sel_project) == {"clean", "gaussian-sigma0.08"}


def test_selection_deselect(sel_project: pytest.Pytester, models: Models) -> None:
    node = f"robusttest::tiny::{GAUSSIAN}"
    result = sel_project.runpytest(*small(models.seg), "--deselect", node, *OUT)
    result.assert_outcomes(passed=2, deselected=1)
    _agree(result, sel_project, [CLEAN, QUANTUM], f"pytest --deselect '{node}'")
    assert _conditions(sel_project) == {"clean", "quantum-dose10"}


def test_selection_under_xdist_the_controller_evaluates_only_the_selection(
    sel_project: pytest.Pytester, models: Models
) -> None:
    pytest.importorskip("xdist")
    result = sel_project.runpytest_subprocess(*small(models.seg), "-n", "2", "-m", "quantum", *OUT)
    result.assert_outcomes(passed=1)
    _agree(result, sel_project, [QUANTUM], "pytest -m quantum")
    assert _conditions(sel_project) == {"clean", "quantum-dose10"}


def test_selection_robust_eval_needs_the_grid_but_the_reports_cover_the_selection(
    sel_project: pytest.Pytester, models: Models
) -> None:
    sel_project.makepyfile(
        test_mine="""
        def test_mine(robust_eval):
            result = robust_eval()
            assert len(result.cases) == 3  # the user's test reads the whole grid
        """
    )
    result = sel_project.runpytest(*small(models.seg), "-k", "quantum or test_mine", *OUT)
    result.assert_outcomes(passed=2, deselected=2)
    doc = _agree(result, sel_project, [QUANTUM], "pytest -k 'quantum or test_mine'")
    # p-values are Holm-adjusted across the cases reported, as if only they were evaluated
    [case] = doc["cases"]
    assert case["p_adjusted"] == case["p_value"]
    assert {r["condition"] for r in doc["records"]} == {"clean", "quantum-dose10"}


def test_selection_of_nothing_writes_no_report(
    sel_project: pytest.Pytester, models: Models
) -> None:
    sel_project.makeini(INI)
    result = sel_project.runpytest(*small(models.seg), "-m", "not robusttest", *OUT)
    result.assert_outcomes(deselected=3)
    result.stdout.fnmatch_lines(["reports not written: no robusttest case was selected"])
    assert not Path(sel_project.path / "r.json").exists()
    assert _conditions(sel_project) == set()

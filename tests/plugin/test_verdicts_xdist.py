"""Issue 14, point 8: a worker lost during evaluation: the run says incomplete in JSON, HTML
and JUnit, with the reason (it used to end in INTERNALERROR while the JSON said
``completed: true``). Likewise any selected case pytest never judged (-x)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from plugin_helpers import Models, small, suite_yaml

pytest.importorskip("xdist")

# A worker notes its pid when its first item's setup starts (it then waits for the
# controller's result); the controller kills that worker while it evaluates (at its second
# batch).
KILL_CONFTEST = """
import os, signal, time
from pathlib import Path

import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    wid = os.environ.get("PYTEST_XDIST_WORKER")
    marker = Path(item.config.rootpath, "running.pid")
    if wid and not marker.exists():
        marker.write_text(str(os.getpid()))

def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import robusttest.engine.evaluation as E

    orig = E._Work.emit
    seen = []

    def emit(self, item, scored):
        if self not in seen:
            seen.append(self)
            if len(seen) == 2:
                marker = Path(config.rootpath, "running.pid")
                for _ in range(400):
                    if marker.exists() and marker.read_text():
                        break
                    time.sleep(0.05)
                os.kill(int(marker.read_text()), signal.SIGKILL)
                time.sleep(1.0)
        yield from orig(self, item, scored)

    E._Work.emit = emit
"""


@pytest.mark.parametrize(
    "restart", [[], ["--max-worker-restart=0"]], ids=["replaced", "no-restart"]
)
def test_xdist_worker_lost_during_evaluation_makes_the_run_incomplete(
    project: pytest.Pytester, models: Models, restart: list[str]
) -> None:
    project.makeconftest(KILL_CONFTEST)
    result = project.runpytest_subprocess(
        *small(models.seg, "--robust-batch-size=2", "--robust-no-cache"),
        "-n",
        "2",
        "--robust-json=r.json",
        "--robust-html=r.html",
        "--junitxml=j.xml",
        *restart,
    )
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "crashed while running 'robusttest::tiny::lungs-dice" in out
    doc = json.loads((project.path / "r.json").read_text())
    reason = doc["run"]["error"]
    assert doc["completed"] is False and "crashed while running" in reason
    assert len(doc["cases"]) == 3  # the numbers are complete: pytest did not judge them all
    html = (project.path / "r.html").read_text()
    banner = html.split('id="verdict"')[1].split("</section>")[0]
    assert "<title>INCOMPLETE" in html and "crashed while running" in banner
    props = {
        p.get("name"): p.get("value")
        for p in ET.parse(project.path / "j.xml").getroot().iter("property")
        if str(p.get("name", "")).startswith("robusttest_")
    }
    assert props["robusttest_completed"] == "false"
    assert "crashed" in props["robusttest_incomplete"]
    assert props["robusttest_summary"].startswith("INCOMPLETE: 3 cases")
    result.stdout.fnmatch_lines(["seg.onnx × tiny: *INCOMPLETE: 3 cases*"])


def test_xdist_a_selected_case_pytest_never_ran_makes_the_run_incomplete(
    project: pytest.Pytester, models: Models
) -> None:
    project.makefile(".yaml", tiny=suite_yaml(gate="{min: 1.01}"))
    result = project.runpytest(*small(models.seg), "-x", "--robust-json=r.json")
    result.assert_outcomes(failed=1)
    doc = json.loads((project.path / "r.json").read_text())
    assert doc["completed"] is False
    assert doc["run"]["error"] == "2 of 3 selected cases never ran (stopping after 1 failures)"
    result.stdout.fnmatch_lines(["*INCOMPLETE: 3 cases: 0 passed, 3 failed*never ran*"])

"""Issue 14, point 8: a worker lost during evaluation: the run says incomplete in JSON, HTML
and JUnit, with the reason (it used to end in INTERNALERROR while the JSON said
``completed: true``). Likewise any selected case pytest never judged (-x).

Issue 17: the workers run the evaluation's shards. A lost worker's shards are redone by
another worker (or the controller), so the numbers are those of ``-n 0``; the items it was
running still count as never judged, so the run is still incomplete.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from plugin_helpers import Models, small, suite_yaml

pytest.importorskip("xdist")

# The first worker to reach a shard's second item kills itself (SIGKILL, once per run, as
# on an out-of-memory kill): mid-shard, while the item that needed the result runs.
KILL_CONFTEST = """
import os, signal
from pathlib import Path

def pytest_configure(config):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import robusttest.engine.evaluation as E

    orig = E._Work.emit
    marker = Path(str(config.rootpath), "killed")

    def emit(self, item, scored):
        if item.condition != "clean":
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, os.environ["PYTEST_XDIST_WORKER"].encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
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
    # the lost worker's shard was redone: the numbers are those of -n 0
    assert (project.path / "killed").read_text().startswith("gw")
    result.stdout.fnmatch_lines(["*shard(s) * of lost worker gw* redone*"])
    assert doc["run"]["shards"] == {**doc["run"]["shards"], "count": 2, "done": 2}
    serial = project.runpytest_subprocess(
        *small(models.seg, "--robust-batch-size=2", "--robust-no-cache"),
        "-n",
        "0",
        "--robust-json=n0.json",
    )
    serial.assert_outcomes(passed=3)
    n0 = json.loads((project.path / "n0.json").read_text())
    assert n0["records"] == doc["records"] and n0["cases"] == doc["cases"]


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

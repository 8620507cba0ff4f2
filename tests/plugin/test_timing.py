"""Issue 16, point 8: the evaluation's time is booked on the cases, not on the first one.

The documented rule (README, "Time per case"): each case's JUnit / pytest-html time is its
share of the evaluation (``run.case_seconds``: its condition's model, noise and metric
time split between the cases on that condition, plus its own statistics, scaled to the
evaluation's wall time). So the testcase times add up to the evaluation's time and no
single case holds it all, with or without xdist.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from plugin_helpers import Models, small


def _times(junit: Path) -> dict[str, float]:
    root = ET.parse(junit).getroot()
    return {tc.get("name", ""): float(tc.get("time", "nan")) for tc in root.iter("testcase")}


def _check(times: dict[str, float], results: Path) -> None:
    run = json.loads(results.read_text())["run"]
    total = run["seconds_total"]
    shares = run["case_seconds"]
    assert set(shares) == set(times)
    # the items' own setup and call add a few milliseconds each to their share
    assert sum(times.values()) == pytest.approx(total, abs=0.3 + 0.1 * total)
    # the first case no longer holds it all: every case gets a share (under xdist a
    # condition's share includes its worker's first-call warm-up, so no fixed proportion)
    assert all(t > 0.02 * total for t in times.values())
    for case_id, t in times.items():
        assert t == pytest.approx(shares[case_id], abs=0.2)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_junit_times_add_up_to_the_evaluation(
    project: pytest.Pytester, models: Models, workers: list[str]
) -> None:
    run = project.runpytest_subprocess if workers else project.runpytest
    result = run(*small(models.seg), "--junitxml=j.xml", "--robust-json=r.json", *workers)
    result.assert_outcomes(passed=3)
    _check(_times(project.path / "j.xml"), project.path / "r.json")


def test_durations_show_the_shares(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(*small(models.seg), "--durations=0", "-vv", "--robust-json=r.json")
    result.assert_outcomes(passed=3)
    shares = json.loads((project.path / "r.json").read_text())["run"]["case_seconds"]
    setup = {
        line.split()[-1].rsplit("::", 1)[-1]: float(line.split()[0].rstrip("s"))
        for line in result.stdout.str().splitlines()
        if " setup " in line and line.split()[0].endswith("s")
    }
    assert setup.keys() == shares.keys()
    for case_id, seconds in setup.items():
        assert seconds == pytest.approx(shares[case_id], abs=0.2)


def test_robusttest_run_junit_times(project: pytest.Pytester, models: Models) -> None:
    from robusttest.cli import main

    code = main(
        [
            "run",
            str(models.seg),
            "--suite",
            str(project.path / "tiny.yaml"),
            "--limit",
            "4",
            "--no-cache",
            "--json",
            str(project.path / "r.json"),
            "--report",
            f"junit={project.path / 'r.xml'}",
        ]
    )
    assert code == 0
    times = _times(project.path / "r.xml")
    shares = json.loads((project.path / "r.json").read_text())["run"]["case_seconds"]
    assert times == pytest.approx({k: round(v, 3) for k, v in shares.items()}, abs=1e-3)
    [suite] = ET.parse(project.path / "r.xml").getroot().iter("testsuite")
    assert float(suite.get("time", "nan")) == pytest.approx(sum(times.values()), abs=0.01)

"""Issue 16, point 6 under pytest: ``--robust-gate``, ``robusttest_gate`` and ``extends:``.

tiny.yaml gates Dice with ``min: 0`` (every case passes). The overrides below make the
verdicts knowable by hand: ``dice.min=0.999`` fails every case (an untrained net's Dice
is far below 1); ``dice.max_drop=-1`` asks the noisy cases to *gain* a whole Dice point
(impossible) while the clean case keeps only ``min``.
"""

from __future__ import annotations

import json

import pytest
from plugin_helpers import INI, Models, junit_cases, small


def test_cli_gate_overrides_the_suite(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(
        *small(models.seg),
        "--robust-gate=dice.max_drop=-1",
        "--junitxml=j.xml",
        "--robust-json=r.json",
        "--robust-html=r.html",
    )
    result.assert_outcomes(passed=1, failed=2)
    cases = junit_cases(project.path / "j.xml")
    label = "command line: --robust-gate dice.max_drop=-1"
    suite_file = f"suite: {project.path / 'tiny.yaml'}"
    noisy = cases["lungs-dice[quantum-dose10]"]
    assert noisy["limit_max_drop"] == "-1.0" and noisy["limit_min"] == "0.0"
    assert noisy["gate_source"] == f"min: {suite_file}; max_drop: {label}; on: default"
    assert cases["lungs-dice[clean]"]["gate_source"] == f"min: {suite_file}; on: default"
    assert (
        f'name="robusttest_gate_override" value="{label}"' in (project.path / "j.xml").read_text()
    )
    prov = json.loads((project.path / "r.json").read_text())["provenance"]["suite"]
    assert prov["gate_sources"]["metrics.dice.max_drop"] == label
    assert prov["definition"]["gates"]["metrics"]["dice"] == {"max_drop": -1.0, "min": 0.0}
    html = (project.path / "r.html").read_text()
    assert 'id="gates"' in html and "Gates overridden for this run" in html
    assert '<tr class="override"><td><code>tiny</code></td><td><code>metrics.dice.max_drop' in html


def test_ini_gate_and_the_command_line_replacing_it(
    project: pytest.Pytester, models: Models
) -> None:
    project.makeini(INI + "robusttest_gate = dice.min=0.999\n")
    result = project.runpytest(*small(models.seg), "--junitxml=j.xml")
    result.assert_outcomes(failed=3)
    src = junit_cases(project.path / "j.xml")["lungs-dice[clean]"]["gate_source"]
    assert src == "min: ini: robusttest_gate dice.min=0.999; on: default"
    # a --robust-gate on the command line replaces the ini's list, as for every option
    result = project.runpytest(*small(models.seg), "--robust-gate=dice.max_drop=1")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        # the syntax: when pytest parses its options (argparse's usage line, then this)
        ("dice.best=1", "argument --robust-gate: 'dice.best=1': unknown key 'best'; expected "),
        # the metric: against the suite, before anything is evaluated
        ("auroc.min=1", "ERROR: --robust-gate 'auroc.min=1': 'auroc' is not a metric of suite"),
    ],
)
def test_bad_gate_is_one_line_usage_error(
    project: pytest.Pytester, models: Models, gate: str, message: str
) -> None:
    result = project.runpytest(*small(models.seg), f"--robust-gate={gate}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [ln for ln in result.stderr.lines if gate in ln]
    assert len(lines) == 1 and message in lines[0], result.stderr.lines
    assert "Traceback" not in result.stderr.str()


def test_suite_extends_another_under_pytest(project: pytest.Pytester, models: Models) -> None:
    project.makefile(
        ".yaml",
        strict="extends: tiny.yaml\nnoise: {quantum: false}\n"
        "gates: {metrics: {dice: {min: 0.999}}}\n",
    )
    result = project.runpytest(
        f"--model={models.seg}", "--suite=strict.yaml", "--robust-limit=4", "--junitxml=j.xml"
    )
    # the extended suite's grid less quantum; its gate made stricter
    result.assert_outcomes(failed=2)
    cases = junit_cases(project.path / "j.xml")
    assert set(cases) == {"lungs-dice[clean]", "lungs-dice[gaussian-sigma0.08]"}
    assert cases["lungs-dice[clean]"]["gate_source"] == (
        f"min: suite: {project.path / 'strict.yaml'}; on: default"
    )
    xml = (project.path / "j.xml").read_text()
    assert (
        f'name="robusttest_suite_extends" value="tiny.yaml ({project.path / "tiny.yaml"})"' in xml
    )


def test_robusttest_run_gate_and_the_python_argument(
    project: pytest.Pytester, models: Models
) -> None:
    from robusttest import engine
    from robusttest.cli import main

    tiny, out = project.path / "tiny.yaml", project.path / "r.json"
    args = ["run", str(models.seg), "--suite", str(tiny), "--limit", "4", "--no-cache"]
    assert main([*args, "--gate", "dice.max_drop=-1", "--json", str(out)]) == 1
    sources = json.loads(out.read_text())["provenance"]["suite"]["gate_sources"]
    assert sources["metrics.dice.max_drop"] == "command line: --gate dice.max_drop=-1"
    assert main([*args, "--gate", "dice.max_drop=1"]) == 0
    result = engine.run(
        models.seg, tiny, limit=4, cache=False, progress=False, gates=["dice.max_drop=-1"]
    )
    assert result.counts()["fail"] == 2
    assert result.provenance["suite"]["gate_sources"]["metrics.dice.max_drop"] == (
        "argument: gates dice.max_drop=-1"
    )

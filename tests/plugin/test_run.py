"""End to end: `pytest --model m.onnx` in a folder, as a user runs it (in-process pytester)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from plugin_helpers import (
    COUNTER_CONFTEST,
    INI,
    Models,
    evaluations,
    junit_cases,
    lit,
    small,
    suite_yaml,
)
from pytest_robusttest.session import EXIT_ROBUSTTEST_ERROR

from robusttest.results import RunResult


def _model_device() -> str:
    """Where `--device auto` runs an ONNX model: CUDA only with onnxruntime's CUDA provider
    (seen on an H200 with the CPU build: the run says cpu)."""
    import onnxruntime as ort
    import torch

    cuda = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
    return f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"


IDS = ("lungs-dice[clean]", "lungs-dice[quantum-dose10]", "lungs-dice[gaussian-sigma0.08]")


def test_passing_gates_in_an_empty_folder(project: pytest.Pytester, models: Models) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    result = project.runpytest(*small(models.seg), "-v")
    result.assert_outcomes(passed=3)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "robusttest: seg.onnx × suite tiny (3 cases)",
            "*collected 3 items",
            *(lit(f"robusttest::tiny::{i} PASSED") + "*" for i in IDS),
            "*- robusttest -*",
            "seg.onnx × tiny: sha256 ????????????, 4 images (phantom), "
            f"device {_model_device()}; PASSED: 3 cases: 3 passed, 0 failed, "
            "0 reported without a gate; not evaluated: heart, right_lung, left_lung, clavicles",
        ]
    )
    assert evaluations(project) == ["main seg.onnx tiny"]  # once, for three items


def test_failing_gate_reports_the_numbers_without_a_traceback(
    project: pytest.Pytester, models: Models
) -> None:
    project.makefile(".yaml", tiny=suite_yaml(gate="{min: 1.01}"))
    result = project.runpytest(*small(models.seg), "-ra")
    result.assert_outcomes(failed=3)
    assert result.ret == 1
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            lit("*_ lungs-dice[quantum-dose10] _*"),
            lit("dice lungs [quantum-dose10]: noisy value * < limit 1.01: FAIL"),
            lit(
                "metric=dice target=lungs noise=quantum level=0.1 clean=* noisy=* drop=* "
                "CI=[*, *] limit_min=1.01 n=4"
            ),
            "gate: min 1.01 (on ci); verdict: fail",
            lit(
                "FAILED robusttest::tiny::lungs-dice[quantum-dose10] - dice lungs [quantum-dose10]*"
            ),
        ]
    )
    assert "Traceback" not in out and "def runtest" not in out and "GateFailure" not in out
    result.stdout.fnmatch_lines(["*FAILED: 3 cases: 0 passed, 3 failed*"])


@pytest.mark.parametrize(
    ("args", "selected"),
    [
        (["-k", "dose10"], ["lungs-dice[quantum-dose10]"]),
        (["-m", "quantum"], ["lungs-dice[quantum-dose10]"]),
        (["-m", "clean or gaussian"], ["lungs-dice[clean]", "lungs-dice[gaussian-sigma0.08]"]),
        (["-m", "robusttest and not clean"], list(IDS[1:])),
    ],
)
def test_select_with_k_and_m(
    project: pytest.Pytester, models: Models, args: list[str], selected: list[str]
) -> None:
    result = project.runpytest(*small(models.seg), "-v", *args)
    result.assert_outcomes(passed=len(selected), deselected=3 - len(selected))
    for case in selected:
        result.stdout.fnmatch_lines([lit(f"robusttest::tiny::{case} PASSED*")])


def test_collect_only_and_deselected_runs_evaluate_nothing(
    project: pytest.Pytester, models: Models
) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    result = project.runpytest(*small(models.seg), "--collect-only", "-q")
    result.stdout.fnmatch_lines([lit(f"robusttest::tiny::{i}") for i in IDS])
    result = project.runpytest(*small(models.seg), "-m", "not robusttest", "--robust-json=r.json")
    result.assert_outcomes(deselected=3)
    result.stdout.fnmatch_lines(
        [
            "seg.onnx × tiny: not evaluated (no item of it was selected)",
            "reports not written: no robusttest case was selected",
        ]
    )
    assert evaluations(project) == []
    assert not (project.path / "r.json").exists()


def test_without_model_the_plugin_adds_nothing(project: pytest.Pytester) -> None:
    project.makepyfile("def test_plain(): pass")
    result = project.runpytest("-v")
    result.assert_outcomes(passed=1)
    assert "robusttest:" not in result.stdout.str() and "robusttest::" not in result.stdout.str()


def test_suite_file_as_test_file(project: pytest.Pytester, models: Models) -> None:
    project.makefile(".yaml", other="name: not-a-suite\nkeys: [1, 2]\n")
    result = project.runpytest(f"--model={models.seg}", "--robust-limit=4", "tiny.yaml", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([lit(f"tiny.yaml::{i} PASSED*") for i in IDS])
    assert "robusttest::" not in result.stdout.str()  # no session-level default suite
    # a YAML that is not a suite is not collected (pytest reports it as not found)
    result = project.runpytest(f"--model={models.seg}", "other.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # without --model a suite file is not a test file either
    result = project.runpytest("tiny.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_several_models_prefix_the_item_names(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(*small(models.seg), f"--model={models.seg2}", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            lit("robusttest::tiny::seg:lungs-dice[clean] PASSED*"),
            lit("robusttest::tiny::seg2:lungs-dice[gaussian-sigma0.08] PASSED*"),
        ]
    )
    result.stdout.fnmatch_lines(["seg.onnx × tiny: *", "seg2.onnx × tiny: *"])


def test_junit_properties_equal_the_json_numbers(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(
        *small(models.seg), "--junitxml=junit.xml", "--robust-json=r.json", "--robust-lanes=3"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"JSON report: {project.path / 'r.json'}"])
    doc = json.loads((project.path / "r.json").read_text())
    assert doc["run"]["lanes"] == 3  # --robust-lanes reaches the engine
    cases = {c["case_id"]: c for c in doc["cases"]}
    junit = junit_cases(project.path / "junit.xml")
    assert sorted(junit) == sorted(IDS) == sorted(cases)
    keys = ["metric", "target", "noise", "level", "clean", "noisy", "noisy_ci_low"]
    keys += ["noisy_ci_high", "drop", "ci_low", "ci_high", "relative_drop", "relative_ci_low"]
    keys += ["relative_ci_high", "limit_min", "judged_on", "gate", "gate_source"]
    keys += ["failed_limits", "p_adjusted", "test", "test_unit", "n", "n_patients"]
    keys += ["verdict", "unit"]
    for case_id, props in junit.items():
        assert list(props) == keys
        case = cases[case_id]
        for key in ("clean", "noisy", "drop", "ci_low", "ci_high", "noisy_ci_low"):
            assert float(props[key]) == case[key], (case_id, key)
        assert props["n"] == str(case["n"]) == "4"
        assert props["verdict"] == case["verdict"] == "pass"
        assert props["unit"] == case["unit"] == ""  # dice: a fraction
        assert float(props["limit_min"]) == case["gate"]["min"] == 0.0
        assert props["gate"] == "min 0 (on ci)"
        assert props["gate_source"] == f"min: suite: {project.path / 'tiny.yaml'}; on: default"
    assert math.isclose(float(junit["lungs-dice[quantum-dose10]"]["level"]), 0.1)
    # the family defaults to xunit1: testcases keep their file attribute
    assert 'file="tiny.yaml"' in (project.path / "junit.xml").read_text()


def test_junit_xunit2_chosen_by_the_user_gets_one_warning(
    project: pytest.Pytester, models: Models
) -> None:
    result = project.runpytest(
        *small(models.seg), "--junitxml=junit.xml", "-o", "junit_family=xunit2", "-m", "clean"
    )
    result.assert_outcomes(passed=1, deselected=2, warnings=1)
    result.stdout.fnmatch_lines(["*junit_family=xunit2: robusttest writes each case's numbers*"])
    assert "file=" not in (project.path / "junit.xml").read_text()  # xunit2 kept
    # a user's explicit xunit1 (here in the ini file) gives no warning
    project.makeini(INI + "junit_family = xunit1\n")
    result = project.runpytest(*small(models.seg), "--junitxml=junit.xml", "-m", "clean")
    result.assert_outcomes(passed=1, deselected=2)


def test_robust_eval_fixture_in_a_users_test(project: pytest.Pytester, models: Models) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    project.makepyfile(
        test_mine="""
        def test_dice_is_reported(robust_eval):
            result = robust_eval()
            assert result is robust_eval(model="seg", suite="tiny")
            case = result.case("lungs-dice[quantum-dose10]")
            assert case.n == 4 and 0.0 < case.clean < 1.0

        def test_bad_choice(robust_eval):
            import pytest
            with pytest.raises(LookupError, match="matches nothing; choices: .model='seg'"):
                robust_eval(suite="nope")
        """
    )
    result = project.runpytest(*small(models.seg), "-v")
    result.assert_outcomes(passed=5)
    assert evaluations(project) == ["main seg.onnx tiny"]
    # without --model the fixture skips with a reason
    result = project.runpytest("-rs", "test_mine.py")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*robust_eval needs a model: run pytest with --model PATH*"])


def test_ini_configuration(project: pytest.Pytester, models: Models) -> None:
    project.makeini(
        INI
        + f"""
robusttest_model = {models.seg}
robusttest_suite = tiny.yaml
robusttest_limit = 4
robusttest_repeats = 1
robusttest_json = out/r.json
"""
    )
    result = project.runpytest("-q")
    result.assert_outcomes(passed=3)
    assert (project.path / "out" / "r.json").is_file()


def test_html_report(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(*small(models.seg), "--robust-html=r.html", "-m", "clean")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([f"HTML report: {project.path / 'r.html'}"])
    assert (project.path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")


BROKEN_RENDERER_CONFTEST = """
from robusttest.report import Renderer, register_renderer

@register_renderer
class Broken(Renderer):
    name = "broken"
    suffix = ".txt"

    def render(self, result, *, rendered_at):
        raise RuntimeError("boom")
"""


def test_a_broken_renderer_fails_the_run(project: pytest.Pytester, models: Models) -> None:
    project.makeconftest(BROKEN_RENDERER_CONFTEST)
    result = project.runpytest(
        *small(models.seg), "--robust-report=broken=out.txt", "--robust-json=r.json", "-m", "clean"
    )
    result.assert_outcomes(passed=1, deselected=2)
    assert result.ret == EXIT_ROBUSTTEST_ERROR  # the evidence asked for is missing
    result.stdout.fnmatch_lines(
        ["BROKEN report not written: *out.txt: the broken renderer failed: RuntimeError: boom"]
    )
    assert (project.path / "r.json").is_file()  # the other reports are still written


def test_baseline_item(project: pytest.Pytester, models: Models) -> None:
    project.runpytest(*small(models.seg), "--robust-json=base.json").assert_outcomes(passed=3)
    result = project.runpytest(*small(models.seg), "--robust-baseline=base.json", "-v", "-rs")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["robusttest::robust-baseline?seg? PASSED*"])
    # a base edited by hand is refused before anything runs
    doc = json.loads((project.path / "base.json").read_text())
    doc["cases"][0]["noisy"] += 0.2
    (project.path / "edited.json").write_text(json.dumps(doc))
    result = project.runpytest(*small(models.seg), "--robust-baseline=edited.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*edited.json was modified after it was written*"])
    # a base whose noisy Dice (and its CI) was 0.2 higher: the same model now regresses
    base = RunResult.read(project.path / "base.json")
    better = [
        dataclasses.replace(
            c,
            noisy=c.noisy + 0.2,
            noisy_ci_low=c.noisy_ci_low + 0.2,
            noisy_ci_high=c.noisy_ci_high + 0.2,
        )
        for c in base.cases
    ]
    dataclasses.replace(base, cases=tuple(better)).write_json(project.path / "better.json")
    result = project.runpytest(
        *small(models.seg), "--robust-baseline=better.json", "-k", "baseline"
    )
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            f"seg.onnx against {project.path / 'better.json'}: NOT OK: 3 cases compared, "
            "3 regression(s) beyond noise and tolerance, 0 new gate failure(s)",
            "status * case * worse by*",
            lit("regression * tiny * lungs-dice[clean] * +0.2 * 0.01 * pass -> pass"),
        ]
    )
    assert "Traceback" not in result.stdout.str()
    result = project.runpytest(*small(models.seg), "--robust-baseline=missing.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --robust-baseline */missing.json: no such file"])

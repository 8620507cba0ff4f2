"""User mistakes end the run with one line (pytest's usage error, exit 4), no traceback."""

from __future__ import annotations

import json

import pytest
from plugin_helpers import INI, Models, small, suite_yaml
from pytest_robusttest.session import EXIT_ROBUSTTEST_ERROR


def usage_error(project: pytest.Pytester, *args: str) -> str:
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert "Traceback" not in err + result.stdout.str()
    lines = [ln for ln in err.splitlines() if ln.startswith("ERROR: ")]
    assert len(lines) == 1, err
    return lines[0].removeprefix("ERROR: ")


def test_unknown_suite_lists_the_known_ones(project: pytest.Pytester, models: Models) -> None:
    msg = usage_error(project, f"--model={models.seg}", "--suite=nope")
    assert msg.startswith("unknown suite 'nope'; known suites: ")
    assert "findings" in msg and "lungs" in msg


def test_missing_suite_file(project: pytest.Pytester, models: Models) -> None:
    msg = usage_error(project, f"--model={models.seg}", "--suite=missing.yaml")
    assert msg == f"{project.path / 'missing.yaml'}: no such suite file; check the path"


@pytest.mark.parametrize("as_test_path", [False, True])
def test_suite_schema_error_names_file_and_key(
    project: pytest.Pytester, models: Models, as_test_path: bool
) -> None:
    project.makefile(".yaml", bad=suite_yaml(gate="{min: high}"))
    where = ["bad.yaml"] if as_test_path else ["--suite=bad.yaml"]
    msg = usage_error(project, f"--model={models.seg}", *where)
    assert msg == f"{project.path / 'bad.yaml'}: gates.metrics.dice.min: 'high' is not a number"


def test_invalid_yaml_names_line_and_column(project: pytest.Pytester, models: Models) -> None:
    project.makefile(".yaml", broken="task: segmentation\nnoise: [\n")
    msg = usage_error(project, f"--model={models.seg}", "broken.yaml")
    assert msg.startswith(f"{project.path / 'broken.yaml'}: line ")
    assert "invalid YAML" in msg


def test_missing_model(project: pytest.Pytester) -> None:
    msg = usage_error(project, "--model=nothere.onnx")
    assert msg == f"--model {project.path / 'nothere.onnx'}: no such file"


def test_classifier_on_a_segmentation_suite(project: pytest.Pytester, models: Models) -> None:
    msg = usage_error(project, *small(models.cls))
    assert "the model card says task 'classification' but suite 'tiny' is a segmentation" in msg
    assert "--suite findings" in msg


def test_bad_device_syntax(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(f"--model={models.seg}", "--device=gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*error: argument --device/--robust-device: 'gpu' is not a device; use auto, cpu, cuda or cuda:N"
        ]
    )


def test_cuda_without_a_gpu(project: pytest.Pytester, models: Models) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    msg = usage_error(project, *small(models.seg), "--device=cuda")
    assert msg.startswith("--device: device 'cuda' requested but torch sees no CUDA GPU")
    assert msg.endswith("use --device cpu or --device auto")


def test_repeats_zero(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(f"--model={models.seg}", "--robust-repeats=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*error: argument --robust-repeats: 0 is not >= 1 (K noise repeats per condition)"]
    )


def test_bad_ini_value(project: pytest.Pytester, models: Models) -> None:
    project.makeini(INI + "robusttest_repeats = 0\n")
    msg = usage_error(project, f"--model={models.seg}")
    assert msg == "robusttest_repeats (ini): 0 is not >= 1 (K noise repeats per condition)"
    # raised at session start, so pytest --help still works to look the option up
    assert project.runpytest("--help").ret == 0


def test_evaluation_error_makes_every_item_an_error_with_one_line(
    project: pytest.Pytester, models: Models
) -> None:
    result = project.runpytest(*small(models.nan), "-ra", "--robust-json=r.json")
    result.assert_outcomes(errors=3)
    assert result.ret == EXIT_ROBUSTTEST_ERROR
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(
        [
            "robusttest: *nan.onnx: model outputs contain NaN or inf for 4 of 4 image(s)*",
            "nan.onnx × tiny: *ERROR: 0 cases*(the evaluation stopped after 0 images; *",
            "robusttest: error: *nan.onnx: model outputs contain NaN or inf for 4 of 4 image(s)*",
        ]
    )
    assert out.count("ERROR robusttest::tiny::") == 3
    doc = json.loads((project.path / "r.json").read_text())  # written all the same
    assert doc["completed"] is False and "NaN or inf" in doc["run"]["error"]


def test_evaluation_error_under_xdist(project: pytest.Pytester, models: Models) -> None:
    pytest.importorskip("xdist")
    result = project.runpytest_subprocess(*small(models.nan), "-n", "2")
    result.assert_outcomes(errors=3)
    assert result.ret == EXIT_ROBUSTTEST_ERROR
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(["robusttest: *nan.onnx: *NaN or inf for 4 of 4*"])

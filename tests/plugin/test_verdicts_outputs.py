"""Issue 14, point 3: output paths that collide (any two of JSON, HTML, JUnit, the baseline)
are a usage error before anything runs, in pytest, `robusttest run` and `robusttest report`."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import COUNTER_CONFTEST, Models, evaluations, small

import robusttest.cli as cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--robust-json=x", "--robust-html=x"], "--robust-html */x: the same file as --robust-json"),
        (["--robust-json=x", "--junitxml=x"], "--junitxml */x: the same file as --robust-json"),
        (["--robust-report=junit=x", "--junitxml=./x"], "--junitxml *x: the same file as "
         "--robust-report junit"),
        (["--robust-html=b.json", "--robust-baseline=b.json"], "--robust-baseline */b.json: the "
         "same file as --robust-html"),
    ],
)  # fmt: skip
def test_outputs_colliding_paths_are_a_usage_error_before_anything_runs(
    project: pytest.Pytester, models: Models, args: list[str], message: str
) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    (project.path / "b.json").write_text("{}")
    result = project.runpytest(*small(models.seg), *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}; give each report its own path"])
    assert evaluations(project) == [] and not (project.path / "x").exists()


def test_outputs_colliding_in_robusttest_run_and_report(
    models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    code = cli.main(["run", str(models.seg), "--json", str(out), "--html", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert (
        err
        == f"robusttest: error: --html {out}: the same file as --json; give each report its own path\n"
    )
    code = cli.main(["run", str(models.seg), "--json", str(out), "--report", f"junit={out}"])
    assert code == 2 and "--report junit" in capsys.readouterr().err
    code = cli.main(["report", str(tmp_path / "r.json"), "--html", str(out), "--junit", str(out)])
    assert code == 2 and not out.exists()
    assert "junit output" in capsys.readouterr().err

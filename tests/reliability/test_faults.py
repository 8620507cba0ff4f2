"""Faults once a run is under way: Ctrl-C in every phase, a failing output cache, a full
disk, a model that outputs NaN, a crashed xdist worker. Nothing finished is lost.

Interrupts are injected through robusttest.faults (``ROBUSTTEST_FAULT=PHASE@N``): the
checkpoint raises KeyboardInterrupt exactly where Ctrl-C would land, at the N-th hit, so
every run is deterministic (no timers).
"""

from __future__ import annotations

import errno
import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pytest_robusttest.session import EXIT_ROBUSTTEST_ERROR
from reliability_helpers import (
    Outcome,
    Project,
    ids_of,
    junit_errors,
    robusttest,
    run_args,
)

from robusttest import faults
from robusttest.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PASSED

# (armed fault, the phase the result names, images whose every condition finished)
# Four images, batch size 1, two conditions (clean, one noise level), one lane: image k is
# evaluated before image k + 2 is decoded; each image is two inference items.
INTERRUPTS = [
    pytest.param("decode@3", "evaluation", 1, id="decode"),
    pytest.param("inference@5", "evaluation", 2, id="inference"),
    pytest.param("statistics@2", "statistics", 4, id="statistics"),
    pytest.param("gallery", "gallery", 4, id="gallery"),
    pytest.param("rendering@2", "rendering", 4, id="rendering"),
]


def _four_images(project: Project) -> None:
    project.add_good(4)
    project.write(noise=True)


def _check_incomplete(doc: dict[str, Any], phase: str, n_done: int) -> None:
    assert doc["completed"] is False
    assert doc["run"]["error"] == "interrupted" and doc["run"]["interrupted"] is True
    assert doc["run"]["stopped_in"] == phase
    done = ids_of(doc["records"])
    assert done == [f"good{i}" for i in range(n_done)]  # the first images, each complete
    assert len(doc["records"]) == 2 * n_done
    if phase == "statistics":  # the case finished before Ctrl-C, not Holm-adjusted
        assert len(doc["cases"]) == 1 and doc["cases"][0]["p_adjusted"] is None
    else:
        assert len(doc["cases"]) == 2 and all(c["n"] == n_done for c in doc["cases"])
    if phase in ("evaluation", "gallery"):
        assert doc["gallery"] == []


@pytest.mark.parametrize(("fault", "phase", "n_done"), INTERRUPTS)
def test_interrupt_in_robusttest_run_writes_everything_finished(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    phase: str,
    n_done: int,
) -> None:
    _four_images(project)
    monkeypatch.setenv(faults.ENV, fault)
    args = run_args(project, "--batch-size", "1", "--lanes", "1")
    got = robusttest(capsys, monkeypatch, project.root, *args)
    assert got.rc == EXIT_INTERRUPTED
    got.no_traceback()
    assert got.err == []
    assert got.out[-1].startswith("INCOMPLETE: ")
    assert f"(interrupted during {phase} after {n_done} images; the reports say so)" in got.out[-1]
    assert [ln.split()[0] for ln in got.out[:3]] == ["wrote"] * 3
    _check_incomplete(got.json(), phase, n_done)
    assert "INCOMPLETE" in got.html()
    xml = got.junit()
    assert [p.get("value") for p in xml.iter("property") if p.get("name") == "completed"] == [
        "false"
    ]
    (run_case,) = [tc for tc in xml.iter("testcase") if tc.get("name") == "robusttest-run"]
    assert run_case.find("error") is not None


@pytest.mark.parametrize(("fault", "phase", "n_done"), INTERRUPTS)
def test_interrupt_under_pytest_writes_everything_finished(
    project: Project,
    pytester_project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    phase: str,
    n_done: int,
) -> None:
    _four_images(project)
    monkeypatch.setenv(faults.ENV, fault)
    result = pytester_project.runpytest_inprocess(
        f"--model={project.model}",
        f"--suite={project.root / 'suite.yaml'}",
        "--robust-no-cache",
        "--robust-batch-size=1",
        "--robust-workers=1",
        "--robust-lanes=1",
        "--robust-json=r.json",
        "--robust-html=r.html",
        "--junitxml=j.xml",
        no_reraise_ctrlc=True,  # the inner run's Ctrl-C stays inside it
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines([f"*INCOMPLETE: *(interrupted during {phase} after {n_done} *"])
    root = pytester_project.path
    _check_incomplete(json.loads((root / "r.json").read_text()), phase, n_done)
    assert "INCOMPLETE" in (root / "r.html").read_text()
    xml = ET.parse(root / "j.xml").getroot()
    props = {p.get("name"): p.get("value") for p in xml.iter("property")}
    assert props["robusttest_completed"] == "false"
    assert props["robusttest_interrupted_in"] == phase
    (run_case,) = [tc for tc in xml.iter("testcase") if tc.get("name") == "robusttest-run"]
    (error,) = run_case.findall("error")
    assert f"interrupted during {phase}" in (error.text or "")


def test_interrupt_before_evaluation_begins_says_so(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import robusttest.engine.pipeline as pipeline

    _four_images(project)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "prepare", interrupted)  # Ctrl-C while the model loads
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_INTERRUPTED
    assert got.err == ["robusttest: interrupted before any evaluation began"]
    assert not project.path("r.json").exists()


# --- the output cache ---------------------------------------------------------------------
def _cache_run(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
) -> Outcome:
    args = [a for a in run_args(project) if a != "--no-cache"]
    return robusttest(capsys, monkeypatch, project.root, *args, "--cache-dir", str(cache))


def _filled_cache(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    cache = project.root / "cache"
    assert _cache_run(project, capsys, monkeypatch, cache).rc == EXIT_PASSED
    return cache / "outputs.sqlite"


def _passes_without_the_cache(got: Outcome, what: str, fix: str) -> str:
    assert got.rc == EXIT_PASSED
    warning = got.one_warning_line()
    assert warning.startswith("output cache ") and what in warning
    assert f"the run goes on without it. To fix: {fix}" in warning
    doc = got.json()
    assert doc["run"]["cache"] is False and doc["run"]["warnings"] == [warning]
    assert [c["verdict"] for c in doc["cases"]] == ["pass"] and got.html()
    return warning


def test_corrupt_cache_warns_and_the_run_goes_on(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    db = project.root / "cache" / "outputs.sqlite"
    db.parent.mkdir()
    db.write_bytes(bytes(range(256)) * 16)
    got = _cache_run(project, capsys, monkeypatch, db.parent)
    warning = _passes_without_the_cache(got, "it is damaged (file is not a database)", "delete")
    assert str(db) in warning


def test_truncated_cache_warns_and_the_run_goes_on(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    db = _filled_cache(project, capsys, monkeypatch)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])  # a half-restored CI cache
    got = _cache_run(project, capsys, monkeypatch, db.parent)
    _passes_without_the_cache(got, "it is damaged (", "delete the file")


def test_locked_cache_warns_and_the_run_goes_on(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import robusttest.cache as cache_mod

    project.add_good(2)
    project.write()
    cache = cache_mod.OutputCache(project.root / "cache")  # an empty cache
    cache.close()
    other = sqlite3.connect(str(cache.path), isolation_level=None)  # another process writes
    other.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(cache_mod, "LOCK_TIMEOUT_S", 0.05)
    try:
        got = _cache_run(project, capsys, monkeypatch, cache.path.parent)
    finally:
        other.execute("ROLLBACK")
        other.close()
    _passes_without_the_cache(got, "another process holds a lock on it", "wait for that process")


def test_unwritable_cache_folder_warns_and_the_run_goes_on(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    blocker = project.root / "cache"
    blocker.write_text("a file where the cache folder should be")
    got = _cache_run(project, capsys, monkeypatch, blocker / "sub")
    _passes_without_the_cache(got, "it cannot be written", "make its folder writable")


class _FullDisk:
    """An sqlite3 connection whose writes fail as SQLite does on a full disk (SQLITE_FULL)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def __enter__(self) -> Any:
        return self._db.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._db.__exit__(*exc)

    def executemany(self, sql: str, rows: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")


def test_full_disk_under_the_cache_warns_and_the_run_goes_on(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _FullDisk(real(*a, **k)))
    got = _cache_run(project, capsys, monkeypatch, project.root / "cache")
    _passes_without_the_cache(got, "its disk is full", "free space there")


def test_no_space_for_the_cache_folder_warns_and_the_run_goes_on(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    real_mkdir = Path.mkdir

    def full(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name == "cache":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", full)
    got = _cache_run(project, capsys, monkeypatch, project.root / "cache")
    _passes_without_the_cache(got, "its disk is full", "free space there")


def test_corrupt_cache_under_pytest_warns_and_passes(
    project: Project, pytester_project: pytest.Pytester
) -> None:
    project.add_good(2)
    project.write()
    cache = pytester_project.path / "cache"
    cache.mkdir()
    (cache / "outputs.sqlite").write_bytes(b"\0" * 4096)
    result = pytester_project.runpytest(
        f"--model={project.model}",
        f"--suite={project.root / 'suite.yaml'}",
        f"--robust-cache-dir={cache}",
        "--robust-json=r.json",
    )
    assert result.ret == pytest.ExitCode.OK
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [f"robusttest: warning: output cache {cache / 'outputs.sqlite'}: it is damaged (*"]
    )
    doc = json.loads((pytester_project.path / "r.json").read_text())
    assert doc["run"]["cache"] is False


# --- reports on a full disk, a model that outputs NaN -------------------------------------
def test_full_disk_under_one_report_still_writes_the_others(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import robusttest.report.base as base

    project.add_good(2)
    project.write()
    real = base.atomic_write_bytes

    def full(path: Any, data: bytes) -> Path:
        if str(path).endswith(".html"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(base, "atomic_write_bytes", full)
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_ERROR
    got.no_traceback()
    assert f"HTML report not written: {project.root / 'r.html'}: No space left on device" in got.out
    assert got.json()["completed"] is True and got.junit() is not None
    assert not project.path("r.html").exists()


def test_nan_outputs_are_an_error_and_the_reports_say_so(
    project: Project,
    tiny_models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project.model = tiny_models["nan"]
    project.add_good(2)
    project.write()
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_ERROR
    line = got.one_error_line()
    assert line.startswith(f"{tiny_models['nan']}: model outputs contain NaN or inf for 2 of 2")
    doc = got.json()
    assert doc["completed"] is False and doc["run"]["stopped_in"] == "evaluation"
    assert doc["run"]["errors"] == [line] and doc["cases"] == []
    assert "NaN or inf" in got.html()
    assert len(junit_errors(got.junit())) == 1


def test_nan_outputs_under_pytest_are_errors_not_failures(
    project: Project, tiny_models: dict[str, Path], pytester_project: pytest.Pytester
) -> None:
    project.add_good(2)
    project.write()
    result = pytester_project.runpytest(
        f"--model={tiny_models['nan']}",
        f"--suite={project.root / 'suite.yaml'}",
        "--robust-no-cache",
        "--robust-json=r.json",
        "--junitxml=j.xml",
    )
    assert result.ret == EXIT_ROBUSTTEST_ERROR
    result.assert_outcomes(errors=1)
    assert "Traceback" not in result.stdout.str()
    xml = ET.parse(pytester_project.path / "j.xml").getroot()
    assert junit_errors(xml) and not list(xml.iter("failure"))
    assert json.loads((pytester_project.path / "r.json").read_text())["completed"] is False


# --- a crashed xdist worker ---------------------------------------------------------------
CRASHING_TEST = """
import os

def test_crashes_its_worker():
    os._exit(3)  # the worker process dies, as on an out-of-memory kill
"""


def test_crashed_xdist_worker_loses_nothing(
    project: Project, pytester_project: pytest.Pytester
) -> None:
    pytest.importorskip("xdist")
    project.add_good(2)
    project.write()
    pytester_project.makepyfile(test_crash=CRASHING_TEST)
    result = pytester_project.runpytest_inprocess(  # the workers are processes of their own
        f"--model={project.model}",
        f"--suite={project.root / 'suite.yaml'}",
        "--robust-no-cache",
        "--robust-json=r.json",
        "--robust-html=r.html",
        "-n",
        "2",
        "-p",
        "no:randomly",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the crash fails its test only
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1 and outcomes.get("failed") == 1
    result.stdout.fnmatch_lines(["*crashed while running*test_crashes_its_worker*"])
    doc = json.loads((pytester_project.path / "r.json").read_text())
    assert doc["completed"] is True and [c["verdict"] for c in doc["cases"]] == ["pass"]
    assert (pytester_project.path / "r.html").is_file()


def _always_interrupted(*args: object, **kwargs: object) -> str:
    raise KeyboardInterrupt


def test_second_interrupt_while_writing_stops_without_traceback(
    project: Project,
    pytester_project: pytest.Pytester,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from robusttest.report.html import HtmlRenderer

    project.add_good(2)
    project.write()
    # Ctrl-C while the HTML is written, and again while it is written once more
    monkeypatch.setattr(HtmlRenderer, "render", _always_interrupted)
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_INTERRUPTED
    got.no_traceback()
    assert got.err == ["robusttest: interrupted"]
    assert got.json()["completed"] is False  # the JSON went first, marked incomplete
    monkeypatch.chdir(pytester_project.path)
    result = pytester_project.runpytest_inprocess(
        f"--model={project.model}",
        f"--suite={project.root / 'suite.yaml'}",
        "--robust-no-cache",
        "--robust-json=r.json",
        "--robust-html=r.html",
        no_reraise_ctrlc=True,
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["reports: interrupted twice while they were written; *"])
    doc = json.loads((pytester_project.path / "r.json").read_text())
    assert doc["completed"] is False and doc["run"]["stopped_in"] == "rendering"
    assert not (pytester_project.path / "r.html").exists()

"""Issue 15's promises hold with shards (issue 17): an interrupt keeps what finished, bad
images are collected as errors (or skipped with one warning), NaN outputs are one error
line; with ``--shards`` the reports say the same as with one shard, byte for byte where
the run is deterministic (the same checkpoint hit gives the same images finished, since
the shards' image ranges keep the batches whole)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import Outcome, Project, ids_of, robusttest, run_args

from robusttest import faults
from robusttest.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PASSED

SHARDS = ["1", "3", "4"]


def _without_run(doc: dict[str, Any], *, interrupted: bool = False) -> str:
    out = {k: v for k, v in doc.items() if k not in ("run", "digest")}
    if interrupted:  # images decoded ahead (decode threads) when Ctrl-C landed: timing
        out["provenance"]["data"].pop("bit_depths")
    return json.dumps(out, sort_keys=True)


def _run(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shards: str,
    *extra: str,
) -> Outcome:
    faults.reset()
    args = run_args(project, "--batch-size", "1", "--lanes", "1", "--shards", shards, *extra)
    return robusttest(capsys, monkeypatch, project.root, *args)


@pytest.mark.parametrize(
    ("fault", "phase", "n_done"),
    [
        pytest.param("inference@5", "evaluation", 2, id="inference"),
        pytest.param("statistics@2", "statistics", 4, id="statistics"),
        pytest.param("gallery", "gallery", 4, id="gallery"),
    ],
)
def test_interrupt_with_shards_keeps_what_finished(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    phase: str,
    n_done: int,
) -> None:
    project.add_good(4)
    project.write(noise=True)
    monkeypatch.setenv(faults.ENV, fault)
    docs = []
    for shards in SHARDS:
        got = _run(project, capsys, monkeypatch, shards)
        assert got.rc == EXIT_INTERRUPTED and got.err == []
        got.no_traceback()
        doc = got.json()
        assert doc["completed"] is False and doc["run"]["stopped_in"] == phase
        assert ids_of(doc["records"]) == [f"good{i}" for i in range(n_done)]
        docs.append(_without_run(doc, interrupted=True))
    assert docs[1:] == docs[:-1]


def test_bad_images_are_collected_across_shards(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    for name in ("bad0.png", "bad1.png"):
        (project.root / "img").mkdir(exist_ok=True)
        (project.root / "img" / name).write_text("not a PNG")
        project.add(f"img/{name}")
    project.write(noise=True)  # ids sorted: bad0 and bad1 fall in shards of their own
    docs = []
    for shards in SHARDS:
        got = _run(project, capsys, monkeypatch, shards)
        assert got.rc == EXIT_ERROR
        got.no_traceback()
        doc = got.json()
        unreadable = [i for i, _ in doc["provenance"]["data"]["unreadable"]]
        assert unreadable == ["bad0", "bad1"]  # each once, in the manifest's order
        assert all(c["verdict"] == "error" for c in doc["cases"])
        docs.append(_without_run(doc))
    assert docs[1:] == docs[:-1]


def test_skipped_images_warn_once_with_shards(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(3)
    (project.root / "img" / "bad.png").write_text("not a PNG")
    project.add("img/bad.png")
    project.write(on_bad_image="skip")
    got = _run(project, capsys, monkeypatch, "3")
    assert got.rc == EXIT_PASSED
    assert got.one_warning_line().startswith("manifest: skipped bad: ")
    assert [i for i, _ in got.json()["provenance"]["data"]["skipped"]] == ["bad"]


def test_nan_outputs_with_shards_are_one_error_line(
    project: Project,
    tiny_models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project.model = tiny_models["nan"]
    project.add_good(4)
    project.write()
    got = _run(project, capsys, monkeypatch, "3")
    assert got.rc == EXIT_ERROR
    line = got.one_error_line()
    assert "model outputs contain NaN or inf for 1 of 1" in line
    doc = got.json()
    assert doc["completed"] is False and doc["run"]["stopped_in"] == "evaluation"
    assert doc["run"]["shards"]["done"] == 1  # stopped at the first shard's error

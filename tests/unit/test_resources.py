"""Shipped suites and fixture models: found by name, listed, and usable as ``robusttest:NAME``.

(That they are found in a real wheel install too is tests/unit/test_packaging.py.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from robusttest import resources, suite
from robusttest.cli import main
from robusttest.errors import UnknownNameError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "models"


def test_a_checkout_reads_its_own_folders() -> None:
    assert resources.builtin_suites() == {p.stem: p for p in (REPO / "suites").glob("*.yaml")}
    assert suite.builtin_suites() == resources.builtin_suites()
    assert resources.fixtures_dir() == FIXTURES
    assert resources.fixture_models() == {
        "findings": FIXTURES / "findings_tinycnn.onnx",
        "lungs": FIXTURES / "lungs_tinyunet.onnx",
    }


def test_suites_env_folder_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lungs.yaml").write_text("name: mine\n")
    monkeypatch.setenv("ROBUSTTEST_SUITES", str(tmp_path))
    assert resources.suite_dirs() == [tmp_path, REPO / "suites"]
    assert resources.builtin_suites()["lungs"] == tmp_path / "lungs.yaml"
    assert resources.builtin_suites()["tb"] == REPO / "suites" / "tb.yaml"


def test_short_names_are_the_stem_prefix_unless_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("chest_a.onnx", "chest_b.onnx", "heart_unet.onnx", "plain.onnx", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(resources, "fixtures_dir", lambda: tmp_path)
    assert resources.fixture_models() == {
        "chest_a": tmp_path / "chest_a.onnx",
        "chest_b": tmp_path / "chest_b.onnx",
        "heart": tmp_path / "heart_unet.onnx",
        "plain": tmp_path / "plain.onnx",
    }
    assert resources.resolve_model_ref("robusttest:heart_unet") == tmp_path / "heart_unet.onnx"
    with pytest.raises(UnknownNameError):
        resources.resolve_model_ref("robusttest:chest")  # ambiguous: not a name


def test_resolve_model_ref() -> None:
    lungs = FIXTURES / "lungs_tinyunet.onnx"
    assert resources.resolve_model_ref("robusttest:lungs") == lungs
    assert resources.resolve_model_ref("robusttest:lungs_tinyunet") == lungs
    assert resources.resolve_model_ref(Path("robusttest:findings")) == (
        FIXTURES / "findings_tinycnn.onnx"
    )
    # ordinary paths come back unchanged, relative or not
    assert resources.resolve_model_ref("models/lungs.onnx") == Path("models/lungs.onnx")
    assert resources.resolve_model_ref(Path("/abs/robusttest:x.onnx")) == Path(
        "/abs/robusttest:x.onnx"
    )
    with pytest.raises(UnknownNameError) as info:
        resources.resolve_model_ref("robusttest:lung")
    assert str(info.value) == (
        "unknown fixture model 'robusttest:lung'; known fixture models: robusttest:findings, "
        "robusttest:findings_tinycnn, robusttest:lungs, robusttest:lungs_tinyunet"
    )


def test_fixtures_command_lists_the_shipped_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fixtures"]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = [
        ("robusttest:findings", "classification", FIXTURES / "findings_tinycnn.onnx"),
        ("robusttest:lungs", "segmentation", FIXTURES / "lungs_tinyunet.onnx"),
    ]
    assert len(lines) == len(want)
    for line, (ref, task, path) in zip(lines, want, strict=True):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert line.split() == [ref, task, f"sha256:{sha}", str(path)]


def test_the_engine_loads_a_shipped_model_by_name() -> None:
    from robusttest.engine import load_model_and_suite

    runner, s = load_model_and_suite("robusttest:lungs", None, device="cpu")
    assert runner.path == FIXTURES / "lungs_tinyunet.onnx"
    assert s.name == "lungs"  # the card's task picked the default suite


def test_run_with_an_unknown_shipped_name_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "robusttest:nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("robusttest: error: unknown fixture model 'robusttest:nope'; ")

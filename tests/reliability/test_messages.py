"""Every message true, and the fix it suggests working: each test meets a message, checks
what it says against the file, then does what it says and runs again.
"""

from __future__ import annotations

import pickle
import re
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bad_files import png16
from reliability_helpers import SIZE, Outcome, Project, good_image, png, robusttest, run_args

from robusttest.cli import EXIT_ERROR, EXIT_PASSED, EXIT_USAGE


def _run(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *a: str
) -> Outcome:
    return robusttest(capsys, monkeypatch, project.root, *run_args(project, *a))


def _suite_with_model(project: Project, model: dict[str, Any]) -> None:
    suite = project.root / "suite.yaml"
    suite.write_text(suite.read_text() + yaml.safe_dump({"model": model}, default_flow_style=None))


def _card(model: Path) -> dict[str, Any]:
    from robusttest.models import stored_card_fields

    keys = ("task", "input_size", "channels", "mean", "std", "output_activation", "structures")
    return {k: v for k, v in stored_card_fields(model).items() if k in keys}


# --- the model card -------------------------------------------------------------------------
def test_no_card_message_is_true_and_its_fix_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    from robusttest.suite import parse_suite

    proto = onnx.load(str(project.model))
    card = _card(project.model)
    del proto.metadata_props[:]
    bare = project.root / "bare.onnx"
    onnx.save(proto, str(bare))
    project.model = bare
    project.add_good(2)
    project.write()
    got = robusttest(capsys, monkeypatch, project.root, "run", str(bare))  # no suite: no task
    assert got.rc == EXIT_USAGE
    line = got.one_error_line()
    assert line.startswith(f"{bare}: model has no robusttest model card (missing: task, ")
    # two fixes: `robusttest card init` (run by tests/unit/test_card_cli.py), and the
    # fields in the suite's model: section, which the suite grammar accepts and which runs
    assert "robusttest card init" in line and "a suite model: section" in line
    assert parse_suite({"task": "segmentation", "model": card}).model == card
    _suite_with_model(project, card)
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_PASSED, got.err


def test_pickles_are_named_for_what_they_are_and_exporting_fixes_it(
    project: Project,
    tiny_models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from robusttest.models import ModelCard, export_onnx
    from robusttest.zoo.nets import TinyUNet

    module = TinyUNet(base=4, depth=2)
    plain, legacy = project.root / "plain.pkl", project.root / "legacy.pt"
    plain.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    torch.save(module.state_dict(), legacy, _use_new_zipfile_serialization=False)
    project.add_good(2)
    project.write()
    for path, says in (
        (plain, "this is a Python pickle (e.g. pickle.dump or joblib), not a model archive"),
        (legacy, "this is a checkpoint in torch.save's legacy (pre-1.6, non-zip) pickle format"),
    ):
        project.model = path
        got = _run(project, capsys, monkeypatch)
        assert got.rc == EXIT_USAGE
        line = got.one_error_line()
        assert line.startswith(f"{path}: {says}. robusttest does not load pickled models")
        assert 'robusttest.models.export_onnx(model, "model.onnx", card)' in line
    # the fix it names: export the module with its card
    card = ModelCard(**_card(tiny_models["seg"]))
    project.model = export_onnx(module, project.root / "model.onnx", card)
    assert _run(project, capsys, monkeypatch).rc == EXIT_PASSED


def _hand_made(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_hand_made_torch_archives_are_not_blamed_on_a_newer_torch(
    project: Project,
    tiny_models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    from robusttest.models import ModelCard, export_onnx, save_torchscript
    from robusttest.zoo.nets import TinyUNet

    if fmt == "torchscript":
        members = {
            "m/code/__torch__.py": b"x = 1\n",
            "m/data.pkl": pickle.dumps({"x": 1}),
            "m/constants.pkl": pickle.dumps(()),
        }
        crafted = _hand_made(project.root / "crafted.pt", members)
    else:
        members = {"m/archive_format": b"pt2", "m/models/model.json": b"{not json"}
        crafted = _hand_made(project.root / "crafted.pt2", members)
    project.model = crafted
    project.add_good(2)
    project.write()
    card = _card(tiny_models["seg"])
    _suite_with_model(project, card)  # past the card: torch itself must read the file
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_USAGE
    line = got.one_error_line()
    assert line.startswith(f"{crafted}: torch ") and f"cannot load this {fmt} model" in line
    assert "newer torch wrote it" in line and "If it was saved with a newer torch" not in line
    assert line.endswith(
        "so it is damaged or was not written by torch.jit.save / torch.export.save: export the "
        "model again (robusttest.models.export_onnx, save_torchscript or save_pt2)"
    )
    # the fix: export again (save_pt2 works as well; ONNX is the quicker to export here)
    module, model_card = TinyUNet(base=4, depth=2), ModelCard(**card)
    if fmt == "torchscript":
        project.model = save_torchscript(module, crafted, model_card, method="trace")
    else:
        project.model = export_onnx(module, project.root / "again.onnx", model_card)
    project.write()
    assert _run(project, capsys, monkeypatch).rc == EXIT_PASSED


# --- images: the pixel limit, the bit depth -------------------------------------------------
def test_pixel_limit_message_names_size_and_limit_and_raising_it_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write(max_pixels=1000)
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_ERROR
    first = got.json()["run"]["errors"][0]
    assert f"{project.path('img/good0.png')}: image is {SIZE}×{SIZE} = 1,024 pixels" in first
    assert "over the limit of 1,000 pixels" in first and "`data: {max_pixels: N}`" in first
    project.write(max_pixels=2000)  # the fix the message names
    assert _run(project, capsys, monkeypatch).rc == EXIT_PASSED
    # and --max-pixels for robusttest noise, as it says too
    args = ["noise", "apply", "img/good0.png", "--noise", "gaussian", "--level", "0.1"]
    got = robusttest(
        capsys, monkeypatch, project.root, *args, "--out", "n.npy", "--max-pixels", "1000"
    )
    assert got.rc == EXIT_USAGE and "over the limit of 1,000 pixels" in got.one_error_line()
    got = robusttest(
        capsys, monkeypatch, project.root, *args, "--out", "n.npy", "--max-pixels", "2000"
    )
    assert got.rc == EXIT_PASSED and project.path("n.npy").is_file()


def test_bit_depth_message_is_true_and_correcting_it_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, mask = good_image(0)
    values = np.where(mask, 3000, 600).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    (project.root / "img").mkdir()
    (project.root / "img" / "twelve.png").write_bytes(png16(values))
    project.add_good(1)
    project.add("img/twelve.png", bit_depth="10")
    project.write()
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_ERROR
    line = got.one_error_line()
    assert "values reach 3000, above the 1023 that 10-bit data (bit_depth) allows" in line
    assert "correct the bit depth (bit_depth in the suite's data or the manifest)" in line
    project.rows[-1] = ("img/twelve.png", project.rows[-1][1], "12")  # in the manifest
    project.write()
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_PASSED
    depths = got.json()["provenance"]["data"]["bit_depths"]
    assert depths == {"12-bit (bit_depth)": 1, "8-bit (file)": 1}
    # or in the suite's data, for every image
    (project.root / "img" / "twelve2.png").write_bytes(png16(values))
    project.rows = [(r[0], r[1], "") for r in project.rows[1:]]
    project.add("img/twelve2.png")
    project.write(bit_depth=12)
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_PASSED
    assert got.json()["provenance"]["data"]["bit_depths"] == {"12-bit (bit_depth)": 2}


# --- the output cache ----------------------------------------------------------------------
def _cached(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
) -> Outcome:
    args = [a for a in run_args(project) if a != "--no-cache"]
    return robusttest(capsys, monkeypatch, project.root, *args, "--cache-dir", str(cache))


def _rows(db: Path) -> int:
    con = sqlite3.connect(str(db))
    try:
        return int(con.execute("SELECT COUNT(*) FROM outputs").fetchone()[0])
    finally:
        con.close()


def test_damaged_cache_fix_delete_the_file_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    db = project.root / "cache" / "outputs.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"SQLite format 3\0" + bytes(200))  # a header, then nothing
    got = _cached(project, capsys, monkeypatch, db.parent)
    warning = got.one_warning_line()
    assert f"output cache {db}: it is damaged" in warning
    assert warning.endswith("To fix: delete the file (the cache is rebuilt on the next run)")
    db.unlink()  # the fix
    got = _cached(project, capsys, monkeypatch, db.parent)
    assert got.rc == EXIT_PASSED and got.err == [] and got.json()["run"]["cache"] is True
    assert _rows(db) == 2  # rebuilt: two images × one condition


def test_unwritable_cache_fix_another_folder_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    (project.root / "taken").write_text("a file, not a folder")
    got = _cached(project, capsys, monkeypatch, project.root / "taken" / "cache")
    warning = got.one_warning_line()
    assert (
        "or use another cache folder (--cache-dir DIR; --robust-cache-dir DIR in pytest)" in warning
    )
    got = _cached(project, capsys, monkeypatch, project.root / "elsewhere")  # the fix
    assert got.rc == EXIT_PASSED and got.err == []
    assert _rows(project.root / "elsewhere" / "outputs.sqlite") == 2


# --- other messages with a fix --------------------------------------------------------------
def test_shared_no_target_message_fix_a_model_override_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    card = {**_card(project.model), "structures": ["heart"]}
    suite = project.root / "suite.yaml"
    suite.write_text(suite.read_text().replace("targets: [lungs]\n", ""))
    _suite_with_model(project, card)
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_USAGE
    assert (
        "share no structure; set `targets:` in the suite, or the model's names with a "
        "`model:` override" in got.one_error_line()
    )
    suite.write_text(suite.read_text().replace("structures: [heart]", "structures: [lungs]"))
    assert _run(project, capsys, monkeypatch).rc == EXIT_PASSED


def test_unset_data_variable_message_fix_pass_data_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    project.write()
    suite = project.root / "suite.yaml"
    suite.write_text(
        re.sub(r'root: "[^"]*"', 'root: "${RT_NOT_SET}/manifest.csv"', suite.read_text())
    )
    monkeypatch.delenv("RT_NOT_SET", raising=False)
    got = _run(project, capsys, monkeypatch)
    assert got.rc == EXIT_USAGE
    assert got.one_error_line().endswith(
        "set it (e.g. ROBUSTTEST_DATA=/path/to/data) or pass --data ROOT"
    )
    got = _run(project, capsys, monkeypatch, "--data", str(project.root / "manifest.csv"))
    assert got.rc == EXIT_PASSED


def test_param_message_example_works(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    png(project.path("x.png"), good_image(0)[0])
    args = ["noise", "apply", "x.png", "--noise", "quantum", "--level", "0.5", "--out", "n.npy"]
    got = robusttest(capsys, monkeypatch, project.root, *args, "--param", "resample")
    assert got.rc == EXIT_USAGE
    line = got.one_error_line()
    assert line == "--param 'resample': expected KEY=VALUE, e.g. --param variant=resample"
    got = robusttest(capsys, monkeypatch, project.root, *args, "--param", "variant=resample")
    assert got.rc == EXIT_PASSED


def test_exit_codes_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    from robusttest.cli import EXIT_CODES, main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status:" in text
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text

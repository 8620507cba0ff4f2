"""The command line, in process: outputs, parameters written, one-line errors, exit codes."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robusttest import preview
from robusttest.cli import main
from robusttest.models import ModelCard, OnnxRunner, export_onnx
from robusttest.noise import NoiseSpec
from robusttest.results import RunResult
from robusttest.suite import json_schema


@pytest.fixture
def png(tmp_path: Path) -> Path:
    """A 40×64 8-bit radiograph-like ramp."""
    a = np.tile(np.linspace(0.05, 0.95, 64), (40, 1))
    p = tmp_path / "chest.png"
    Image.fromarray((a * 255).round().astype(np.uint8)).save(p)
    return p


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("robusttest: error: ")
    assert "Traceback" not in err and out == ""
    return lines[0][len("robusttest: error: ") :]


# --- noise apply ---------------------------------------------------------------------------
def test_apply_writes_npy_and_every_parameter(
    png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "noisy.npy"
    argv = ["noise", "apply", str(png), "--noise", "quantum", "--level", "0.25"]
    argv += ["--seed", "7", "--repeat", "1", "--pixel-spacing", "0.143", "--out", str(out)]
    assert main(argv) == 0
    assert "noisy.npy" in capsys.readouterr().out
    arr = np.load(out, allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (40, 64)
    assert float(arr.min()) >= 0.0 and float(arr.max()) <= 1.0
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    # photons per mm² behind the lung: 2.5 µGy × 3e4 /mm²/µGy, at p_lung = 0.45 with
    # lmax = 5, so the open beam is 7.5e4 · e^(5·0.45) per mm²; a 0.143 mm pixel gets
    # that times 0.143²
    photons = 2.5 * 3.0e4 * math.exp(5.0 * 0.45)
    assert meta["photons_per_mm2"] == pytest.approx(photons, rel=1e-12)
    assert meta["n0"] == pytest.approx(photons * 0.143**2, rel=1e-12)
    assert 1.4e4 < meta["n0"] < 1.5e4
    assert meta["n0_source"] == "photons_per_mm2 x spacing^2"
    expected = {
        "noise": "quantum",
        "level": 0.25,
        "dose": 0.25,
        "variant": "thin",
        "lmax": 5.0,
        "sigma_e": 0.0,
        "sigma_e_pixel": 0.0,
        "pixel_spacing_mm": 0.143,
        "pixel_spacing_source": "--pixel-spacing",
        "seed": 7,
        "repeat": 1,
        "image_id": "chest",
        "image": str(png),
        "shape": [40, 64],
    }
    assert {k: meta[k] for k in expected} == expected
    # the array is exactly the library's noise for that seed, id and repeat
    clean = np.asarray(Image.open(png), dtype=np.float32) / 255.0
    direct = NoiseSpec("quantum", 0.25).apply(
        clean, seed=7, image_ids=["chest"], repeat=1, pixel_spacing_mm=0.143
    )
    assert np.array_equal(arr, direct.numpy())
    assert not np.array_equal(arr, clean)


def test_apply_assumed_spacing_and_params(
    png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e.npy"
    argv = ["noise", "apply", str(png), "--noise", "electronic", "--level", "20"]
    argv += ["--param", "dose=0.5", "--param", "n0=2000", "--image-id", "x1", "--out", str(out)]
    assert main(argv) == 0
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    spacing = 430.0 / 64  # longer side spans the 430 mm cassette
    assert meta["pixel_spacing_source"] == "assumed 430 mm field of view"
    assert meta["pixel_spacing_mm"] == pytest.approx(spacing)
    assert meta["n0"] == 2000.0 and meta["n0_source"] == "n0"
    assert meta["dose"] == 0.5 and meta["sigma_e"] == 20.0
    assert meta["sigma_e_pixel"] == pytest.approx(20.0 * spacing / 0.143)
    assert meta["image_id"] == "x1"


def test_apply_gaussian_is_reproducible(
    png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    for out in (a, b):
        argv = ["noise", "apply", str(png), "--noise", "gaussian", "--level", "0.1"]
        assert main([*argv, "--out", str(out)]) == 0
    assert np.array_equal(np.load(a), np.load(b))
    meta = json.loads(a.with_suffix(".json").read_text(encoding="utf-8"))
    assert (meta["noise"], meta["level"], meta["sigma"], meta["seed"]) == ("gaussian", 0.1, 0.1, 0)


@pytest.mark.parametrize(
    ("noise", "level", "expected"),
    [
        ("quantum", "0", "quantum.dose: 0.0 is not in (0, 1]"),
        ("quantum", "1.5", "quantum.dose: 1.5 is not in (0, 1]"),
        ("gaussian", "-0.1", "gaussian.sigma: -0.1 is not in [0, 1]"),
        ("poisson", "0", "poisson.rate: 0.0 is not in (0, inf]"),
        ("electronic", "-1", "electronic.sigma_e: -1.0 is not in [0, inf]"),
        (
            "speckle",
            "1",
            "unknown noise 'speckle'; known noises: electronic, gaussian, poisson, quantum",
        ),
    ],
)
def test_apply_bad_levels(
    png: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    noise: str,
    level: str,
    expected: str,
) -> None:
    out = tmp_path / "o.npy"
    argv = ["noise", "apply", str(png), "--noise", noise, f"--level={level}", "--out", str(out)]
    assert one_line_error(capsys, argv) == expected
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_apply_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.png"
    argv = ["noise", "apply", str(missing), "--noise", "quantum", "--level", "0.5"]
    msg = one_line_error(capsys, [*argv, "--out", str(tmp_path / "o.npy")])
    assert msg == f"{missing}: no such file; check the path"
    argv[2] = str(tmp_path)  # a folder
    assert "is a folder" in one_line_error(capsys, [*argv, "--out", str(tmp_path / "o.npy")])


def test_apply_truncated_png(png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = png.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    argv = ["noise", "apply", str(bad), "--noise", "quantum", "--level", "0.5"]
    msg = one_line_error(capsys, [*argv, "--out", str(tmp_path / "o.npy")])
    assert msg.startswith(f"{bad}: cannot decode image") and "truncated" in msg


def test_apply_bad_out_and_param(
    png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["noise", "apply", str(png), "--noise", "quantum", "--level", "0.5"]
    assert "must end in .npy" in one_line_error(capsys, [*argv, "--out", str(tmp_path / "o.txt")])
    msg = one_line_error(capsys, [*argv, "--param", "lmax", "--out", str(tmp_path / "o.npy")])
    assert msg.startswith("--param 'lmax': expected KEY=VALUE")
    msg = one_line_error(capsys, [*argv, "--param", "foo=1", "--out", str(tmp_path / "o.npy")])
    assert msg.startswith("quantum: unknown parameter(s) foo; allowed:")


def test_apply_unwritable_out_is_one_line(
    png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["noise", "apply", str(png), "--noise", "quantum", "--level", "0.5"]
    msg = one_line_error(capsys, [*argv, "--out", str(png / "o.npy")])
    assert str(png) in msg


# --- noise preview / list --------------------------------------------------------------------
def test_preview_grid_size(png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ladder.png"
    assert main(["noise", "preview", str(png), "--noise", "gaussian", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    im = Image.open(out)
    im.load()
    # clean + 5 levels = 6 tiles in 3 columns × 2 rows; a tile is TILE wide and TILE + 22
    # (the label strip) high; 4 px gutters between tiles
    tile_w, tile_h = preview.TILE, preview.TILE + 22
    assert im.format == "PNG"
    assert im.size == (3 * tile_w + 2 * 4, 2 * tile_h + 4)
    assert one_line_error(
        capsys, ["noise", "preview", str(png), "--ladder", "heavy", "--out", str(out)]
    ).startswith("unknown quantum ladder 'heavy'")


def test_noise_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["noise", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("quantum", "electronic", "gaussian", "poisson"):
        assert f"\n{name}: " in f"\n{out}"
    assert "dose = 0.5, 0.25, 0.1, 0.05, 0.02" in out
    assert "sigma = 0.04, 0.08, 0.12, 0.18, 0.26" in out


# --- suite ---------------------------------------------------------------------------------
def test_suite_schema_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suite", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
    out = tmp_path / "schema.json"
    assert main(["suite", "schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == json_schema()


def test_suite_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suite", "list"]) == 0
    listed = capsys.readouterr().out
    assert "lungs" in listed and "paper-2509.25265" in listed
    assert main(["suite", "show", "lungs"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "lungs"
    assert main(["suite", "show", "paper-2509.25265", "--task", "classification"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "classification"
    msg = one_line_error(capsys, ["suite", "show", "paper-2509.25265"])
    assert "segmentation and classification variants" in msg


# --- run -------------------------------------------------------------------------------------
class DarkIsLung(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (0.5 - (x * 0.25 + 0.5))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    card = ModelCard(
        task="segmentation",
        input_size=(64, 64),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        structures=("lungs",),
        output_activation="sigmoid",
    )
    return export_onnx(DarkIsLung(), tmp_path / "dark.onnx", card)


def suite_file(tmp_path: Path, minimum: float) -> Path:
    p = tmp_path / f"tiny-{minimum}.yaml"
    p.write_text(
        "name: tiny\ntask: segmentation\n"
        "data: {adapter: phantom, options: {n: 4, size: 64}}\n"
        "noise: {gaussian: {sigma: 0.1}}\nrepeats: 1\ntargets: [lungs]\n"
        f"bootstrap: {{resamples: 200}}\ngates: {{default: {{min: {minimum}}}}}\n",
        encoding="utf-8",
    )
    return p


@pytest.mark.parametrize(("minimum", "rc"), [(0.0, 0), (1.01, 1)])
def test_run_exit_code_follows_the_gates(
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    minimum: float,
    rc: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    argv = ["run", str(model), "--suite", str(suite_file(tmp_path, minimum)), "--no-cache"]
    argv += ["--device", "cpu", "--workers", "1", "--lanes", str(1 + rc), "--json", str(out)]
    assert main(argv) == rc
    stdout = capsys.readouterr().out
    result = RunResult.read(out)
    assert result.passed is (rc == 0)
    assert result.run["lanes"] == 1 + rc
    if rc == 0:
        assert "PASSED: 2 cases: 2 passed, 0 failed" in stdout
    else:
        assert "FAILED: 2 cases: 0 passed, 2 failed" in stdout
        assert "FAIL lungs-dice[gaussian-sigma0.1]: " in stdout and "1.01" in stdout
    assert not (tmp_path / ".robusttest-cache").exists()  # --no-cache


def test_run_cache_dir_holds_the_outputs_and_a_rerun_reads_them(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    real_call = OnnxRunner.__call__

    def counted(self: OnnxRunner, batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return real_call(self, batch)

    monkeypatch.setattr(OnnxRunner, "__call__", counted)
    cache_dir = tmp_path / "ci-cache"
    argv = ["run", str(model), "--suite", str(suite_file(tmp_path, 0.0)), "--device", "cpu"]
    argv += ["--workers", "1", "--lanes", "1", "--cache-dir", str(cache_dir)]
    assert main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    first = len(calls)
    assert (cache_dir / "outputs.sqlite").is_file()
    assert not (tmp_path / ".robusttest-cache").exists()  # not the default folder
    with sqlite3.connect(cache_dir / "outputs.sqlite") as db:
        rows = db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
    assert rows == 4 * 2  # 4 images × (clean + 1 condition)
    # the rerun reads the main pass from that folder: one model call per condition fewer
    # (the 4 images make one batch); only the report's gallery thumbnails run the model
    calls.clear()
    assert main([*argv, "--json", str(tmp_path / "b.json")]) == 0
    assert len(calls) == first - 2
    a, b = RunResult.read(tmp_path / "a.json"), RunResult.read(tmp_path / "b.json")
    assert a.to_json(include_run=False) == b.to_json(include_run=False)
    capsys.readouterr()


def test_run_bad_repeats_is_one_line(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(model), "--suite", str(suite_file(tmp_path, 0.0)), "--repeats", "0"]
    assert one_line_error(capsys, argv).startswith("--repeats: 0 is not >= 1")
    argv = ["run", str(model), "--suite", str(suite_file(tmp_path, 0.0)), "--lanes", "0"]
    assert one_line_error(capsys, argv).startswith("--lanes: 0 is not >= 1")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("robusttest ")

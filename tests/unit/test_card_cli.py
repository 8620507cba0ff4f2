"""`robusttest card init|show|set`, the sidecar card and ``resize_back`` (issue 16, point 7).

A user with an ONNX model exported elsewhere (here: the fixture lung model with its card
stripped) gets the error, runs the command it suggests, and the model then runs; the card
inferred from the graph and the flags equals the one the model was exported with.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import robusttest
from robusttest.cli import main
from robusttest.errors import ModelError
from robusttest.metrics import dice
from robusttest.models import ModelCard, load_model, preprocess
from robusttest.models.card import sidecar_path
from robusttest.models.files import stored_card_fields
from robusttest.resources import fixture_models
from robusttest.suite import parse_suite

LUNGS = fixture_models()["lungs"]
FLAGS = {  # the fixture lung model's card, as a user would give it
    "--task": ["segmentation"],
    "--structures": ["lungs"],
    "--labels": ["lungs"],  # (for the classification variant of the suggestion: unused)
    "--mean": ["0.5"],
    "--std": ["0.25"],
    "--output-activation": ["sigmoid"],
}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """The fixture lung model with every robusttest metadata entry removed."""
    proto = onnx.load(str(LUNGS))
    kept = [m for m in proto.metadata_props if not m.key.startswith("robusttest.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    out = tmp_path / "bare.onnx"
    onnx.save(proto, str(out))
    return out


def _smoke_run(model: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", str(model), "--limit", "2", "--repeats", "1", "--no-cache"])
    return code, capsys.readouterr().err


def test_no_card_error_suggests_a_command_that_works(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _smoke_run(bare, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has no robusttest model card" in err and "model: {path:" not in err
    m = re.search(r"Give it a card: (robusttest card init .*?) \(see robusttest card init", err)
    assert m is not None, err
    words = shlex.split(m.group(1))
    assert words[:4] == ["robusttest", "card", "init", str(bare)]
    # the suggestion's flags, each given the model's value (placeholders are upper case or
    # a|b alternatives), make a command that works
    flags = [w for w in words[4:] if w.startswith("--")]
    assert {"--task", "--mean", "--std", "--output-activation"} <= set(flags)
    argv = ["card", "init", str(bare)]
    for flag in flags:
        if flag == "--labels":  # the suggestion offers --labels or --structures
            continue
        argv += [flag, *FLAGS[flag]]
    before = _sha(bare)
    assert main(argv) == 0
    assert _sha(bare) == before  # by default the model file is not touched
    code, err = _smoke_run(bare, capsys)
    assert code in (0, 1), err  # it runs: the gates decide now
    # the card from the graph and the flags is the one the model was exported with
    want = stored_card_fields(LUNGS)
    got = stored_card_fields(bare)
    for k in ("task", "input_size", "channels", "mean", "std", "output_activation", "structures"):
        assert got[k] == want[k], k


def test_show_and_set(bare: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "show", str(bare)]) == 2
    assert "robusttest card init" in capsys.readouterr().err
    init = ["card", "init", str(bare), "--task", "segmentation", "--structures", "lungs"]
    init += ["--mean", "0.5", "--std", "0.25", "--output-activation", "sigmoid", "--name", "L"]
    assert main(init) == 0
    capsys.readouterr()
    assert main(["card", "show", str(bare)]) == 0
    out = capsys.readouterr().out
    assert "sidecar" in out.splitlines()[0]
    assert "input_size: [128, 128]" in out and "resize_back: probabilities" in out
    assert main(["card", "set", str(bare), "resize_back=labels", "version=1.10"]) == 0
    fields = stored_card_fields(bare)
    assert fields["resize_back"] == "labels" and fields["version"] == "1.10"
    assert fields["name"] == "L"  # the rest kept
    # a second init is refused without --force
    assert main(init) == 2
    assert "already has a card" in capsys.readouterr().err
    assert main(["card", "set", str(bare), "colour=red"]) == 2
    assert "unknown card field 'colour'" in capsys.readouterr().err


def test_in_place_and_out_store_the_card_in_the_onnx_file(bare: Path, tmp_path: Path) -> None:
    flags = ["--task", "segmentation", "--structures", "lungs", "--mean", "0.5"]
    flags += ["--std", "0.25", "--output-activation", "sigmoid"]
    copy = tmp_path / "with_card.onnx"
    before = _sha(bare)
    assert main(["card", "init", str(bare), *flags, "--out", str(copy)]) == 0
    assert _sha(bare) == before and not sidecar_path(bare).exists()
    assert load_model(copy, device="cpu").card.structures == ("lungs",)
    assert main(["card", "init", str(bare), *flags, "--in-place"]) == 0
    assert _sha(bare) != before
    meta = {m.key for m in onnx.load(str(bare)).metadata_props}
    assert "robusttest.task" in meta and "robusttest.resize_back" in meta
    # only the metadata changed: the same outputs as the original model
    x = torch.rand(2, 1, 128, 128)
    a = load_model(bare, device="cpu")
    b = load_model(LUNGS, device="cpu")
    assert torch.equal(a(preprocess(x, a.card)), b(preprocess(x, b.card)))


def test_flags_checked_against_the_graph_and_the_outputs(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["card", "init", str(bare), "--mean", "0.5", "--std", "0.25"]
    base += ["--output-activation", "sigmoid"]
    seg = [*base, "--task", "segmentation", "--structures", "lungs"]
    assert main([*seg, "--input-size", "64", "64"]) == 2
    assert "the graph of bare.onnx takes [128, 128]" in capsys.readouterr().err
    assert main([*seg, "--channels", "3"]) == 2
    assert "takes [1]" in capsys.readouterr().err
    # two labels for a one-channel output: the model is run with the card, nothing written
    assert main([*base, "--task", "classification", "--labels", "a,b"]) == 2
    err = capsys.readouterr().err
    assert "must return N×2" in err and len(err.strip().splitlines()) == 1
    assert not sidecar_path(bare).exists()


class _Dark(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (0.5 - (x * 0.25 + 0.5))


def test_torchscript_gets_a_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ts = tmp_path / "dark.pt"
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_Dark()), str(ts))  # a TorchScript file, no card
    with pytest.raises(ModelError, match="robusttest card init"):
        load_model(ts, device="cpu")
    flags = ["--task", "segmentation", "--structures", "lungs", "--mean", "0.5", "--std"]
    flags += ["0.25", "--output-activation", "sigmoid"]
    assert main(["card", "init", str(ts), *flags]) == 2  # no graph to read the size from
    assert "--input-size" in capsys.readouterr().err
    assert main(["card", "init", str(ts), *flags, "--input-size", "64x64", "--in-place"]) == 2
    assert "sidecar" in capsys.readouterr().err
    assert main(["card", "init", str(ts), *flags, "--input-size", "64", "--channels", "1"]) == 0
    assert load_model(ts, device="cpu").card.input_size == (64, 64)


def test_a_broken_sidecar_is_one_line_naming_it(bare: Path) -> None:
    side = sidecar_path(bare)
    side.write_text("task: [segmentation\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"bare\.onnx\.card\.yaml: the sidecar card is not valid"):
        load_model(bare, device="cpu")
    side.write_text("task: segmentation\nshape: 3\n", encoding="utf-8")
    with pytest.raises(ModelError, match="unknown card field"):
        load_model(bare, device="cpu")
    # a sidecar overrides the card stored in the file
    side.write_text("", encoding="utf-8")
    with pytest.raises(ModelError, match="no robusttest model card"):
        load_model(bare, device="cpu")


# --- resize_back: the engine follows the card -----------------------------------------------
def _nearest_up(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling by pixel centres, written out (independent of torch)."""
    rows = np.floor((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(int)
    cols = np.floor((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(int)
    return labels[np.ix_(rows, cols)]


def test_resize_back_labels_thresholds_then_resizes(tmp_path: Path) -> None:
    model = tmp_path / "lungs.onnx"
    model.write_bytes(LUNGS.read_bytes())
    suite = parse_suite(
        {
            "name": "rb",
            "task": "segmentation",
            "data": {"adapter": "phantom", "options": {"n": 4, "size": 200, "seed": 0}},
            "noise": {"gaussian": {"sigma": [0.1]}},
            "repeats": 1,
            "metrics": ["dice"],
            "bootstrap": {"resamples": 100},
        }
    )
    kw = {"cache": False, "gallery": 0, "workers": 0, "device": "cpu"}
    probs = robusttest.run(model, suite, **kw)  # type: ignore[arg-type]
    assert main(["card", "set", str(model), "resize_back=labels"]) == 0
    labels = robusttest.run(model, suite, **kw)  # type: ignore[arg-type]
    assert labels.provenance["model"]["card"]["resize_back"] == "labels"
    runner = load_model(model, device="cpu")
    ds = robusttest.data.open_dataset("phantom", None, n=4, size=200, seed=0)
    got = {r.image_id: r.values["dice/lungs"] for r in labels.records if r.condition == "clean"}
    old = {r.image_id: r.values["dice/lungs"] for r in probs.records if r.condition == "clean"}
    for rec in ds.records:
        s = ds.load(rec)
        x = torch.from_numpy(s.image)[None, None]
        with torch.inference_mode():
            p = torch.sigmoid(runner(preprocess(x, runner.card)))[0, 0].numpy()
        pred = _nearest_up(p > 0.5, s.image.shape)
        assert got[s.image_id] == pytest.approx(float(dice(pred, s.masks["lungs"])), abs=1e-12)
    assert got != old  # the two ways differ (128 → 200: not a whole factor)


def test_resize_back_is_validated() -> None:
    with pytest.raises(Exception, match="resize_back"):
        ModelCard(
            task="segmentation",
            input_size=(8, 8),
            channels=1,
            mean=(0.5,),
            std=(0.25,),
            structures=("lungs",),
            output_activation="sigmoid",
            resize_back="bicubic",  # type: ignore[arg-type]
        )

"""Where a run happened (issue 16, point 9): command line, full model path, CPU and GPU.

Machine facts go in the results' ``run`` block, so the rest of the JSON stays byte-identical
between two runs with the same seed on different machines.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

import pytest
import torch

import robusttest
from robusttest.engine.pipeline import command_line, cpu_model, gpu_model
from robusttest.report import render_html
from robusttest.resources import fixture_models
from robusttest.results import RunResult
from robusttest.suite import parse_suite

SUITE = {
    "name": "prov",
    "task": "segmentation",
    "data": {"adapter": "phantom", "options": {"n": 2, "size": 64}},
    "noise": {"gaussian": {"sigma": [0.1]}},
    "repeats": 1,
    "metrics": ["dice"],
    "bootstrap": {"resamples": 100},
}


def _run(model: Path) -> RunResult:
    return robusttest.run(
        model, parse_suite(SUITE), cache=False, gallery=0, workers=0, device="cpu"
    )


def _proc_cpu() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else None


def test_run_block_says_command_model_path_and_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "sub" / "m.onnx"
    model.parent.mkdir()
    model.write_bytes(fixture_models()["lungs"].read_bytes())
    monkeypatch.chdir(tmp_path)
    result = _run(Path("sub/m.onnx"))
    run = result.run
    assert run["model_path"] == str(model.resolve())
    assert result.provenance["model"]["path"] == "m.onnx"  # the portable part stays a name
    assert run["command"] == command_line() and run["cwd"] == str(tmp_path)
    want_cpu = _proc_cpu()
    if want_cpu is not None:  # the marketing name, not platform.processor()'s "x86_64"
        assert run["cpu"] == want_cpu and run["cpu"] != platform.machine()
    assert run["cpu"]
    assert run["cpu_count"] == os.cpu_count()
    assert run["gpu"] is None  # a CPU run never touches CUDA
    # none of it in the reproducible part
    text = result.to_json(include_run=False)
    assert str(model.resolve()) not in text and str(run["cpu"]) not in text
    page = render_html(result, rendered_at="t")
    for key in ("command", "model_path", "cpu", "gpu"):
        assert f"<th>{key}</th>" in page
    assert str(model.resolve()) in page and str(run["cpu"]) in page


def test_same_seed_same_bytes_on_any_machine(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "m.onnx").write_bytes(fixture_models()["lungs"].read_bytes())
    ra, rb = _run(a / "m.onnx"), _run(b / "m.onnx")
    assert ra.run["model_path"] != rb.run["model_path"]
    assert ra.to_json(include_run=False) == rb.to_json(include_run=False)


def test_command_line_reads_back_as_typed() -> None:
    py = Path(sys.executable).name
    assert command_line(["/venv/lib/pytest/__main__.py", "--model=a b.onnx", "-q"]) == (
        f"{py} -m pytest '--model=a b.onnx' -q"
    )
    assert command_line(["/venv/bin/robusttest", "run", "m.onnx"]) == (
        "/venv/bin/robusttest run m.onnx"
    )
    assert cpu_model()
    assert gpu_model("cpu") is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_model_names_the_device() -> None:
    assert gpu_model("cuda:0") == torch.cuda.get_device_name(0)

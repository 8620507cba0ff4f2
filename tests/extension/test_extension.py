"""An extension package seen by every front end: a metric and a report format registered
only through entry points (tests/extension/rt_demo_ext and its dist-info folder) are used
by `robusttest suite schema`, `robusttest run` and `pytest --model` (issue 13)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robusttest.models import ModelCard, export_onnx

HERE = Path(__file__).resolve().parent / "site"  # not on sys.path: only these runs see it
SUITE = """\
name: ext
task: segmentation
data: {adapter: phantom, options: {n: 6, size: 64, seed: 0}}
noise: {gaussian: {sigma: [0.1]}}
metrics: [dice, sensitivity]
targets: [lungs]
bootstrap: {resamples: 100}
gates:
  metrics:
    sensitivity: {min: 0.0}
"""


class DarkIsLung(nn.Module):
    """Lung wherever the (un-normalised) image is darker than 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (0.5 - (x * 0.25 + 0.5))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ext")
    card = ModelCard(
        task="segmentation",
        input_size=(64, 64),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        structures=("lungs",),
        output_activation="sigmoid",
    )
    export_onnx(DarkIsLung(), d / "dark.onnx", card)
    (d / "ext.yaml").write_text(SUITE)
    (d / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return d


def _env() -> dict[str, str]:
    paths = [str(HERE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "robusttest", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _sensitivity_by_hand() -> dict[str, float]:
    from robusttest.data import open_dataset

    ds = open_dataset("phantom", None, n=6, size=64, seed=0, task="segmentation")
    out = {}
    for rec in ds.records:
        s = ds.load(rec)
        truth = np.asarray(s.masks["lungs"], dtype=bool)  # type: ignore[index]
        pred = s.image < 0.5
        out[s.image_id] = float(np.sum(pred & truth) / np.sum(truth))
    return out


def _csv_matches(path: Path, results: dict[str, object]) -> None:
    rows = list(csv.DictReader(path.open()))
    cases = {c["case_id"]: c for c in results["cases"]}  # type: ignore[attr-defined]
    assert [r["case_id"] for r in rows] == list(cases)
    for r in rows:
        assert float(r["noisy"]) == cases[r["case_id"]]["noisy"]
        assert r["verdict"] == cases[r["case_id"]]["verdict"]


def test_the_schema_lists_the_extension_metric(project: Path) -> None:
    done = _cli(project, "suite", "schema")
    assert done.returncode == 0, done.stderr
    assert '"sensitivity"' in done.stdout
    # without the extension on the path, the same suite is refused naming what is known
    plain = subprocess.run(
        [sys.executable, "-m", "robusttest", "suite", "show", "ext.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 2 and "sensitivity" in plain.stderr
    assert "Traceback" not in plain.stderr


def test_robusttest_run_computes_the_metric_and_writes_the_format(project: Path) -> None:
    done = _cli(
        project, "run", "dark.onnx", "--suite", "ext.yaml", "--no-cache",
        "--json", "run.json", "--report", "csv=run.csv",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((project / "run.json").read_text())
    want = _sensitivity_by_hand()
    clean = {r["image_id"]: r for r in results["records"] if r["condition"] == "clean"}
    assert sorted(clean) == sorted(want)
    for image_id, value in want.items():
        assert clean[image_id]["values"]["sensitivity/lungs"] == pytest.approx(value, abs=1e-12)
    case = next(c for c in results["cases"] if c["case_id"] == "lungs-sensitivity[clean]")
    assert case["clean"] == pytest.approx(np.mean(list(want.values())), abs=1e-12)
    _csv_matches(project / "run.csv", results)


def test_pytest_model_uses_both(project: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--model=dark.onnx", "--suite=ext.yaml",
            "--robust-no-cache", "--robust-json=py.json", "--robust-report=csv=py.csv", "-q",
            "-p", "no:randomly", "-p", "no:xdist",
        ],
        cwd=project,
        env={**_env(), "PYTEST_ADDOPTS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CSV report:" in done.stdout
    results = json.loads((project / "py.json").read_text())
    ids = {c["case_id"] for c in results["cases"]}
    assert {"lungs-sensitivity[clean]", "lungs-sensitivity[gaussian-sigma0.1]"} <= ids
    _csv_matches(project / "py.csv", results)

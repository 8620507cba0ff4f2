"""The replication document's failure frontiers: its sentences and rows are the runs'."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from report_factory import make_result

from robusttest.results import FrontierResult, RunResult
from robusttest.zoo import replication as R

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "models"


def _front(**kw: object) -> FrontierResult:
    base: dict[str, object] = {
        "frontier_id": "lungs-dice[gaussian-frontier]",
        "suite": "paper-2509.25265",
        "metric": "dice",
        "target": "lungs",
        "noise": "gaussian",
        "level_param": "sigma",
        "higher_is_worse": True,
        "gate": "min",
        "limit": 0.9,
        "on": "ci",
        "level": 0.1234,
        "estimate": 0.135,
        "ci_low": 0.1234,
        "ci_high": 0.146,
        "reached": True,
        "evaluations": 3,
        "search_range": (0.0, 1.0),
        "points": (),
        "verdict": "no-gate",
        "message": "",
    }
    base.update(kw)
    return FrontierResult(**base)


def test_frontier_section_sentences_and_rows(tmp_path: Path) -> None:
    dose = _front(
        frontier_id="lungs-dice[quantum-frontier]",
        noise="quantum",
        level_param="dose",
        higher_is_worse=False,
        gate="max_drop",
        limit=0.1,
        level=2e-5,
        estimate=1.5e-5,
        ci_low=1e-5,
        ci_high=2e-5,
        search_range=(1.0, 1e-7),
        reference_uGy=2.5,
        dose_uGy=5e-5,
        ci_low_uGy=2.5e-5,
        ci_high_uGy=5e-5,
    )
    held = _front(
        frontier_id="lungs-dice[poisson-frontier]",
        noise="poisson",
        level_param="rate",
        higher_is_worse=False,
        reached=False,
        level=None,
        estimate=None,
        ci_low=None,
        ci_high=None,
        search_range=(1e4, 0.1),
    )
    run = dataclasses.replace(make_result(), frontiers=(_front(), dose, held))
    lines = R.frontier_section({"unet": run})
    text = "\n".join(lines)
    assert lines[0] == "## Failure frontiers"
    assert (
        "- unet holds Dice ≥ 0.9 under `gaussian` up to σ = 0.123 "
        "[95% CI of the crossing 0.123, 0.146]." in text
    )
    assert (
        "- unet keeps its Dice drop ≤ 0.1 under `quantum` up to dose = 0.00002 "
        "[95% CI of the crossing 0.00001, 0.00002], i.e. 0.00005 µGy detector air kerma "
        "[0.000025, 0.00005] (full dose 2.5 µGy)." in text
    )
    assert "under `poisson` over the whole range searched (to rate = 0.1)." in text
    assert (
        "| unet | lungs-dice[gaussian-frontier] | min 0.9 (on ci) | sigma 0.123 | "
        "0.135 [0.123, 0.146] | – | 3 |" in text
    )
    assert R.frontier_section({"unet": make_result()}) == []  # no frontiers, no section
    curves = R.plot_curves({"unet": run}, tmp_path / "img" / "c.png")
    doc = R.write_doc({"unet": run}, {}, tmp_path / "replication.md", curves).read_text()
    assert "## Failure frontiers" in doc


@pytest.mark.realdata
@pytest.mark.slow
def test_zoo_replicate_with_frontiers_on_a_tiny_zoo(shared_data: Path, tmp_path: Path) -> None:
    """`robusttest zoo replicate --frontier` on a one-model zoo (the lung fixture)."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(FIXTURES / "lungs_tinyunet.onnx", zoo)
    from robusttest.cli import main

    doc = tmp_path / "docs" / "replication.md"
    args = ["zoo", "replicate", "--zoo", str(zoo), "--data", str(shared_data)]
    args += ["--runs", str(tmp_path / "runs"), "--doc", str(doc), "--frontier"]
    assert main([*args, "--limit", "6", "--repeats", "1", "--device", "cpu"]) == 0
    saved = json.loads((tmp_path / "runs" / "lungs_tinyunet.json").read_text())
    fronts = RunResult.from_dict(saved).frontiers
    # the headline case (Dice of the lungs) under each family of the paper's grid
    assert [f.frontier_id for f in fronts] == [
        "lungs-dice[gaussian-frontier]",
        "lungs-dice[poisson-frontier]",
        "lungs-dice[quantum-frontier]",
    ]
    text = doc.read_text()
    for f in fronts:
        assert R.frontier_sentence("lungs_tinyunet", f) in text
        assert f.evaluations <= 8

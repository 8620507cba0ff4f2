"""Issue 14, point 2: every target the suite or the model card names is matched in the data,
or a configuration error names it and the closest names present; a target only the model
(or only the data) has is listed as not evaluated in every report, never silently absent."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import robusttest
import robusttest.cli as cli
from robusttest.engine.loading import close_names
from robusttest.errors import ConfigError
from robusttest.phantom import FINDINGS, generate_case
from robusttest.report import render_html, summary_line
from robusttest.report.junit import JUnitRenderer

MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "findings_tinycnn.onnx"
assert FINDINGS == ("effusion", "pneumothorax", "nodule", "cardiomegaly", "consolidation")


def _manifest(folder: Path, rename: dict[str, str], n: int = 12) -> Path:
    """Phantom radiographs and their findings as a manifest CSV, label columns renamed."""
    rows = []
    for i in range(n):
        case = generate_case(7, i, size=64)
        name = f"img{i:02d}.png"
        Image.fromarray((np.clip(case.image, 0, 1) * 65535).astype(np.uint16)).save(folder / name)
        labels = {rename.get(k, k): v for k, v in case.labels.items()}
        rows.append({"image": name, "patient_id": f"p{i // 2}", **labels})
    path = folder / "labels.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _suite(folder: Path, csv_path: Path, targets: str = "") -> Path:
    path = folder / "suite.yaml"
    path.write_text(
        f"""\
name: manifest-findings
task: classification
data: {{adapter: manifest, root: {csv_path}}}
noise:
  quantum: {{dose: [0.1]}}
repeats: 1
metrics: [auroc]
{targets}
bootstrap: {{resamples: 100}}
gates:
  default: {{max_drop: 0.5}}
"""
    )
    return path


KW = {"cache": False, "progress": False, "gallery": 0}


@pytest.mark.parametrize("typo", ["effusoin", "Effusion", "effusion_", "efusion"])
def test_targets_misspelled_label_is_an_error_naming_the_closest(tmp_path: Path, typo: str) -> None:
    suite = _suite(tmp_path, _manifest(tmp_path, {"effusion": typo}))
    with pytest.raises(ConfigError) as exc:
        robusttest.run(MODEL, suite, **KW)
    msg = str(exc.value)
    assert f"label 'effusion' is not in dataset 'manifest', which has '{typo}'" in msg
    assert "\n" not in msg and "`targets:`" in msg


def test_targets_named_by_the_suite_must_be_in_the_data(tmp_path: Path) -> None:
    csv_path = _manifest(tmp_path, {"effusion": "effusoin"})
    suite = _suite(tmp_path, csv_path, targets="targets: [effusion, nodule]")
    with pytest.raises(ConfigError, match=r"target 'effusion' is not a label of dataset "
                       r"'manifest' \(closest: 'effusoin'\)"):  # fmt: skip
        robusttest.run(MODEL, suite, **KW)
    # the suite may leave the misspelt one out on purpose: then it is listed, not an error
    ok = robusttest.run(MODEL, _suite(tmp_path, csv_path, targets="targets: [nodule]"), **KW)
    assert {c.target for c in ok.cases} == {"nodule"}
    assert ("manifest-findings", "pneumothorax", "not among the suite's targets") in (
        ok.not_evaluated()
    )
    pairwise = "targets: [nodule]\npairwise: [[pneumothorax, effusion]]"
    with pytest.raises(ConfigError, match=r"pairwise label 'effusion' .* the data has no "
                       r"'effusion' \(closest: 'effusoin'\)"):  # fmt: skip
        robusttest.run(MODEL, _suite(tmp_path, csv_path, targets=pairwise), **KW)


def test_targets_only_one_side_has_are_listed_in_every_report(tmp_path: Path) -> None:
    # the data has no effusion at all (nothing close to it), and a label the model lacks
    csv_path = _manifest(tmp_path, {"effusion": "pleural_fluid"})
    result = robusttest.run(MODEL, _suite(tmp_path, csv_path), **KW)
    assert {c.target for c in result.cases} == {"pneumothorax", "nodule", "cardiomegaly",
                                                 "consolidation"}  # fmt: skip
    missing = [
        {"target": "effusion", "reason": "a label of the model that the data does not have"},
        {"target": "pleural_fluid", "reason": "a label of the data that the model does not have"},
    ]
    # JSON
    doc = json.loads(result.to_json())
    assert doc["provenance"]["not_evaluated"] == missing
    # summary line (pytest's terminal summary and `robusttest run`)
    assert summary_line(result).endswith("; not evaluated: effusion, pleural_fluid")
    # HTML: the coverage section
    html = render_html(result, rendered_at="2025-01-01T00:00:00Z")
    section = html.split('<section id="coverage">')[1].split("</section>")[0]
    assert "effusion not evaluated: a label of the model that the data does not have" in section
    assert "pleural_fluid not evaluated" in section
    # JUnit: testsuite properties
    root = ET.fromstring(JUnitRenderer().render(result, rendered_at="x").split("\n", 1)[1])
    props = [(p.get("name"), p.get("value")) for p in root.iter("property")]
    assert ("coverage", "manifest-findings: effusion not evaluated: a label of the model that "
            "the data does not have") in props  # fmt: skip
    # and the CLI fails with one line on the misspelling
    csv2 = _manifest(tmp_path, {"effusion": "effusoin"})
    assert cli.main(["run", str(MODEL), "--suite", str(_suite(tmp_path, csv2)), "--no-cache"]) == 2


def test_targets_close_names() -> None:
    assert close_names("effusion", ["effusoin", "nodule"]) == ["effusoin"]
    assert close_names("Pleural_Thickening", ["pleural thickening"]) == ["pleural thickening"]
    # different findings that share a stem are not misspellings of each other
    assert close_names("pneumonia", ["pneumothorax", "mass"]) == []
    assert close_names("nodule", ["module_x", "mass"]) == []

"""``robusttest zoo ...``: behind the zoo extra, and still writing the replication doc."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_factory import make_result

from robusttest.cli import main
from robusttest.errors import RobustTestError

_real_find_spec = importlib.util.find_spec


def _without(*hidden: str) -> Callable[..., Any]:
    """importlib.util.find_spec as if ``hidden`` were not installed."""

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name in hidden else _real_find_spec(name, package)

    return find_spec


def _doc_only_args(tmp_path: Path) -> list[str]:
    runs = tmp_path / "runs"
    runs.mkdir()
    make_result().write_json(runs / "unet.json")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "metrics.json").write_text(
        json.dumps(
            {
                "unet": {
                    "config": {"task": "segmentation", "epochs": 6},
                    "datasets": ["montgomery", "shenzhen"],
                    "train_images": 358,
                    "test": {"dice/lungs": {"mean": 0.95, "ci_low": 0.94, "ci_high": 0.96}},
                }
            }
        )
    )
    doc = tmp_path / "docs" / "replication.md"
    return [
        "zoo",
        "replicate",
        "--doc-only",
        "--runs",
        str(runs),
        "--zoo",
        str(zoo),
        "--doc",
        str(doc),
    ]


@pytest.mark.parametrize(
    ("hidden", "named"),
    [
        (("timm", "segmentation_models_pytorch"), "timm, segmentation-models-pytorch, which are"),
        (("segmentation_models_pytorch",), "segmentation-models-pytorch, which is"),
    ],
)
def test_zoo_without_the_extra_says_which_extra_to_install(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hidden: tuple[str, ...],
    named: str,
) -> None:
    argv = _doc_only_args(tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", _without(*hidden))
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        f"robusttest: error: robusttest zoo replicate needs {named} not installed; "
        "install the zoo extra: pip install 'robusttest[zoo]'"
    ]
    assert not (tmp_path / "docs").exists()  # refused before doing anything


def test_build_zoo_model_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from robusttest.zoo.nets import build_zoo_model

    monkeypatch.setattr(importlib.util, "find_spec", _without("timm"))
    with pytest.raises(RobustTestError, match=r"pip install 'robusttest\[zoo\]'"):
        build_zoo_model("resnet18", "classification", 2)


def test_replicate_doc_only_rewrites_the_doc_from_saved_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(_doc_only_args(tmp_path))
    assert rc == 0, capsys.readouterr().err
    doc = tmp_path / "docs" / "replication.md"
    text = doc.read_text()
    assert "| unet | segmentation | montgomery, shenzhen | 358 | 6 |" in text
    assert (tmp_path / "docs" / "img" / "replication_curves.png").stat().st_size > 1000
    assert capsys.readouterr().out.startswith(f"wrote {doc}")


def test_a_missing_dicom_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    from robusttest.errors import RobustTestError
    from robusttest.imageio import read_image

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pydicom" else real(name, *a)
    )
    f = tmp_path / "x.dcm"
    f.write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(
        RobustTestError, match=r"x.dcm: reading DICOM needs pydicom.*robusttest\[dicom\]"
    ):
        read_image(f)

"""Fixtures of the reliability catalogue: a tiny model, a project folder, fault hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import INI, SIZE, Project

from robusttest import faults


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 32² two-level UNet (segmentation, lungs) and the same with NaN outputs."""
    import torch

    from robusttest.models import ModelCard, export_onnx
    from robusttest.zoo.nets import TinyUNet

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    unet = TinyUNet(base=4, depth=2)
    card = ModelCard(
        task="segmentation",
        input_size=(SIZE, SIZE),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        structures=("lungs",),
        output_activation="sigmoid",
    )
    out = {"seg": export_onnx(unet, root / "seg.onnx", card)}
    with torch.no_grad():
        unet.head.bias.fill_(float("nan"))
    out["nan"] = export_onnx(unet, root / "nan.onnx", card)
    _warm_up(out["seg"], root)
    return out


def _warm_up(model: Path, folder: Path) -> None:
    """Import, in this process, what an evaluation imports (in-process pytester runs drop
    the modules they imported; torch and scipy do not survive a second import)."""
    import robusttest.engine as engine
    import robusttest.report  # noqa: F401

    p = Project(folder / "warm", model)
    p.add_good(1)
    engine.run(model, p.write(), limit=1, cache=False, progress=False, gallery=0)


@pytest.fixture
def project(tmp_path: Path, tiny_models: dict[str, Path]) -> Project:
    """An empty project with the tiny model; tests add images and write it."""
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, tiny_models["seg"])


@pytest.fixture
def pytester_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # No armed fault, no outer xdist identity; a fault armed by a test counts from zero.
    for var in (faults.ENV, "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    faults.reset()

"""Fixtures for the plugin tests: tiny untrained models and a pytester project folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import INI, Models, suite_yaml


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import torch

    from robusttest.models import ModelCard, export_onnx
    from robusttest.phantom import FINDINGS
    from robusttest.zoo.nets import TinyCNN, TinyUNet

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    unet = TinyUNet(base=4, depth=2)
    with torch.no_grad():
        # Zero head bias: about a third of the lung pixels come out positive, so Dice is
        # neither 0 nor 1 and moves a little with noise (numbers worth comparing).
        unet.head.bias.zero_()
    seg_card = ModelCard(
        task="segmentation",
        input_size=(64, 64),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        structures=("lungs",),
        output_activation="sigmoid",
    )
    export_onnx(unet, root / "seg.onnx", seg_card)
    export_onnx(unet, root / "seg2.onnx", seg_card)
    with torch.no_grad():
        unet.head.bias.fill_(float("nan"))
    export_onnx(unet, root / "nan.onnx", seg_card)
    cls_card = ModelCard(
        task="classification",
        input_size=(64, 64),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        labels=tuple(FINDINGS),
        output_activation="sigmoid",
    )
    export_onnx(TinyCNN(num_classes=len(FINDINGS), base=4), root / "cls.onnx", cls_card)
    _warm_up(root / "seg.onnx", root)
    return Models(
        seg=root / "seg.onnx", seg2=root / "seg2.onnx", cls=root / "cls.onnx", nan=root / "nan.onnx"
    )


def _warm_up(model: Path, folder: Path) -> None:
    """Import, in this process, everything an evaluation imports.

    In-process pytester runs drop the modules they imported when they end; torch and
    scipy do not survive being imported a second time, so import them here first.
    """
    import robusttest.engine as engine

    suite = folder / "warm.yaml"
    suite.write_text(suite_yaml())
    engine.run(model, suite, limit=1, cache=False, progress=False)
    import robusttest.results
    import robusttest.suite  # noqa: F401


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An otherwise empty folder with an ini file (fixes the rootdir) and tiny.yaml."""
    pytester.makeini(INI)
    pytester.makefile(".yaml", tiny=suite_yaml())
    return pytester


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inner runs must not inherit the outer run's xdist worker identity or a CI width.
    # CI and BUILD_NUMBER change how pytest prints its short summary.
    for var in (
        "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_WORKER_COUNT",
        "PYTEST_ADDOPTS",
        "CI",
        "BUILD_NUMBER",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "120")

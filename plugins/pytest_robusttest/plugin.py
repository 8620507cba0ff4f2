"""pytest entry point: adds the robusttest option group."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("robusttest", "robusttest: robustness of chest X-ray models to noise")
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="model file to evaluate (.onnx, TorchScript .pt, torch.export .pt2); repeatable",
    )

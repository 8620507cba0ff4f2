"""Shared test fixtures: where the public chest X-ray corpus lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """ROBUSTTEST_DATA, else ../shared/data beside the repository; None when absent."""
    env = os.environ.get("ROBUSTTEST_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("public chest X-ray corpus not found: set ROBUSTTEST_DATA to its folder")
    return root

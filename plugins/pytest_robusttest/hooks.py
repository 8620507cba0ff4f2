"""Hooks the robusttest plugin adds (implement them in a conftest.py or a plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from robusttest.results import RunResult


def pytest_robusttest_evaluated(
    config: pytest.Config, model: Path, suite: str, result: RunResult
) -> None:
    """Called once per (model, suite) right after it was evaluated, in the process that
    merged its shards (the xdist controller under ``-n``; never on workers, which run
    shards and read the saved result). E.g. to upload the result or to count
    evaluations."""

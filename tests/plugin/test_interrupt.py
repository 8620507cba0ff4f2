"""Ctrl-C during the evaluation: pytest stops, and the reports still say what finished."""

from __future__ import annotations

import json

import pytest
from plugin_helpers import Models, small

# Interrupt the evaluation at its second batch (batch size 2: images 1–2 finish first).
INTERRUPT_CONFTEST = """
import robusttest.engine.evaluation as E

_orig = E._Work.emit
_batches = []

def _interrupting(self, item, scored):
    # Ctrl-C as the second batch's first records leave (records leave in batch order)
    if self not in _batches:
        _batches.append(self)
    if len(_batches) > 1:
        raise KeyboardInterrupt
    yield from _orig(self, item, scored)

E._Work.emit = _interrupting
"""


def test_ctrl_c_writes_an_incomplete_report(project: pytest.Pytester, models: Models) -> None:
    project.makeconftest(INTERRUPT_CONFTEST)
    # A subprocess: the conftest patches robusttest.engine, which an in-process run would
    # leave patched for every later test in this process.
    result = project.runpytest_subprocess(
        *small(models.seg, "--robust-batch-size=2", "--robust-no-cache"),
        "--robust-json=r.json",
        "--robust-html=r.html",
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((project.path / "r.json").read_text())
    assert doc["completed"] is False
    assert doc["run"]["error"] == "interrupted"
    assert sorted({r["image_id"] for r in doc["records"]}) == [
        "phantom-0-00000",
        "phantom-0-00001",
    ]
    assert all(c["n"] == 2 for c in doc["cases"])
    html = (project.path / "r.html").read_text()
    assert "INCOMPLETE" in html.upper()

"""A tiny third-party extension of robusttest, "installed" through its dist-info folder
beside it: one metric (sensitivity) and one report format (csv), both registered by entry
points only (no conftest.py, no import by the user)."""

from __future__ import annotations

import csv
import io

import numpy as np

from robusttest.metrics import SegmentationBatch, SegmentationMetric
from robusttest.report import Renderer
from robusttest.results import RunResult


class Sensitivity(SegmentationMetric):
    name = "sensitivity"
    description = "true-positive fraction |P∩T|/|T| (1 when both are empty)"

    def values(self, batch: SegmentationBatch) -> np.ndarray:
        t = batch.n_true.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(t > 0, batch.inter / t, np.where(batch.n_pred > 0, 0.0, 1.0))
        return np.asarray(out, dtype=np.float64)


class CsvRenderer(Renderer):
    name = "csv"
    suffix = ".csv"
    description = "one row per case"

    def render(self, result: RunResult, *, rendered_at: str) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["case_id", "metric", "clean", "noisy", "drop", "verdict"])
        for c in result.cases:
            w.writerow([c.case_id, c.metric, repr(c.clean), repr(c.noisy), repr(c.drop), c.verdict])
        return buf.getvalue()

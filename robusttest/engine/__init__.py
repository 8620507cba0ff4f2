"""The engine: runs a suite (data → noise → model → per-image metrics → statistics).

One job per module:

- ``loading``: card → suite → model (loaded once) → data, and the plan of the grid;
- ``evaluation``: work items (batch × condition × repeat) and the CPU lanes that run them;
- ``summary``: per-case paired statistics and verdicts;
- ``gallery``: the report's thumbnails;
- ``pipeline``: ``evaluate`` and ``run``, end to end, with provenance.
"""

from __future__ import annotations

from robusttest.engine.evaluation import LANE_MAX_PIXELS, EngineOptions, Evaluator
from robusttest.engine.gallery import make_gallery
from robusttest.engine.loading import (
    TaskPlan,
    load_model_and_suite,
    open_suite_data,
    plan_cases,
    plan_task,
    prepare,
    resolve_suite,
)
from robusttest.engine.pipeline import evaluate, package_versions, run
from robusttest.engine.summary import summarise

__all__ = [
    "LANE_MAX_PIXELS",
    "EngineOptions",
    "Evaluator",
    "TaskPlan",
    "evaluate",
    "load_model_and_suite",
    "make_gallery",
    "open_suite_data",
    "package_versions",
    "plan_cases",
    "plan_task",
    "prepare",
    "resolve_suite",
    "run",
    "summarise",
]

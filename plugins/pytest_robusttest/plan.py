"""The plan of a pytest session: which model × suite pairs, and the cases each yields.

Plain data, JSON-able, so the xdist controller hands it to its workers as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAYLOAD_KEY = "robusttest"  # in node.workerinput
PAYLOAD_VERSION = 2
CLEAN = "clean"


class EvaluationError(Exception):
    """Evaluating one model × suite failed; every item of it reports this message."""


@dataclass(frozen=True)
class PlannedCase:
    """One grid cell as collected (before evaluation): what an item needs to exist."""

    case_id: str
    metric: str
    target: str  # the structure or label the case scores
    condition: str
    noise: str | None  # the noise family; None for the clean baseline
    frontier: bool = False  # the family's failure frontier (RunResult.frontiers), not a case

    @property
    def family(self) -> str:
        return self.noise or CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "metric": self.metric,
            "target": self.target,
            "condition": self.condition,
            "noise": self.noise,
            "frontier": self.frontier,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlannedCase:
        return cls(
            case_id=str(d["case_id"]),
            metric=str(d["metric"]),
            target=str(d["target"]),
            condition=str(d["condition"]),
            noise=None if d["noise"] is None else str(d["noise"]),
            frontier=bool(d.get("frontier", False)),
        )


@dataclass(frozen=True)
class ModelSuite:
    """One model evaluated under one suite, and the cases that yields."""

    key: str  # "t0", "t1", ... in plan order; names the exchange files
    model: Path
    label: str  # the model file's stem, unique within the session
    suite_name: str
    suite_source: str  # the suite file evaluated (built-in or user's)
    suite_file: Path | None  # the YAML test path this pair came from, if any
    cases: tuple[PlannedCase, ...]

    @property
    def suite_ref(self) -> str:
        """What loads this suite again (a worker evaluating without the controller)."""
        return str(self.suite_file) if self.suite_file is not None else self.suite_source

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model": str(self.model),
            "label": self.label,
            "suite_name": self.suite_name,
            "suite_source": self.suite_source,
            "suite_file": None if self.suite_file is None else str(self.suite_file),
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSuite:
        return cls(
            key=str(d["key"]),
            model=Path(d["model"]),
            label=str(d["label"]),
            suite_name=str(d["suite_name"]),
            suite_source=str(d["suite_source"]),
            suite_file=None if d["suite_file"] is None else Path(d["suite_file"]),
            cases=tuple(PlannedCase.from_dict(c) for c in d["cases"]),
        )

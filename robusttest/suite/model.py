"""The validated suite: frozen objects, the grid of cases, the canonical form and its hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from robusttest.errors import SuiteError
from robusttest.gates import CLEAN, GateSpec, GateTable
from robusttest.metrics import Task
from robusttest.noise import NoiseSpec
from robusttest.suite.grammar import REPEATS, SEED
from robusttest.suite.rules import Invalid


@dataclass(frozen=True)
class DataConfig:
    adapter: str
    root: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    on_bad_image: Literal["error", "skip"] = "error"
    max_pixels: int | None = None  # None: robusttest.imageio.DEFAULT_MAX_PIXELS
    bit_depth: int | None = None  # None: from each file


@dataclass(frozen=True)
class CaseSpec:
    """One cell of the grid, before evaluation."""

    case_id: str
    metric: str
    target: str
    condition: str
    noise: NoiseSpec | None
    gate: GateSpec | None


@dataclass(frozen=True)
class Suite:
    name: str
    task: Task
    data: DataConfig
    noise: tuple[NoiseSpec, ...]
    metrics: tuple[str, ...]
    description: str = ""
    model: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None
    pairwise: tuple[tuple[str, str], ...] = ()
    repeats: int = 1
    seed: int = 0
    threshold: float = 0.5
    resamples: int = 1000
    ci: float = 0.95
    gates: GateTable = field(default_factory=GateTable)
    # family -> "model": noise added after resizing to the model's input (the convention
    # of most ML robustness papers) instead of at the image's native resolution
    noise_at: Mapping[str, str] = field(default_factory=dict)
    # failure frontiers the suite asks for: family -> None (every gated metric) or
    # {metric: the required level (min_level) or None}
    frontier: Mapping[str, Mapping[str, float | None] | None] = field(default_factory=dict)
    source: str = "<memory>"
    # where it came from, not what it is (so not hashed; provenance): the suites it extends
    # ("name (path)", nearest first) and each gate table entry's source (robusttest.suite.
    # layers: "metrics.dice.max_drop" -> "command line: --robust-gate dice.max_drop=0.1")
    extends: tuple[str, ...] = ()
    gate_sources: Mapping[str, str] = field(default_factory=dict)
    sha256: str = ""  # derived: recomputed on every construction (replace, with_overrides)

    def __post_init__(self) -> None:
        # A Suite may be built or changed (with_overrides, dataclasses.replace) after the
        # file was validated: keep the invariants the engine relies on, and keep the hash
        # in step with the definition it identifies (provenance).
        for key, rule in (("repeats", REPEATS), ("seed", SEED)):
            try:
                rule(getattr(self, key))
            except Invalid as exc:
                raise SuiteError(f"{self.source}: {key}: {exc.message}") from None
        self._check_frontier()
        object.__setattr__(self, "sha256", _suite_digest(self))

    def frontier_gate(self, metric: str, noise: str) -> GateSpec | None:
        """The gate a frontier of ``metric`` under ``noise`` crosses: the limits of the
        metric and of the family (a condition's own limits hold for that level only)."""
        return self.gates.for_case(metric, f"{noise}-frontier", noise)

    def _check_frontier(self) -> None:
        families = {n.name for n in self.noise}
        for fam, per in self.frontier.items():
            if fam not in families:
                raise SuiteError(f"{self.source}: frontier.{fam}: not a noise of this suite")
            metrics = list(self.metrics) if per is None else list(per)
            gated = [m for m in metrics if self.frontier_gate(m, fam) is not None]
            missing = [m for m in metrics if m not in gated]
            if per is not None and missing:
                m = missing[0]
                raise SuiteError(
                    f"{self.source}: frontier.{fam}.{m}: no gate limits {m} under {fam}, so "
                    f"there is no limit to cross; set one under gates: (metrics.{m}, or "
                    f"conditions.{fam}.{m})"
                )
            if not gated:
                raise SuiteError(
                    f"{self.source}: frontier.{fam}: no metric of this suite has a gate under "
                    f"{fam}, so there is no limit to cross; set one under gates:"
                )

    @property
    def conditions(self) -> list[str]:
        return [CLEAN] + [n.slug for n in self.noise]

    def noise_spec(self, condition: str) -> NoiseSpec | None:
        for n in self.noise:
            if n.slug == condition:
                return n
        return None

    def pairwise_names(self) -> list[str]:
        return [f"{a}-vs-{b}" for a, b in self.pairwise]

    def cases(self, targets: Sequence[str]) -> list[CaseSpec]:
        """The grid: for each target and metric, a clean baseline and every condition."""
        out = []
        for target in targets:
            for metric in self.metrics:
                for cond in self.conditions:
                    spec = self.noise_spec(cond)
                    gate = self.gates.for_case(metric, cond, spec.name if spec else None)
                    out.append(
                        CaseSpec(
                            case_id=f"{target}-{metric}[{cond}]",
                            metric=metric,
                            target=target,
                            condition=cond,
                            noise=spec,
                            gate=gate,
                        )
                    )
        return out

    def gate_source(self, metric: str, condition: str, noise: str | None) -> dict[str, str]:
        """Where each limit (and the judge mode, ``on``) of a case's gate came from."""
        return {
            key: self.gate_sources.get(path, "default")
            for key, path in self.gates.explain(metric, condition, noise).items()
        }

    def with_overrides(self, **kw: Any) -> Suite:
        """A copy with the given fields replaced (None = keep); __post_init__ re-hashes."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form (provenance; the hash is taken over it)."""
        return {
            "name": self.name,
            "task": self.task,
            "description": self.description,
            "data": {
                "adapter": self.data.adapter,
                "root": self.data.root,
                "options": dict(self.data.options),
                "limit": self.data.limit,
                "on_bad_image": self.data.on_bad_image,
                # only when set, so the hashes of suites without them stay as they were
                **{
                    k: v
                    for k, v in (
                        ("max_pixels", self.data.max_pixels),
                        ("bit_depth", self.data.bit_depth),
                    )
                    if v is not None
                },
            },
            "model": dict(self.model),
            "noise": [
                {
                    "noise": n.name,
                    "level": n.level,
                    "params": dict(n.params),
                    "at": self.noise_at.get(n.name, "native"),
                }
                for n in self.noise
            ],
            "metrics": list(self.metrics),
            "targets": list(self.targets) if self.targets is not None else None,
            "pairwise": [list(p) for p in self.pairwise],
            "repeats": self.repeats,
            "seed": self.seed,
            "threshold": self.threshold,
            "bootstrap": {"resamples": self.resamples, "ci": self.ci},
            "gates": self.gates.to_dict(),
            # only when set, so the hashes of suites without it stay as they were
            **({"frontier": _plain_frontier(self.frontier)} if self.frontier else {}),
            "source": self.source,
        }


def _plain_frontier(
    frontier: Mapping[str, Mapping[str, float | None] | None],
) -> dict[str, dict[str, float | None] | None]:
    return {f: None if per is None else dict(sorted(per.items())) for f, per in frontier.items()}


def _suite_digest(suite: Suite) -> str:
    blob = json.dumps({**suite.to_dict(), "source": None}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()

"""The one result model: per-image records, per-case summaries and provenance.

Every renderer (JUnit properties, JSON, HTML, the compare command) reads only this model,
so a report can be re-rendered from the saved JSON without the model or the data.

The JSON is deterministic: keys sorted, floats written by ``repr`` (shortest round-trip),
NaN written as ``null`` with the reason kept beside it. Wall-clock facts (start and end
times, durations, host) live in the separate ``run`` block, so two runs with the same seed
give byte-identical JSON once that block is dropped (``to_json(include_run=False)``).

A written file carries ``digest``: the sha256 of its canonical content (every key but
``digest`` itself, the ``run`` block included), checked whenever a file is read back
(``RunResult.read``): integrity against accidental or casual edits, not a signature (see
docs/guarantees.md). ``CaseResult.rejudge`` derives a case's verdict again from its numbers
and gate, so a reader can refuse a file whose verdicts do not follow from its numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from robusttest.errors import ConfigError
from robusttest.fsutil import atomic_write_text
from robusttest.gates import (
    CLEAN,
    FAILING,
    FLOOR,
    UNINFORMATIVE,
    VERDICTS,
    CaseVerdict,
    GateSpec,
    Verdict,
    judge_case,
    judge_floor,
    mark_uninformative,
)
from robusttest.stats import BootstrapResult, holm

# 2.1: digest, per-case relative-drop CI and test unit, provenance selection/not_evaluated;
# 2.2: the top-level `frontiers` list
SCHEMA_VERSION = "2.2"
DIGEST_ALGORITHM = "sha256"


def _num(x: float | None) -> float | None:
    """JSON-safe float: NaN/inf → None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _unnum(x: Any) -> float:
    return math.nan if x is None else float(x)


@dataclass(frozen=True)
class ImageRecord:
    """One image under one condition and repeat.

    ``values`` holds per-image metrics for segmentation (``"dice/lungs"``) and model
    scores for classification (``"score/Effusion"``); ``targets`` the ground-truth labels.
    """

    suite: str  # the suite's name
    image_id: str
    patient_id: str
    condition: str
    repeat: int
    values: Mapping[str, float]
    targets: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "image_id": self.image_id,
            "patient_id": self.patient_id,
            "condition": self.condition,
            "repeat": self.repeat,
            "values": {k: _num(v) for k, v in sorted(self.values.items())},
            "targets": dict(sorted(self.targets.items())),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageRecord:
        return cls(
            suite=str(d["suite"]),
            image_id=str(d["image_id"]),
            patient_id=str(d["patient_id"]),
            condition=str(d["condition"]),
            repeat=int(d["repeat"]),
            values={k: _unnum(v) for k, v in d["values"].items()},
            targets={k: int(v) for k, v in d.get("targets", {}).items()},
        )


@dataclass(frozen=True)
class CaseResult:
    """Summary of one (suite, metric, target, condition) cell of the grid."""

    case_id: str
    suite: str  # the suite's name
    metric: str
    target: str
    condition: str
    noise: str | None
    level: float | None
    severity: str | None
    higher_is_better: bool
    clean: float
    noisy: float
    drop: float  # oriented so that positive = worse
    ci_low: float  # CI of the drop
    ci_high: float
    noisy_ci_low: float  # CI of the noisy metric (for `min` gates)
    noisy_ci_high: float
    relative_drop: float
    p_value: float | None
    p_adjusted: float | None
    test: str | None  # "wilcoxon", "delong", None
    n: int
    n_patients: int
    repeats: int
    gate: GateSpec | None
    verdict: Verdict
    message: str
    reason: str | None = None  # why a value is NaN, when it is
    failed_limits: tuple[str, ...] = ()  # gate kinds that failed ("min", "max_drop", ...)
    # unit of clean/noisy/drop: "" for fractions, "mm" (HD95 with a known pixel spacing),
    # "px" (without), "mm or px" (mixed); None in results written before units were recorded
    unit: str | None = None
    relative_ci_low: float = math.nan  # CI of the relative drop (for max_relative_drop gates)
    relative_ci_high: float = math.nan
    test_unit: str | None = None  # what the paired test ranks: "patient" (means per patient)
    chance: float | None = None  # the metric's chance level (AUROC 0.5), if it has one

    @property
    def is_baseline(self) -> bool:
        return self.condition == CLEAN

    @property
    def uninformative(self) -> bool:
        """Its clean performance cannot carry a verdict (reported apart, or failed when the
        suite says ``gates.uninformative: fail``)."""
        return self.verdict == UNINFORMATIVE or FLOOR in self.failed_limits

    def rejudge(self, ci: float = 0.95) -> CaseVerdict:
        """The verdict that this case's numbers and gate give (``gates.judge_case``, as the
        engine judged it): a reader checks a saved verdict against it."""
        boot = BootstrapResult(
            estimate=self.drop,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            n=self.n,
            n_groups=self.n_patients,
            se=math.nan,
            clean=self.clean,
            noisy=self.noisy,
            noisy_ci_low=self.noisy_ci_low,
            noisy_ci_high=self.noisy_ci_high,
            relative=self.relative_drop,
            relative_ci_low=self.relative_ci_low,
            relative_ci_high=self.relative_ci_high,
            higher_is_better=self.higher_is_better,
            ci=ci,
            reason=self.reason,
        )
        return judge_case(
            self.gate, boot, metric=self.metric, target=self.target, condition=self.condition
        )

    def verdict_mismatch(
        self, ci: float = 0.95, *, floor_why: str | None = None, policy: str = "report"
    ) -> str | None:
        """None when the saved verdict (and failed limits) follow from the numbers and the
        gate; else what they give. ``error`` (evaluation failed) is taken as saved: it
        fails the run whatever the numbers say. ``floor_why``: why the clean case of this
        metric and target makes it uninformative (``gates.judge_floor``), if it does;
        ``policy``: the suite's ``gates.uninformative``."""
        if self.verdict == "error":
            return None
        again = self.rejudge(ci)
        if floor_why is not None:
            again = mark_uninformative(again, floor_why, policy)
        if again.verdict == self.verdict and tuple(again.failed) == tuple(self.failed_limits):
            return None
        failed = f" (failed: {', '.join(again.failed)})" if again.failed else ""
        return f"{again.verdict}{failed}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, GateSpec):
                v = v.to_dict()
            elif isinstance(v, float) or f.name in _FLOAT_FIELDS or f.name in _OPTIONAL_FLOATS:
                # always a JSON float: an int (or numpy scalar) here would not round-trip
                # byte-identically (1 -> 1.0) or not serialise at all (numpy.float32)
                v = _num(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CaseResult:
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.name == "gate":
                v = GateSpec.from_dict(v) if v is not None else None
            elif f.name in _FLOAT_FIELDS:
                v = _unnum(v)
            elif f.name == "test_unit":
                v = None if v is None else str(v)
            elif f.name == "failed_limits":
                v = tuple(v or ())
            kw[f.name] = v
        return cls(**kw)


_FLOAT_FIELDS = {
    "clean",
    "noisy",
    "drop",
    "ci_low",
    "ci_high",
    "noisy_ci_low",
    "noisy_ci_high",
    "relative_drop",
    "relative_ci_low",
    "relative_ci_high",
}
_OPTIONAL_FLOATS = {"level", "p_value", "p_adjusted"}  # None = not applicable


@dataclass(frozen=True)
class FrontierPoint:
    """One level the frontier search used: the gated quantity there and its gate."""

    level: float
    estimate: float  # the gated quantity's point estimate (noisy metric, drop, ...)
    bound: float  # what the gate compares (the CI's conservative bound, or the estimate)
    passed: bool
    source: str  # "clean" (the identity level), "ladder" (a suite condition), "search"

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": _num(self.level),
            "estimate": _num(self.estimate),
            "bound": _num(self.bound),
            "passed": self.passed,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FrontierPoint:
        return cls(
            level=_unnum(d["level"]),
            estimate=_unnum(d["estimate"]),
            bound=_unnum(d["bound"]),
            passed=bool(d["passed"]),
            source=str(d["source"]),
        )


@dataclass(frozen=True)
class FrontierResult:
    """The failure frontier of one gated (metric, target, noise family): the level at which
    the gate starts to fail, searched on the family's continuous axis.

    ``level``: where the gate (as the suite judges it: the CI's conservative bound, or the
    point) crosses its limit; ``estimate``: where the point estimate crosses it; ``ci_low``
    / ``ci_high``: the percentile CI of that crossing over the patient bootstrap (None: beyond
    the range searched). ``reached`` False: the gate holds over the whole range (``level``
    None). Levels in the family's unit (``level_param``); for ``quantum`` also in µGy of
    detector air kerma (``*_uGy``) when every image's pixel spacing was known.
    ``min_level``: the suite's requirement (``frontier:``), judged on the CI's end towards
    less noise (the estimate with ``on: point``).
    """

    frontier_id: str  # "lungs-dice[gaussian-frontier]"
    suite: str
    metric: str
    target: str
    noise: str
    level_param: str  # "sigma", "dose", "rate", "sigma_e"
    higher_is_worse: bool  # the family's direction: False when a smaller level is worse
    gate: str  # the gate kind that crosses first ("min", "max_drop", "max_relative_drop")
    limit: float
    on: str  # "ci" or "point", as the suite judges its gates
    level: float | None
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    reached: bool
    evaluations: int  # levels the search evaluated beyond the suite's own
    search_range: tuple[float, float]  # (mildest, most severe) level searched
    points: tuple[FrontierPoint, ...]
    verdict: Verdict
    message: str
    min_level: float | None = None
    ci: float = 0.95
    level_unit: str = ""  # the family's unit of the level ("" for fractions, σ, rates)
    log_axis: bool = False  # searched (and interpolated) on the level's logarithm
    reference_uGy: float | None = None  # quantum: the detector kerma of the full dose
    dose_uGy: float | None = None
    ci_low_uGy: float | None = None
    ci_high_uGy: float | None = None
    note: str | None = None

    @property
    def gated_end(self) -> float | None:
        """The CI's end towards less noise: what ``min_level`` is compared with."""
        return self.ci_low if self.higher_is_worse else self.ci_high

    def properties(self) -> dict[str, str]:
        """The numbers as strings, for JUnit <property> elements."""

        def s(x: float | None) -> str:
            return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))

        out = {
            "metric": self.metric,
            "target": self.target,
            "noise": self.noise,
            "frontier_level": s(self.level),
            "frontier_estimate": s(self.estimate),
            "frontier_ci_low": s(self.ci_low),
            "frontier_ci_high": s(self.ci_high),
            "frontier_reached": str(self.reached).lower(),
            "frontier_evaluations": str(self.evaluations),
            "level_param": self.level_param,
            "gate": f"{self.gate} {self.limit:g} (on {self.on})",
            "limit": s(self.limit),
            "min_level": s(self.min_level),
            "verdict": self.verdict,
        }
        if self.reference_uGy is not None:
            out["frontier_dose_uGy"] = s(self.dose_uGy)
            out["frontier_ci_low_uGy"] = s(self.ci_low_uGy)
            out["frontier_ci_high_uGy"] = s(self.ci_high_uGy)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "points":
                v = [p.to_dict() for p in v]
            elif f.name == "search_range":
                v = [_num(x) for x in v]
            elif isinstance(v, float) or f.name in _FRONTIER_FLOATS:
                v = _num(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FrontierResult:
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name == "points":
                v = tuple(FrontierPoint.from_dict(p) for p in v)
            elif f.name == "search_range":
                v = (_unnum(v[0]), _unnum(v[1]))
            elif f.name == "limit":
                v = _unnum(v)
            kw[f.name] = v
        return cls(**kw)


_FRONTIER_FLOATS = {
    "level",
    "estimate",
    "ci_low",
    "ci_high",
    "limit",
    "min_level",
    "ci",
    "reference_uGy",
    "dose_uGy",
    "ci_low_uGy",
    "ci_high_uGy",
}


@dataclass(frozen=True)
class GalleryItem:
    """Thumbnails for the HTML report, stored in the result so a re-render needs no data."""

    suite: str
    image_id: str
    condition: str
    kind: Literal["sample", "worst"]
    value: float | None  # the metric shown (e.g. Dice) for this image and condition
    image_png: str  # base64 PNG of the (noisy) image
    overlay_png: (
        str  # base64 PNG with the prediction (and truth) outlined, or "" for classification
    )
    caption: str

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["value"] = _num(self.value)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GalleryItem:
        kw = {f.name: d[f.name] for f in fields(cls)}
        kw["value"] = None if d["value"] is None else float(d["value"])
        return cls(**kw)


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced."""

    cases: tuple[CaseResult, ...]
    records: tuple[ImageRecord, ...]
    provenance: Mapping[str, Any]  # deterministic: model, suite, data, seeds, versions
    run: Mapping[str, Any] = field(default_factory=dict)  # wall clock: times, host, durations
    gallery: tuple[GalleryItem, ...] = ()
    completed: bool = True
    schema_version: str = SCHEMA_VERSION
    frontiers: tuple[FrontierResult, ...] = ()

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.verdict in FAILING]

    @property
    def failed_frontiers(self) -> list[FrontierResult]:
        return [f for f in self.frontiers if f.verdict in FAILING]

    @property
    def passed(self) -> bool:
        return self.completed and not self.failed and not self.failed_frontiers

    def frontier(self, frontier_id: str) -> FrontierResult:
        for f in self.frontiers:
            if f.frontier_id == frontier_id:
                return f
        raise KeyError(frontier_id)

    @property
    def uninformative(self) -> list[CaseResult]:
        return [c for c in self.cases if c.uninformative]

    def case(self, case_id: str) -> CaseResult:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(case_id)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for c in self.cases:
            out[c.verdict] += 1
        return out

    def with_run(self, **run: Any) -> RunResult:
        return replace(self, run={**self.run, **run})

    def incomplete(self, reason: str) -> RunResult:
        """This result marked incomplete, saying why (kept beside any earlier reason)."""
        before = self.run.get("error")
        why = reason if not before or before == reason else f"{before}; {reason}"
        return replace(self, completed=False, run={**self.run, "error": why})

    def incomplete_reasons(self) -> list[str]:
        """Why this result (or any evaluation merged into it) is incomplete."""
        runs = self.run.get("runs")
        blocks = [r for r in runs if isinstance(r, Mapping)] if isinstance(runs, list) else []
        found = [str(b["error"]) for b in [self.run, *blocks] if b.get("error")]
        if not self.completed and not found:
            found = ["interrupted"]
        return list(dict.fromkeys(found))

    # --- what the cases cover ------------------------------------------------------------
    def run_provenances(self) -> list[Mapping[str, Any]]:
        """The provenance of each evaluation in this result (several after ``merge``)."""
        runs = self.provenance.get("runs")
        if isinstance(runs, list) and set(self.provenance) == {"runs"}:
            return [r for r in runs if isinstance(r, Mapping)]
        return [self.provenance]

    def selections(self) -> list[tuple[str, Mapping[str, Any]]]:
        """(suite name, selection) per evaluation: which of the grid's cases it judged."""
        out = []
        for prov in self.run_provenances():
            sel = prov.get("selection")
            if isinstance(sel, Mapping):
                out.append((str(_get(prov, "suite", "name") or "?"), sel))
        return out

    def not_evaluated(self) -> list[tuple[str, str, str]]:
        """(suite name, target, why) for every name of the model or the data without a case."""
        out = []
        for prov in self.run_provenances():
            suite = str(_get(prov, "suite", "name") or "?")
            for entry in prov.get("not_evaluated") or []:
                if isinstance(entry, Mapping):
                    out.append((suite, str(entry.get("target")), str(entry.get("reason"))))
        return out

    def select(self, case_ids: Collection[str], by: str | None = None) -> RunResult:
        """Only the cases ``case_ids`` (of one evaluation), as if only they had been evaluated:
        their records and thumbnails (the clean ones and those of their conditions), p-values
        Holm-adjusted again across them, and the selection recorded in the provenance."""
        wanted = set(case_ids)
        if "runs" in self.provenance:
            raise ConfigError("select: works on the result of one evaluation, not a merged one")
        cases = [c for c in self.cases if c.case_id in wanted]
        idx = [i for i, c in enumerate(cases) if c.p_value is not None]
        if idx:
            adj = holm([float(cases[i].p_value or 0.0) for i in idx])
            for i, a in zip(idx, adj, strict=True):
                cases[i] = replace(cases[i], p_adjusted=float(a))
        conditions = {CLEAN, *(c.condition for c in cases)}
        sel = dict(self.provenance.get("selection") or {})
        ids = [c.case_id for c in cases]
        sel.update(n_selected=len(ids), cases=ids, by=by)
        return replace(
            self,
            cases=tuple(cases),
            records=tuple(r for r in self.records if r.condition in conditions),
            gallery=tuple(g for g in self.gallery if g.condition in conditions),
            provenance={**self.provenance, "selection": sel},
        )

    # --- JSON --------------------------------------------------------------------------------
    def to_dict(self, include_run: bool = True) -> dict[str, Any]:
        """The JSON document; with the run block it also carries its ``digest``."""
        d: dict[str, Any] = {
            "schema": "robusttest-results",
            "schema_version": self.schema_version,
            "completed": self.completed,
            "summary": self.counts(),
            "provenance": self.provenance,
            "cases": [c.to_dict() for c in self.cases],
            "records": [r.to_dict() for r in self.records],
            "gallery": [g.to_dict() for g in self.gallery],
            "frontiers": [f.to_dict() for f in self.frontiers],
        }
        if include_run:
            d["run"] = self.run
            d["digest"] = content_digest(d)
        return d

    def to_json(self, include_run: bool = True, indent: int | None = 1) -> str:
        """``include_run=False``: the deterministic part only (no run block, no digest):
        what two runs with the same seed share byte for byte."""
        return (
            json.dumps(self.to_dict(include_run), indent=indent, sort_keys=True, allow_nan=False)
            + "\n"
        )

    def write_json(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "results") -> RunResult:
        if not isinstance(d, Mapping) or d.get("schema") != "robusttest-results":
            raise ConfigError(f"{source}: not a robusttest results file (no 'schema' key)")
        ver = str(d.get("schema_version", ""))
        if ver.split(".")[0] == "1":
            d, ver = _upgrade_v1(d), SCHEMA_VERSION
        if ver.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ConfigError(
                f"{source}: schema_version {ver!r} is not readable by this robusttest "
                f"(reads {SCHEMA_VERSION}); re-run or use a matching robusttest version"
            )
        try:
            return cls(
                cases=tuple(CaseResult.from_dict(c) for c in d["cases"]),
                records=tuple(ImageRecord.from_dict(r) for r in d["records"]),
                provenance=d["provenance"],
                run=d.get("run", {}),
                gallery=tuple(GalleryItem.from_dict(g) for g in d.get("gallery", [])),
                completed=bool(d.get("completed", True)),
                schema_version=ver,
                # absent in results written before frontiers (schema 2.0)
                frontiers=tuple(FrontierResult.from_dict(f) for f in d.get("frontiers", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{source}: malformed results file ({exc!r})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "results", *, verify: bool = True) -> RunResult:
        """Parse a results file; ``verify``: check its digest first (see verify_digest)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        result = cls.from_dict(d, source)  # names a wrong schema or version first
        if verify:
            verify_digest(d, source)
        return result

    @classmethod
    def read(cls, path: str | Path, *, verify: bool = True) -> RunResult:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read results ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{p}: not a UTF-8 text file; expected a robusttest results JSON"
            ) from None
        return cls.from_json(text, str(p), verify=verify)

    def verdict_mismatches(self) -> list[str]:
        """One line per case whose saved verdict does not follow from its numbers and gate."""
        ci = {
            str(_get(p, "suite", "name")): _get(p, "suite", "definition", "bootstrap", "ci")
            for p in self.run_provenances()
        }
        gates = {
            str(_get(p, "suite", "name")): _get(p, "suite", "definition", "gates") or {}
            for p in self.run_provenances()
        }
        clean = {(c.suite, c.metric, c.target): c for c in self.cases if c.condition == CLEAN}
        out = []
        for c in self.cases:
            level = ci.get(c.suite)
            conf = float(level) if isinstance(level, (int, float)) else 0.95
            g = gates.get(c.suite) or {}
            floors = g.get("floor") or {}
            base = clean.get((c.suite, c.metric, c.target))
            why = None
            if base is not None:
                why = judge_floor(
                    base.clean,
                    base.noisy_ci_low,
                    base.noisy_ci_high,
                    metric=c.metric,
                    target=c.target,
                    higher_is_better=c.higher_is_better,
                    chance=c.chance,
                    floor=floors.get(c.metric),
                    ci=conf,
                )
            elif c.verdict == UNINFORMATIVE or FLOOR in c.failed_limits:
                continue  # its clean baseline was not selected: nothing here to re-judge it
            policy = str(g.get("uninformative") or "report")
            got = c.verdict_mismatch(conf, floor_why=why, policy=policy)
            if got is not None:
                out.append(
                    f"{c.case_id}: saved verdict {c.verdict!r}, its numbers and gate give {got}"
                )
        return out


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def content_digest(d: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``d`` without its ``digest`` key (keys
    sorted, no whitespace, UTF-8): the same for the dict written and the one read back."""
    body = {k: v for k, v in d.items() if k != "digest"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return f"{DIGEST_ALGORITHM}:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_digest(d: Mapping[str, Any], source: str = "results") -> None:
    """ConfigError unless ``d`` (a parsed results file) carries the digest of its content."""
    saved = d.get("digest")
    if not isinstance(saved, str):
        raise ConfigError(
            f"{source} has no digest, so it cannot be checked for edits (written by a "
            f"robusttest before schema {SCHEMA_VERSION}, or the digest was removed); re-run "
            "to get a results file robusttest can verify"
        )
    if saved != content_digest(d):
        raise ConfigError(
            f"{source} was modified after it was written (digest mismatch); re-run, or "
            "restore the file as robusttest wrote it"
        )


def _upgrade_v1(d: Mapping[str, Any]) -> dict[str, Any]:
    """Schema 1.x called a record's, case's and thumbnail's suite name ``task``."""

    def renamed(xs: Any) -> list[Any]:
        out = []
        for x in xs or []:
            x = dict(x)
            if "task" in x and "suite" not in x:
                x["suite"] = x.pop("task")
            out.append(x)
        return out

    return {
        **d,
        "cases": renamed(d.get("cases")),
        "records": renamed(d.get("records")),
        "gallery": renamed(d.get("gallery")),
    }


def merge(results: Iterable[RunResult]) -> RunResult:
    """Combine results of several models or shards (cases and records concatenated)."""
    rs = list(results)
    if not rs:
        raise ConfigError("merge: no results to merge")
    if len(rs) == 1:
        return rs[0]
    return RunResult(
        cases=tuple(c for r in rs for c in r.cases),
        records=tuple(x for r in rs for x in r.records),
        provenance={"runs": [r.provenance for r in rs]},
        run={"runs": [r.run for r in rs]},
        gallery=tuple(g for r in rs for g in r.gallery),
        completed=all(r.completed for r in rs),
        frontiers=tuple(f for r in rs for f in r.frontiers),
    )

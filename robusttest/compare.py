"""Compare two runs case by case: did the new model (or data, or code) get worse?

Cases are matched by ``(suite, case_id)``. For each pair the noisy metric of the base and
the new run is compared, the difference oriented so that positive means *the new run is
worse* (lower Dice, higher HD95). A regression is a worsening by more than ``tolerance``,
in the metric's own units; a metric that was defined before and is undefined now also
counts, since it hides whatever the number would have been.

The comparison is not OK when there is a regression, a gate that passed (or was ungated)
in the base and fails in the new run, or a case of the base that the new run lacks (a
dropped case could hide a regression). Cases only in the new run are reported, not failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from robusttest.errors import ConfigError
from robusttest.results import CaseResult, RunResult

Status = Literal["regression", "improved", "same", "undefined", "new-failure"]
_FAILING = ("fail", "error")


@dataclass(frozen=True)
class CaseDiff:
    """One case present in both runs."""

    suite: str
    case_id: str
    metric: str
    higher_is_better: bool
    base: float
    new: float
    delta: float  # positive = the new run is worse, metric units; NaN when undefined
    base_verdict: str
    new_verdict: str
    regression: bool
    new_failure: bool  # gate passed / was ungated in base, fails (or errors) in new

    @property
    def status(self) -> Status:
        if self.regression:
            return "regression"
        if self.new_failure:
            return "new-failure"
        if math.isnan(self.delta):
            return "undefined"
        if self.delta < 0:
            return "improved"
        return "same"

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "suite": self.suite,
            "case_id": self.case_id,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "base": num(self.base),
            "new": num(self.new),
            "delta": num(self.delta),
            "base_verdict": self.base_verdict,
            "new_verdict": self.new_verdict,
            "regression": self.regression,
            "new_failure": self.new_failure,
            "status": self.status,
        }


@dataclass(frozen=True)
class Comparison:
    tolerance: float
    cases: tuple[CaseDiff, ...]
    only_in_base: tuple[tuple[str, str], ...]  # (suite, case_id) the new run lacks
    only_in_new: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def regressions(self) -> list[CaseDiff]:
        return [c for c in self.cases if c.regression]

    @property
    def new_failures(self) -> list[CaseDiff]:
        return [c for c in self.cases if c.new_failure]

    @property
    def ok(self) -> bool:
        return not self.regressions and not self.new_failures and not self.only_in_base

    def summary(self) -> str:
        parts = [
            f"{len(self.cases)} cases compared",
            f"{len(self.regressions)} regression(s) beyond tolerance {self.tolerance:g}",
            f"{len(self.new_failures)} new gate failure(s)",
        ]
        if self.only_in_base:
            parts.append(f"{len(self.only_in_base)} missing in new")
        if self.only_in_new:
            parts.append(f"{len(self.only_in_new)} only in new")
        return ("OK: " if self.ok else "NOT OK: ") + ", ".join(parts)

    def format_text(self, *, all_cases: bool = True) -> str:
        """A fixed-width table, worst first; ``all_cases=False`` lists only problems."""
        rows = sorted(
            self.cases,
            # problems first; then by suite and metric (deltas of different metrics are in
            # different units, so they are only ranked within a metric), worst first
            key=lambda c: (
                c.status not in ("regression", "new-failure"),
                c.suite,
                c.metric,
                -(c.delta if math.isfinite(c.delta) else math.inf),
                c.case_id,
            ),
        )
        if not all_cases:
            rows = [c for c in rows if c.status in ("regression", "new-failure", "undefined")]
        head = ("status", "suite", "case", "base", "new", "worse by", "verdict")
        table: list[tuple[str, ...]] = [
            (
                c.status,
                c.suite,
                c.case_id,
                _f(c.base),
                _f(c.new),
                _f(c.delta, signed=True),
                f"{c.base_verdict} -> {c.new_verdict}",
            )
            for c in rows
        ]
        table += [("missing in new", t, cid, "", "", "", "") for t, cid in self.only_in_base]
        table += [("only in new", t, cid, "", "", "", "") for t, cid in self.only_in_new]
        widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
        right = {3, 4, 5}

        def line(r: tuple[str, ...]) -> str:
            cells = [
                v.rjust(w) if i in right else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        out = [line(head), line(tuple("-" * w for w in widths)), *(line(r) for r in table)]
        if not table:
            out.append("(no regressed, newly failing, undefined or missing cases)")
        out += [f"note: {n}" for n in self.notes]
        out.append(
            f"'worse by' is new vs base in metric units, positive = new is worse; "
            f"tolerance {self.tolerance:g}"
        )
        out.append(self.summary())
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "robusttest-comparison",
            "tolerance": self.tolerance,
            "ok": self.ok,
            "summary": self.summary(),
            "cases": [c.to_dict() for c in self.cases],
            "regressions": [[c.suite, c.case_id] for c in self.regressions],
            "new_failures": [[c.suite, c.case_id] for c in self.new_failures],
            "only_in_base": [list(k) for k in self.only_in_base],
            "only_in_new": [list(k) for k in self.only_in_new],
            "notes": list(self.notes),
        }


def _f(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def _diff(b: CaseResult, n: CaseResult, tolerance: float) -> CaseDiff:
    hib = b.higher_is_better
    bv, nv = b.noisy, n.noisy
    delta = (bv - nv) if hib else (nv - bv)
    if math.isfinite(delta):
        # A hair of slack so 0.93 -> 0.92 is "worse by 0.01", not by 0.010000000000000009.
        regression = delta > tolerance + 1e-9 * max(1.0, abs(bv), abs(nv))
    else:
        regression = math.isfinite(bv) and not math.isfinite(nv)
        delta = math.nan
    return CaseDiff(
        suite=b.suite,
        case_id=b.case_id,
        metric=b.metric,
        higher_is_better=hib,
        base=bv,
        new=nv,
        delta=delta,
        base_verdict=b.verdict,
        new_verdict=n.verdict,
        regression=regression,
        new_failure=n.verdict in _FAILING and b.verdict not in _FAILING,
    )


def _prov(r: RunResult, *path: str) -> Any:
    d: Any = r.provenance
    for k in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def compare(base: RunResult, new: RunResult, *, tolerance: float = 0.01) -> Comparison:
    """Case-by-case comparison of two results (see the module docstring for the rules)."""
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"tolerance {tolerance!r}: must be a finite number >= 0")
    b_cases = {(c.suite, c.case_id): c for c in base.cases}
    n_cases = {(c.suite, c.case_id): c for c in new.cases}
    diffs = []
    notes = []
    for key, b in b_cases.items():
        n = n_cases.get(key)
        if n is None:
            continue
        if n.higher_is_better != b.higher_is_better:
            notes.append(f"{key[0]}/{key[1]}: metric direction differs between runs")
        diffs.append(_diff(b, n, float(tolerance)))
    only_base = tuple(k for k in b_cases if k not in n_cases)
    only_new = tuple(k for k in n_cases if k not in b_cases)
    if not new.completed:
        notes.append("the new run is incomplete: its numbers cover only the finished images")
    if not base.completed:
        notes.append("the base run is incomplete: its numbers cover only the finished images")
    for what, path in (("data", ("data", "manifest_hash")), ("suite", ("suite", "sha256"))):
        bh, nh = _prov(base, *path), _prov(new, *path)
        if bh is not None and nh is not None and bh != nh:
            notes.append(
                f"{what} differs between runs ({str(bh)[:12]} vs {str(nh)[:12]}): "
                "differences mix model and evaluation changes"
            )
    return Comparison(
        tolerance=float(tolerance),
        cases=tuple(diffs),
        only_in_base=only_base,
        only_in_new=only_new,
        notes=tuple(notes),
    )

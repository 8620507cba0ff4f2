"""Compare two runs case by case: did the new model (or data, or code) get worse?

Cases are matched by ``(suite, case_id)``. For each pair the noisy metric of the base and
the new run is compared, the difference oriented so that positive means *the new run is
worse* (lower Dice, higher HD95). A regression is a worsening by more than ``tolerance``,
in the metric's own units; a metric that was defined before and is undefined now also
counts, since it hides whatever the number would have been.

The comparison is not OK when there is a regression, a gate that passed (or was ungated)
in the base and fails in the new run, or a case of the base that the new run lacks (a
dropped case could hide a regression). Cases only in the new run are reported, not failed.

Failure frontiers present in both runs are matched by ``(suite, frontier_id)``: one whose
crossing moved toward less noise beyond the base's CI (the new estimate below the base's
CI for σ, above it for a dose or a rate; or a frontier the base never reached reached now)
makes the comparison not OK. Frontiers in one run only are noted (``--frontier`` is a
choice of the run), not failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from robusttest.errors import ConfigError
from robusttest.results import CaseResult, FrontierResult, RunResult

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
class FrontierDiff:
    """One failure frontier present in both runs."""

    suite: str
    frontier_id: str
    level_param: str
    higher_is_worse: bool
    base: float | None  # the base's crossing (estimate); None: not reached
    base_ci: tuple[float | None, float | None]
    new: float | None
    moved: bool  # toward less noise beyond the base's CI

    @property
    def status(self) -> str:
        if self.moved:
            return "frontier-moved"
        if self.new is None and self.base is not None:
            return "improved"
        if self.new is not None and self.base is not None:
            worse = self.new < self.base if self.higher_is_worse else self.new > self.base
            return "same" if worse or self.new == self.base else "improved"
        return "same"

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "frontier_id": self.frontier_id,
            "level_param": self.level_param,
            "base": self.base,
            "base_ci": list(self.base_ci),
            "new": self.new,
            "moved": self.moved,
            "status": self.status,
        }


def _frontier_diff(b: FrontierResult, n: FrontierResult) -> FrontierDiff:
    base = b.estimate if b.reached else None
    new = n.estimate if n.reached else None
    if new is None:
        moved = False
    elif base is None:
        moved = not b.reached  # the base held over the whole range; now the gate fails in it
    else:
        end = b.gated_end  # the base CI's end towards less noise
        moved = end is not None and (new < end if b.higher_is_worse else new > end)
    return FrontierDiff(
        suite=b.suite,
        frontier_id=b.frontier_id,
        level_param=b.level_param,
        higher_is_worse=b.higher_is_worse,
        base=base,
        base_ci=(b.ci_low, b.ci_high),
        new=new,
        moved=moved,
    )


@dataclass(frozen=True)
class Comparison:
    tolerance: float
    cases: tuple[CaseDiff, ...]
    only_in_base: tuple[tuple[str, str], ...]  # (suite, case_id) the new run lacks
    only_in_new: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    frontiers: tuple[FrontierDiff, ...] = ()

    @property
    def frontiers_moved(self) -> list[FrontierDiff]:
        return [f for f in self.frontiers if f.moved]

    @property
    def regressions(self) -> list[CaseDiff]:
        return [c for c in self.cases if c.regression]

    @property
    def new_failures(self) -> list[CaseDiff]:
        return [c for c in self.cases if c.new_failure]

    @property
    def ok(self) -> bool:
        return (
            not self.regressions
            and not self.new_failures
            and not self.only_in_base
            and not self.frontiers_moved
        )

    def summary(self) -> str:
        parts = [
            f"{len(self.cases)} cases compared",
            f"{len(self.regressions)} regression(s) beyond tolerance {self.tolerance:g}",
            f"{len(self.new_failures)} new gate failure(s)",
        ]
        if self.frontiers:
            parts.append(
                f"{len(self.frontiers_moved)} of {len(self.frontiers)} frontier(s) moved "
                "toward less noise"
            )
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
        table += [
            (
                f.status,
                f.suite,
                f.frontier_id,
                _f(math.nan if f.base is None else f.base),
                _f(math.nan if f.new is None else f.new),
                "",
                f"{f.level_param} CI [{_f(_nan(f.base_ci[0]))}, {_f(_nan(f.base_ci[1]))}]",
            )
            for f in self.frontiers
            if all_cases or f.moved
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
            "frontiers": [f.to_dict() for f in self.frontiers],
            "frontiers_moved": [[f.suite, f.frontier_id] for f in self.frontiers_moved],
        }


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


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
    b_fronts = {(f.suite, f.frontier_id): f for f in base.frontiers}
    n_fronts = {(f.suite, f.frontier_id): f for f in new.frontiers}
    fronts = tuple(_frontier_diff(f, n_fronts[k]) for k, f in b_fronts.items() if k in n_fronts)
    one_side = len(set(b_fronts) ^ set(n_fronts))
    if one_side:
        notes.append(
            f"{one_side} failure frontier(s) in one run only (searched with --frontier or a "
            "suite's frontier:), not compared"
        )
    return Comparison(
        tolerance=float(tolerance),
        cases=tuple(diffs),
        only_in_base=only_base,
        only_in_new=only_new,
        notes=tuple(notes),
        frontiers=fronts,
    )

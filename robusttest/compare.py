"""Compare two runs case by case: did the new model (or data, or code) get worse?

Cases are matched by ``(suite, case_id)``. For each pair the noisy metric of the base and
the new run is compared, the difference oriented so that positive means *the new run is
worse* (lower Dice, higher HD95). A case regressed when all of these hold:

- it got worse by more than the metric's tolerance, in the metric's own unit: an absolute
  amount (Dice 0.01) or a fraction of the base value (HD95 10 %); defaults come from the
  metric registry (``Metric.compare_tolerance``), ``tolerances`` sets them per metric;
- the runs' confidence intervals say the change is beyond noise: the new run's CI of the
  noisy metric lies wholly on the worse side of the base run's (two runs of one model
  with different noise seeds differ by chance, within their CIs). Where a run has no CI
  (one patient), the tolerance alone decides, and a note says so;
- the case is gated in the new run; an ungated case (HD95 in the built-in suites) that
  got worse is reported as ``worse-ungated`` and fails only with ``fail_on_ungated``.

A metric that was defined before and is undefined now also counts, since it hides
whatever the number would have been. The comparison is not OK when there is a regression,
a gate that passed (or was ungated) in the base and fails in the new run, or a case of the
base that the new run lacks (a dropped case could hide a regression) unless the new run
selected a part of its grid on purpose (then the base's other cases are listed as not
selected). Cases only in the new run are reported, not failed.

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

Status = Literal[
    "regression", "new-failure", "worse-ungated", "within-noise", "undefined", "improved", "same"
]
_FAILING = ("fail", "error")
_PROBLEMS = ("regression", "new-failure", "undefined")


@dataclass(frozen=True)
class Tolerance:
    """How much worse a metric may get: ``value`` in its unit, or a fraction of the base
    value (``relative``)."""

    value: float
    relative: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ConfigError(f"tolerance {self.value!r}: must be a finite number >= 0")

    @classmethod
    def parse(cls, value: float | str | Tolerance) -> Tolerance:
        """``0.02`` (in the metric's unit) or ``"10%"`` (of the base value)."""
        if isinstance(value, Tolerance):
            return value
        text = str(value).strip()
        relative = text.endswith("%")
        try:
            number = float(text[:-1] if relative else text)
        except ValueError:
            raise ConfigError(
                f"tolerance {value!r}: not a number (e.g. 0.02, or 10% of the base value)"
            ) from None
        if isinstance(value, bool) or not math.isfinite(number) or number < 0:
            raise ConfigError(f"tolerance {value!r}: must be a finite number >= 0")
        return cls(number / 100 if relative else number, relative)

    def allowed(self, base: float) -> float:
        """The worsening allowed from ``base``, in the metric's unit."""
        return self.value * abs(base) if self.relative else self.value

    def describe(self, unit: str = "") -> str:
        if self.relative:
            return f"{self.value * 100:g}% of the base value"
        return f"{self.value:g}" + (f" {unit}" if unit else "")


def default_tolerance(metric: str) -> Tolerance:
    """The metric registry's ``compare_tolerance`` (0.01 for a metric that sets none)."""
    from robusttest.metrics import METRICS

    if metric in METRICS:
        return Tolerance.parse(getattr(METRICS.get(metric), "compare_tolerance", "0.01"))
    return Tolerance(0.01)


def parse_tolerance_option(text: str) -> tuple[str | None, Tolerance]:
    """``METRIC=VALUE`` (``hd95=2``, ``hd95=10%``) or a bare ``VALUE`` for every metric."""
    metric, sep, value = str(text).partition("=")
    if not sep:
        return None, Tolerance.parse(text)
    if not metric.strip() or not value.strip():
        raise ConfigError(f"tolerance {text!r}: expected METRIC=VALUE, e.g. hd95=2 or dice=0.02")
    return metric.strip(), Tolerance.parse(value)


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
    allowed: float = 0.0  # the tolerance for this case, in the metric's unit
    beyond_noise: bool | None = None  # the CIs do not overlap; None: a run has no CI
    gated: bool = True
    worse: bool = False  # beyond the tolerance and the noise (gated or not)

    @property
    def status(self) -> Status:
        if self.regression:
            return "regression"
        if self.new_failure:
            return "new-failure"
        if math.isnan(self.delta):
            return "undefined"
        if self.worse:
            return "worse-ungated"
        if self.delta > self.allowed:
            return "within-noise"
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
            "allowed": num(self.allowed),
            "beyond_noise": self.beyond_noise,
            "gated": self.gated,
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
    tolerances: Mapping[str, Tolerance]  # per metric compared
    cases: tuple[CaseDiff, ...]
    only_in_base: tuple[tuple[str, str], ...]  # (suite, case_id) the new run lacks
    only_in_new: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    not_selected: tuple[tuple[str, str], ...] = ()  # base cases the new run did not select
    fail_on_ungated: bool = False
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
    def worse_ungated(self) -> list[CaseDiff]:
        return [c for c in self.cases if c.status == "worse-ungated"]

    @property
    def ok(self) -> bool:
        return (
            not self.regressions
            and not self.new_failures
            and not self.only_in_base
            and not self.frontiers_moved
        )

    def tolerance_text(self) -> str:
        from robusttest.metrics import METRICS

        def unit(m: str) -> str:
            return getattr(METRICS.get(m), "unit", "") if m in METRICS else ""

        return ", ".join(f"{m} {t.describe(unit(m))}" for m, t in sorted(self.tolerances.items()))

    def summary(self) -> str:
        parts = [
            f"{len(self.cases)} cases compared",
            f"{len(self.regressions)} regression(s) beyond noise and tolerance",
            f"{len(self.new_failures)} new gate failure(s)",
        ]
        if self.worse_ungated:
            parts.append(f"{len(self.worse_ungated)} ungated case(s) worse (reported)")
        if self.frontiers:
            parts.append(
                f"{len(self.frontiers_moved)} of {len(self.frontiers)} frontier(s) moved "
                "toward less noise"
            )
        if self.only_in_base:
            parts.append(f"{len(self.only_in_base)} missing in new")
        if self.not_selected:
            parts.append(f"{len(self.not_selected)} not selected in new")
        if self.only_in_new:
            parts.append(f"{len(self.only_in_new)} only in new")
        return ("OK: " if self.ok else "NOT OK: ") + ", ".join(parts)

    def format_text(self, *, all_cases: bool = True) -> str:
        """A fixed-width table, worst first; ``all_cases=False`` lists only problems (and
        ungated cases that got worse)."""
        rows = sorted(
            self.cases,
            # problems first; then by suite and metric (deltas of different metrics are in
            # different units, so they are only ranked within a metric), worst first
            key=lambda c: (
                c.status not in _PROBLEMS,
                c.suite,
                c.metric,
                -(c.delta if math.isfinite(c.delta) else math.inf),
                c.case_id,
            ),
        )
        if not all_cases:
            rows = [c for c in rows if c.status in (*_PROBLEMS, "worse-ungated")]
        head = ("status", "suite", "case", "base", "new", "worse by", "allowed", "verdict")
        table: list[tuple[str, ...]] = [
            (
                c.status,
                c.suite,
                c.case_id,
                _f(c.base),
                _f(c.new),
                _f(c.delta, signed=True),
                _f(c.allowed),
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
                "",
                f"{f.level_param} CI [{_f(_nan(f.base_ci[0]))}, {_f(_nan(f.base_ci[1]))}]",
            )
            for f in self.frontiers
            if all_cases or f.moved
        ]
        table += [("missing in new", t, cid, "", "", "", "", "") for t, cid in self.only_in_base]
        table += [("only in new", t, cid, "", "", "", "", "") for t, cid in self.only_in_new]
        widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
        right = {3, 4, 5, 6}

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
            "'worse by' is new vs base in metric units, positive = new is worse; a regression "
            "is worse by more than 'allowed' with the runs' CIs apart (beyond noise)"
            + ("" if self.fail_on_ungated else "; ungated cases are reported, not failed")
            + f"; tolerances: {self.tolerance_text()}"
        )
        out.append(self.summary())
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "robusttest-comparison",
            "tolerances": {
                m: {"value": t.value, "relative": t.relative}
                for m, t in sorted(self.tolerances.items())
            },
            "fail_on_ungated": self.fail_on_ungated,
            "ok": self.ok,
            "summary": self.summary(),
            "cases": [c.to_dict() for c in self.cases],
            "regressions": [[c.suite, c.case_id] for c in self.regressions],
            "new_failures": [[c.suite, c.case_id] for c in self.new_failures],
            "worse_ungated": [[c.suite, c.case_id] for c in self.worse_ungated],
            "only_in_base": [list(k) for k in self.only_in_base],
            "not_selected": [list(k) for k in self.not_selected],
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


def _beyond_noise(b: CaseResult, n: CaseResult) -> bool | None:
    """True when the new run's CI of the noisy metric lies wholly on the worse side of the
    base run's; None when either CI is undefined."""
    bounds = (b.noisy_ci_low, b.noisy_ci_high, n.noisy_ci_low, n.noisy_ci_high)
    if not all(math.isfinite(x) for x in bounds):
        return None
    if b.higher_is_better:
        return n.noisy_ci_high < b.noisy_ci_low
    return n.noisy_ci_low > b.noisy_ci_high


def _diff(b: CaseResult, n: CaseResult, tol: Tolerance, fail_on_ungated: bool) -> CaseDiff:
    hib = b.higher_is_better
    bv, nv = b.noisy, n.noisy
    delta = (bv - nv) if hib else (nv - bv)
    allowed = tol.allowed(bv) if math.isfinite(bv) else math.nan
    gated = n.gate is not None or b.gate is not None
    noise = _beyond_noise(b, n)
    if math.isfinite(delta):
        # A hair of slack so 0.93 -> 0.92 is "worse by 0.01", not by 0.010000000000000009.
        over = delta > allowed + 1e-9 * max(1.0, abs(bv), abs(nv))
        worse = over and noise is not False
        regression = worse and (gated or fail_on_ungated)
    else:
        worse = regression = math.isfinite(bv) and not math.isfinite(nv)
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
        allowed=allowed,
        beyond_noise=noise,
        gated=gated,
        worse=worse,
    )


def _prov(r: RunResult, *path: str) -> Any:
    d: Any = r.provenance
    for k in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def compare(
    base: RunResult,
    new: RunResult,
    *,
    tolerance: float | str | None = None,
    tolerances: Mapping[str, float | str | Tolerance] | None = None,
    fail_on_ungated: bool = False,
) -> Comparison:
    """Case-by-case comparison of two results (see the module docstring for the rules).

    ``tolerance``: for every metric without its own entry in ``tolerances`` (default: the
    metric registry's); ``tolerances``: per metric, ``0.02`` in its unit or ``"10%"`` of the
    base value. ``fail_on_ungated``: an ungated case that got worse is a regression too.
    """
    common = Tolerance.parse(tolerance) if tolerance is not None else None
    per_metric = {m: Tolerance.parse(t) for m, t in (tolerances or {}).items()}

    def tol_for(metric: str) -> Tolerance:
        if metric in per_metric:
            return per_metric[metric]
        return common if common is not None else default_tolerance(metric)

    b_cases = {(c.suite, c.case_id): c for c in base.cases}
    n_cases = {(c.suite, c.case_id): c for c in new.cases}
    diffs = []
    notes = []
    used: dict[str, Tolerance] = {}
    no_ci = 0
    for key, b in b_cases.items():
        n = n_cases.get(key)
        if n is None:
            continue
        if n.higher_is_better != b.higher_is_better:
            notes.append(f"{key[0]}/{key[1]}: metric direction differs between runs")
        used[b.metric] = tol_for(b.metric)
        d = _diff(b, n, used[b.metric], fail_on_ungated)
        no_ci += d.beyond_noise is None and math.isfinite(d.delta) and d.delta > d.allowed
        diffs.append(d)
    if no_ci:
        notes.append(
            f"{no_ci} case(s) worse than allowed without a CI in one run (e.g. one patient): "
            "judged on the tolerance alone"
        )
    partial = {
        suite for suite, sel in new.selections() if sel.get("n_selected", 0) < sel.get("n_grid", 0)
    }
    missing = [k for k in b_cases if k not in n_cases]
    only_base = tuple(k for k in missing if k[0] not in partial)
    not_selected = tuple(k for k in missing if k[0] in partial)
    only_new = tuple(k for k in n_cases if k not in b_cases)
    if not new.completed:
        notes.append(
            "the new run is incomplete: " + "; ".join(new.incomplete_reasons())
            + " (its numbers cover only what finished)"
        )  # fmt: skip
    if not base.completed:
        notes.append(
            "the base run is incomplete: " + "; ".join(base.incomplete_reasons())
            + " (its numbers cover only what finished)"
        )  # fmt: skip
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
        tolerances=used,
        cases=tuple(diffs),
        only_in_base=only_base,
        only_in_new=only_new,
        notes=tuple(notes),
        not_selected=not_selected,
        fail_on_ungated=fail_on_ungated,
        frontiers=fronts,
    )

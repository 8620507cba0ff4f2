"""The failure frontier: the noise level at which a gate starts to fail.

A ladder says "passes at σ = 0.12, fails at σ = 0.18". The frontier says where in between:
for each gated (metric, target, noise family) it searches the family's continuous axis
(σ for ``gaussian``; the logarithm of the dose, the read noise and the rate for
``quantum``, ``electronic`` and ``poisson``, whose levels span decades) for the level at
which the gate, judged as the suite judges it (the CI's conservative bound with
``on: ci``), crosses its limit.

- **The same images, paired with the clean pass.** Every level evaluated is one more
  condition of the same run: the same images, the clean outputs computed once (the run's
  own clean records), the suite's repeats. Each image's noise is keyed on (seed, family,
  level written to 12 significant digits, image id, repeat), exactly as a ladder condition
  at that level is: an evaluation at level L draws what a suite listing L draws, is
  cached under the same key (a later ladder run at L, or a repeated search, reads it from
  the output cache), and gives the same verdict. Neighbouring levels draw independently;
  what they share is the clean pass and the patient resamples below.
- **The search.** The ladder's levels (and the clean pass, where the family's mildest
  level is the identity) come free. While the gate holds at every level known, the range's
  most severe level is evaluated (still holding: "not reached"); while it fails at the
  mildest known, the range's mildest. Then the bracket is narrowed around three targets —
  the gate's crossing and both ends of its CI — evaluating where linear interpolation puts
  each (kept inside the middle half of its gap, so every step shrinks it), the farthest
  first, until each lies within 2 % of the level (or half the CI's width) of an evaluated
  level, or ``MAX_EVALUATIONS`` levels have been evaluated.
- **The CI.** The crossing is bootstrapped over patients: every level's case bootstrap
  draws the same resamples (same seed, same patients), so resample b gives one curve of
  the gated quantity across the levels, and its crossing (linear interpolation between the
  two levels around its first failure); the percentile CI of those crossings is the
  frontier's. Where a resample never fails within the levels searched, its crossing lies
  beyond the range (an open CI end, ``None``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from robusttest import metrics as M
from robusttest.data import Sample
from robusttest.engine.evaluation import Evaluator
from robusttest.engine.summary import _ByCondition, case_bootstrap
from robusttest.gates import CLEAN, GateSpec, Verdict, gated_values, judge_bootstrap
from robusttest.noise import NoiseFamily, NoiseSpec, ParamValue, get_noise
from robusttest.results import FrontierPoint, FrontierResult, ImageRecord
from robusttest.stats import BootstrapResult
from robusttest.suite import CaseSpec, Suite

FRONTIER_SUFFIX = "-frontier]"  # how a frontier's id ends (no grid case id does)
MAX_EVALUATIONS = 8  # levels evaluated per frontier beyond the suite's own
# Decoded images kept in memory between the search's passes up to this size (the phantom
# suites' 48–300 images at 256² are 12–80 MB); larger datasets are decoded on each pass.
KEEP_BYTES = 1 << 28
REL_TOL = 0.02  # a target within 2 % of the level (log units on a log axis) of a level known
CI_TOL = 0.5  # ... or within half the crossing's CI width of one is placed well enough


@dataclass(frozen=True)
class FrontierSpec:
    """One frontier to search: a gated (metric, target, family), and the suite's
    requirement on it (``min_level``) if any."""

    frontier_id: str
    metric: str
    target: str
    noise: str
    params: Mapping[str, ParamValue]
    gate: GateSpec
    min_level: float | None = None


def frontier_id(target: str, metric: str, noise: str) -> str:
    """``lungs-dice[gaussian-frontier]``: the case id of the family's frontier."""
    return f"{target}-{metric}[{noise}{FRONTIER_SUFFIX}"


def plan_frontiers(suite: Suite, targets: Sequence[str], *, every: bool) -> list[FrontierSpec]:
    """The frontiers of one evaluation: those the suite's ``frontier:`` asks for and, with
    ``every`` (``--frontier``), every gated (metric, target, family) of the suite.

    ``targets``: the case targets and pairwise tasks (``plan_cases``' order).
    """
    families: dict[str, Mapping[str, ParamValue]] = {}
    for spec in suite.noise:
        families.setdefault(spec.name, spec.params)
    out: list[FrontierSpec] = []
    for target in targets:
        for metric in suite.metrics:
            for noise, params in families.items():
                gate = suite.frontier_gate(metric, noise)
                if gate is None:
                    continue
                asked = noise in suite.frontier
                per = suite.frontier.get(noise)
                requested = asked and (per is None or metric in per)
                if not (requested or every):
                    continue
                need = per.get(metric) if (requested and per is not None) else None
                out.append(
                    FrontierSpec(
                        frontier_id(target, metric, noise),
                        metric,
                        target,
                        noise,
                        params,
                        gate,
                        need,
                    )
                )
    return out


# --- the axis ------------------------------------------------------------------------------
class _Axis:
    """A family's search axis as a severity coordinate s (increasing with the noise): the
    level or its logarithm, negated when a smaller level is more severe."""

    def __init__(self, fam: NoiseFamily) -> None:
        self.mild, self.severe = fam.search_range()
        self.log = fam.frontier_log
        self.sign = 1.0 if self.severe > self.mild else -1.0

    def s(self, level: float) -> float:
        return self.sign * (math.log(level) if self.log else level)

    def level(self, s: float) -> float:
        x = s * self.sign
        return math.exp(x) if self.log else x

    def tolerance(self, s: float) -> float:
        if self.log:
            return REL_TOL
        span = abs(self.severe - self.mild)
        return max(REL_TOL * abs(self.level(s)), 1e-3 * span)


@dataclass
class _Point:
    level: float
    slug: str
    source: str  # "clean", "ladder", "search"


@dataclass
class _Curve:
    """One limit's gated quantity at the points (sorted by severity)."""

    kind: str
    limit: float
    estimate: np.ndarray  # L
    bound: np.ndarray  # L: what the gate compares
    passed: np.ndarray  # L bool
    margin_point: np.ndarray  # L: positive = the estimate is within the limit
    margin_bound: np.ndarray  # L: positive = the gate passes
    margin_reps: np.ndarray | None  # B×L, or None when the bootstrap has no resamples


def _first_crossing(s: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per row of ``margin`` (…×L, positive = pass; NaN fails), the severity where it
    first turns negative, interpolated linearly; +inf where it never does."""
    m = np.atleast_2d(margin)
    fail = ~(m >= 0)
    first = np.argmax(fail, axis=1)
    prev = np.maximum(first - 1, 0)
    rows = np.arange(m.shape[0])
    m0, m1 = m[rows, prev], m[rows, first]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(np.isfinite(m1) & (m0 > m1), m0 / (m0 - m1), 0.5)
    inside = s[prev] + (s[first] - s[prev]) * frac
    out = np.where(first == 0, s[0], inside)
    return np.where(fail.any(axis=1), out, np.inf)


class FrontierSearch:
    """Searches the frontiers of one evaluated run, sharing its evaluated levels."""

    def __init__(
        self,
        ev: Evaluator,
        records: Sequence[ImageRecord],
        *,
        max_evaluations: int = MAX_EVALUATIONS,
    ) -> None:
        self.ev = ev
        self.suite = ev.suite
        self.max_evaluations = max_evaluations
        self.clean = [r for r in records if r.condition == CLEAN]
        self._ladder: dict[str, list[ImageRecord]] = {}
        slugs = {spec.slug for spec in self.suite.noise}
        for r in records:
            if r.condition in slugs:
                self._ladder.setdefault(r.condition, []).append(r)
        self._searched: dict[str, list[ImageRecord]] = {}
        self._by_cond: dict[str, _ByCondition] = {}
        self._boot: dict[tuple[str, str, str], BootstrapResult] = {}
        self.pairs = {f"{a}-vs-{b}": (a, b) for a, b in ev.plan.pairwise}
        self.evaluations = 0  # levels evaluated by the search (all frontiers)
        self.seconds = 0.0
        self._kept: list[Sample] | None = None
        self._keep = True  # until the first pass shows the images are too large to keep

    def _samples(self) -> list[Sample] | None:
        """The decoded images, kept after the first pass when they fit in KEEP_BYTES."""
        if self._kept is None and self._keep:
            kept: list[Sample] = []
            for smp in self.ev.iter_samples():
                kept.append(smp)
                nbytes = smp.image.nbytes + sum(m.nbytes for m in (smp.masks or {}).values())
                if nbytes * len(self.ev.dataset) > KEEP_BYTES:
                    self._keep = False
                    break
            else:
                self._kept = kept
        return self._kept

    def _spacing_known(self) -> bool:
        """Every image had its pixel spacing (the run's images, else the records')."""
        if self.ev.spacing_seen:
            return self.ev.spacing_known() is True
        return all(r.pixel_spacing_mm is not None for r in self.ev.dataset.records)

    # --- levels -------------------------------------------------------------------------
    def _records(self, spec: NoiseSpec) -> list[ImageRecord]:
        slug = spec.slug
        if slug in self._ladder:
            return self._ladder[slug]
        if slug not in self._searched:
            t0 = time.perf_counter()
            saved = self.ev.conditions
            self.ev.conditions = [(slug, spec, r) for r in range(self.suite.repeats)]
            try:
                self._searched[slug] = list(self.ev.records(samples=self._samples()))
            finally:
                self.ev.conditions = saved
            self.evaluations += 1
            self.seconds += time.perf_counter() - t0
        return self._searched[slug]

    def _bootstrap(
        self, point: _Point, spec: NoiseSpec | None, metric: str, target: str
    ) -> BootstrapResult:
        key = (point.slug, metric, target)
        if key not in self._boot:
            cond = point.slug
            if cond not in self._by_cond:
                noisy = [] if spec is None else self._records(spec)
                self._by_cond[cond] = _ByCondition([*self.clean, *noisy])
            cs = CaseSpec("", metric, target, cond, spec, None)
            boot, _, _ = case_bootstrap(self._by_cond[cond], self.suite, cs, self.pairs.get(target))
            self._boot[key] = boot
        return self._boot[key]

    # --- one frontier -------------------------------------------------------------------
    def search(self, fs: FrontierSpec) -> FrontierResult:
        fam = get_noise(fs.noise)
        axis = _Axis(fam)
        points: dict[str, _Point] = {}
        if fam.is_identity(axis.mild, fs.params):
            points[CLEAN] = _Point(axis.mild, CLEAN, "clean")
        for spec in self.suite.noise:
            if spec.name == fs.noise and spec.params == fs.params:
                points[spec.slug] = _Point(spec.level, spec.slug, "ladder")
        used = 0

        def add(level: float) -> bool:
            nonlocal used
            spec = NoiseSpec(fs.noise, level, fs.params)
            if spec.slug in points:
                return False
            points[spec.slug] = _Point(spec.level, spec.slug, "search")
            used += 1
            return True

        while True:
            ordered = sorted(points.values(), key=lambda p: axis.s(p.level))
            s = np.array([axis.s(p.level) for p in ordered])
            curves = [
                self._curve(fs, kind, limit, ordered) for kind, limit in fs.gate.limits().items()
            ]
            passed = np.logical_and.reduce([c.passed for c in curves])
            budget = used < self.max_evaluations
            if passed.all():
                if budget and not math.isclose(s[-1], axis.s(axis.severe)) and add(axis.severe):
                    continue
                break
            if not passed[0]:
                if budget and not math.isclose(s[0], axis.s(axis.mild)) and add(axis.mild):
                    continue
                break
            if not budget:
                break
            step = self._next_level(s, curves, axis)
            if step is None or not add(axis.level(step)):
                break
        return self._result(fs, fam, axis, ordered, s, curves, used)

    def _curve(
        self, fs: FrontierSpec, kind: str, limit: float, ordered: Sequence[_Point]
    ) -> _Curve:
        metric = M.get_metric(fs.metric)
        hib = metric.higher_is_better
        ceiling = kind != "min" or not hib  # a drop, or a lower-is-better floor: a ceiling
        sign = -1.0 if ceiling else 1.0
        est, bound, ok, reps = [], [], [], []
        for p in ordered:
            spec = None if p.source == "clean" else NoiseSpec(fs.noise, p.level, fs.params)
            boot = self._bootstrap(p, spec, fs.metric, fs.target)
            judged = judge_bootstrap(kind, limit, boot, fs.gate.on)
            est.append(gated_values(boot, kind)[0])
            bound.append(judged.value_used)
            ok.append(judged.passed)
            reps.append(_replicates(boot, kind, hib))
        e, b = np.array(est, dtype=float), np.array(bound, dtype=float)
        arrays = [r for r in reps if r is not None]
        have = len(arrays) == len(reps) and len({len(r) for r in arrays}) == 1
        margin_reps = sign * (np.stack(arrays, axis=1) - limit) if have else None
        return _Curve(
            kind=kind,
            limit=limit,
            estimate=e,
            bound=b,
            passed=np.array(ok, dtype=bool),
            margin_point=sign * (e - limit),
            # the gate's own verdict decides the sign (a tie at the limit passes)
            margin_bound=np.where(np.array(ok), 1.0, -1.0) * np.abs(b - limit),
            margin_reps=margin_reps,
        )

    def _crossings(
        self, s: np.ndarray, curves: Sequence[_Curve], ci: float
    ) -> tuple[float, str, float, float, float]:
        """(gate crossing, its kind, point crossing, CI low, CI high) in severity units."""
        gate = [float(_first_crossing(s, c.margin_bound)[0]) for c in curves]
        k = int(np.argmin(gate))
        point = min(float(_first_crossing(s, c.margin_point)[0]) for c in curves)
        lo = hi = math.nan
        reps = [c.margin_reps for c in curves if c.margin_reps is not None]
        if len(reps) == len(curves):
            per = np.min([_first_crossing(s, r) for r in reps], axis=0)
            finite_or_inf = per[~np.isnan(per)]
            if finite_or_inf.size:
                alpha = (1.0 - ci) / 2.0
                big = np.where(np.isinf(finite_or_inf), s[-1] + 1.0, finite_or_inf)
                qlo, qhi = np.quantile(big, [alpha, 1.0 - alpha])
                lo = float(qlo) if qlo <= s[-1] else math.inf
                hi = float(qhi) if qhi <= s[-1] else math.inf
        return gate[k], curves[k].kind, point, lo, hi

    def _next_level(self, s: np.ndarray, curves: Sequence[_Curve], axis: _Axis) -> float | None:
        """Where to evaluate next (severity units), or None when every target lies close
        enough to an evaluated level for the interpolation to place it."""
        gate, _, _, lo, hi = self._crossings(s, curves, self.suite.ci)
        # an open CI end (beyond the range) says nothing of the precision needed
        width = hi - lo if math.isfinite(lo) and math.isfinite(hi) else 0.0
        best: tuple[float, float] | None = None  # (how many tolerances away, where)
        for target in (gate, lo, hi):
            if not (math.isfinite(target) and s[0] < target < s[-1]):
                continue
            j = int(np.searchsorted(s, target, side="right"))
            a, b = s[j - 1], s[j]
            tol = max(axis.tolerance(target), CI_TOL * width)
            ratio = min(target - a, b - target) / tol
            if ratio > 1.0 and (best is None or ratio > best[0]):
                quarter = (b - a) / 4.0  # inside the gap's middle half: every step shrinks it
                best = (ratio, min(max(target, a + quarter), b - quarter))
        return None if best is None else best[1]

    def _result(
        self,
        fs: FrontierSpec,
        fam: NoiseFamily,
        axis: _Axis,
        ordered: Sequence[_Point],
        s: np.ndarray,
        curves: Sequence[_Curve],
        used: int,
    ) -> FrontierResult:
        ci = self.suite.ci
        gate_s, kind, point_s, lo_s, hi_s = self._crossings(s, curves, ci)
        curve = next(c for c in curves if c.kind == kind)
        passed = np.logical_and.reduce([c.passed for c in curves])

        def lv(x: float) -> float | None:
            return axis.level(x) if math.isfinite(x) else None

        level, estimate = lv(gate_s), lv(point_s)
        # the CI's ends as levels: a smaller level is the more severe end when sign < 0
        ends = (lv(lo_s), lv(hi_s)) if axis.sign > 0 else (lv(hi_s), lv(lo_s))
        if math.isnan(lo_s):
            ends = (None, None)
        reached = level is not None
        note = None
        if reached and not passed[0]:
            note = "the gate fails already at the mildest level searched"
        elif not reached:
            note = f"the gate holds up to the most severe level searched ({axis.severe:g})"
        if math.isnan(lo_s):
            note = (note + "; " if note else "") + "no CI: the bootstrap could not resample"
        ref = None
        uGy: list[float | None] = [None, None, None]
        if "dose_uGy" in fam.level_units and self._spacing_known():
            ref = fam.level_in("dose_uGy", 1.0, fs.params)
            uGy = [
                None if x is None else fam.level_in("dose_uGy", x, fs.params)
                for x in (level, ends[0], ends[1])
            ]
        result = FrontierResult(
            frontier_id=fs.frontier_id,
            suite=self.suite.name,
            metric=fs.metric,
            target=fs.target,
            noise=fs.noise,
            level_param=fam.level_param,
            higher_is_worse=fam.higher_is_worse,
            gate=kind,
            limit=curve.limit,
            on=fs.gate.on,
            level=level,
            estimate=estimate,
            ci_low=ends[0],
            ci_high=ends[1],
            reached=reached,
            evaluations=used,
            search_range=(axis.mild, axis.severe),
            points=tuple(
                FrontierPoint(
                    p.level,
                    float(curve.estimate[i]),
                    float(curve.bound[i]),
                    bool(passed[i]),
                    p.source,
                )
                for i, p in enumerate(ordered)
            ),
            verdict="no-gate",
            message="",
            min_level=fs.min_level,
            ci=ci,
            level_unit=fam.level_unit,
            log_axis=axis.log,
            reference_uGy=ref,
            dose_uGy=uGy[0],
            ci_low_uGy=uGy[1],
            ci_high_uGy=uGy[2],
            note=note,
        )
        verdict, message = judge_frontier(result)
        return replace(result, verdict=verdict, message=message)


def _replicates(boot: BootstrapResult, kind: str, hib: bool) -> np.ndarray | None:
    """The gated quantity of every resample (NaN where one could not be scored)."""
    if boot.replicates is None:
        return None
    clean_b, noisy_b = boot.replicates
    if kind == "min":
        return np.asarray(noisy_b, dtype=float)
    drop = (1.0 if hib else -1.0) * (clean_b - noisy_b)
    if kind == "max_drop":
        return np.asarray(drop, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(clean_b != 0, drop / np.abs(clean_b), np.nan)


def _fmt(x: float | None) -> str:
    """4 significant digits, never an exponent (0.00005828, not 5.828e-05)."""
    if x is None:
        return "beyond the range"
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return str(np.format_float_positional(x, precision=4, unique=False, fractional=False, trim="-"))


def judge_frontier(f: FrontierResult) -> tuple[Verdict, str]:
    """The verdict and message of a frontier against its requirement (``min_level``).

    The requirement says how much noise the model must tolerate: the crossing must lie at
    ``min_level`` or at more noise, judged on the CI's end towards less noise (the gate's
    ``on: point``: the estimate). For a family where a larger level is worse (σ) that is
    ``ci_low >= min_level``; where a smaller level is worse (dose, rate) ``ci_high <=
    min_level``. A gate that holds over the whole range meets any requirement in it.
    """
    p = f.level_param
    head = f"{f.metric} {f.target} [{f.noise}-frontier]: {f.gate} {f.limit:g} (on {f.on})"
    if f.reached:
        head += f" fails from {p} = {_fmt(f.level)}"
    else:
        head += f" holds up to {p} = {_fmt(f.search_range[1])} (frontier not reached)"
    head += (
        f"; crossing {_fmt(f.estimate)} [{f.ci:.0%} CI {_fmt(f.ci_low)}, {_fmt(f.ci_high)}]"
        if f.reached
        else ""
    )
    if f.dose_uGy is not None:
        head += f" = {_fmt(f.dose_uGy)} µGy"
    head += f", {f.evaluations} evaluations"
    if f.min_level is None:
        return "no-gate", head + "; no requirement"
    need = f.min_level
    op = ">=" if f.higher_is_worse else "<="
    if not f.reached:
        return "pass", f"{head}; required {p} {op} {_fmt(need)}: PASS"
    end = f.estimate if f.on == "point" else f.gated_end
    used = "estimate" if f.on == "point" else ("CI low" if f.higher_is_worse else "CI high")
    if end is None and f.on != "point":  # the CI's end lies beyond the range searched
        return "pass", f"{head}; required {p} {op} {_fmt(need)}, {used} beyond the range: PASS"
    if end is None or math.isnan(end):
        return "fail", f"{head}; required {p} {op} {_fmt(need)}, {used} undefined: FAIL"
    ok = end >= need if f.higher_is_worse else end <= need
    shown = op if ok else ("<" if f.higher_is_worse else ">")
    return (
        "pass" if ok else "fail",
        f"{head}; required {p} {op} {_fmt(need)}: {used} {_fmt(end)} {shown} {_fmt(need)}: "
        f"{'PASS' if ok else 'FAIL'}",
    )


def search_frontiers(
    ev: Evaluator,
    records: Sequence[ImageRecord],
    specs: Sequence[FrontierSpec],
    *,
    max_evaluations: int = MAX_EVALUATIONS,
) -> Iterator[FrontierResult]:
    """The frontiers one by one (an interrupt keeps those finished); the levels evaluated
    are shared between them (``FrontierSearch``)."""
    search = FrontierSearch(ev, records, max_evaluations=max_evaluations)
    for fs in specs:
        yield search.search(fs)


__all__ = [
    "CI_TOL",
    "FRONTIER_SUFFIX",
    "MAX_EVALUATIONS",
    "REL_TOL",
    "FrontierSearch",
    "FrontierSpec",
    "frontier_id",
    "judge_frontier",
    "plan_frontiers",
    "search_frontiers",
]

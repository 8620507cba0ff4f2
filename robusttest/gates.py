"""Gates, spelled once: the kinds, the limits a suite sets, the judgement, the verdict text.

A gate bounds one case of the grid. Its kinds:

- ``min``: the noisy metric itself; a floor for higher-is-better metrics (Dice, AUROC),
  a ceiling for lower-is-better ones (HD95).
- ``max_drop``: the drop, in the metric's units (positive = worse).
- ``max_relative_drop``: the drop as a fraction of |clean| (0.05 = 5 %).

Judged on the conservative bound of the CI (``on: ci``, the default: a pass means "within
the limit with 95 % confidence") or on the point estimate (``on: point``). A suite sets
limits at four levels (``GateTable``); ``GateSpec`` is what applies to one case.

Beside the gates, a floor on the clean performance: a metric/target whose clean value is
at chance or below the suite's floor makes every one of its cases ``uninformative``
(``judge_floor``, ``mark_uninformative``): a model that cannot do the task has nothing to
lose to noise, so a pass would say nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from robusttest.errors import UnknownNameError, check_range
from robusttest.stats import BootstrapResult

CLEAN = "clean"

GateKind = Literal["min", "max_drop", "max_relative_drop"]
GATE_KINDS: tuple[str, ...] = ("min", "max_drop", "max_relative_drop")
JudgeOn = Literal["ci", "point"]
JUDGE_ON: tuple[str, ...] = ("ci", "point")
GATE_KEYS: tuple[str, ...] = (*GATE_KINDS, "on")  # what a suite may write in a gate

# A case's verdict: its gate held, failed, it has no gate (reported only), the model's
# clean performance on its metric and target cannot carry a verdict (uninformative: at
# chance, or below the suite's floor), or it could not be judged (evaluation failed).
Verdict = Literal["pass", "fail", "no-gate", "uninformative", "error"]
VERDICTS: tuple[str, ...] = ("pass", "fail", "no-gate", "uninformative", "error")
FAILING: tuple[str, ...] = ("fail", "error")
UNINFORMATIVE: Literal["uninformative"] = "uninformative"
# What a suite does with uninformative cases (gates.uninformative): report them apart, or
# fail them (their verdict is then "fail", with FLOOR among the failed limits).
UNINFORMATIVE_POLICIES: tuple[str, ...] = ("report", "fail")
FLOOR = "floor"


@dataclass(frozen=True)
class GateSpec:
    """Limits applied to one case; every limit present must hold."""

    min: float | None = None
    max_drop: float | None = None
    max_relative_drop: float | None = None
    on: JudgeOn = "ci"

    @property
    def empty(self) -> bool:
        return self.min is None and self.max_drop is None and self.max_relative_drop is None

    def limits(self) -> dict[str, float]:
        """The limits set, by kind, in GATE_KINDS order."""
        out: dict[str, float] = {}
        for kind in GATE_KINDS:
            v = getattr(self, kind)
            if v is not None:
                out[kind] = float(v)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateSpec:
        return cls(**{k: d[k] for k in GATE_KEYS if k in d})

    def describe(self) -> str:
        parts = [f"{kind} {v:g}" for kind, v in self.limits().items()]
        return ", ".join(parts) + f" (on {self.on})" if parts else "no gate"


GateLimits = Mapping[str, Any]  # the keys a suite gave at one level: min, max_drop, ..., on


@dataclass(frozen=True)
class GateTable:
    """Gate limits at four levels, most specific last: default, metric, noise, condition.

    A level's keys override the same keys of the levels before it; ``null`` at a level
    removes every limit from there on (reported, not gated).
    """

    on: JudgeOn = "ci"
    default: GateLimits | None = None
    metrics: Mapping[str, GateLimits | None] = field(default_factory=dict)
    conditions: Mapping[str, Mapping[str, GateLimits | None]] = field(default_factory=dict)
    # clean-performance floors per metric, and what uninformative cases do (see judge_floor)
    floor: Mapping[str, float] = field(default_factory=dict)
    uninformative: str = "report"

    def for_case(self, metric: str, condition: str, noise: str | None) -> GateSpec | None:
        """The limits of one case. A clean baseline keeps only ``min``."""
        levels: list[GateLimits | None] = [self.default]
        if metric in self.metrics:
            levels.append(self.metrics[metric])
        for key in (noise, condition):
            if key is not None and key in self.conditions and metric in self.conditions[key]:
                levels.append(self.conditions[key][metric])
        merged: dict[str, Any] = {"on": self.on}
        for lv in levels:
            if lv is None:
                merged = {"on": self.on}
            else:
                merged.update(lv)
        if condition == CLEAN:
            merged = {k: v for k, v in merged.items() if k in ("min", "on")}
        gate = GateSpec.from_dict(merged)
        return None if gate.empty else gate

    def explain(self, metric: str, condition: str, noise: str | None) -> dict[str, str]:
        """For each limit of ``for_case`` (and ``on``), the table entry that set it, as a
        path: ``default.min``, ``metrics.dice.max_drop``, ``conditions.gaussian.dice.on``,
        or ``on`` for the table's judge mode."""
        levels: list[tuple[str, GateLimits | None]] = [("default", self.default)]
        if metric in self.metrics:
            levels.append((f"metrics.{metric}", self.metrics[metric]))
        for key in (noise, condition):
            if key is not None and key in self.conditions and metric in self.conditions[key]:
                levels.append((f"conditions.{key}.{metric}", self.conditions[key][metric]))
        set_by: dict[str, str] = {"on": "on"}
        for path, lv in levels:
            if lv is None:
                set_by = {"on": "on"}
            else:
                set_by.update({k: f"{path}.{k}" for k in lv})
        gate = self.for_case(metric, condition, noise)
        if gate is None:
            return {}
        return {k: set_by[k] for k in (*gate.limits(), "on")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateTable:
        """The table ``to_dict`` wrote (e.g. a results file's suite definition)."""
        return cls(
            on=d.get("on", "ci"),
            default=d.get("default"),
            metrics=dict(d.get("metrics") or {}),
            conditions={c: dict(m or {}) for c, m in (d.get("conditions") or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "on": self.on,
            "default": _plain(self.default),
            "metrics": {k: _plain(v) for k, v in sorted(self.metrics.items())},
            "conditions": {
                c: {k: _plain(v) for k, v in sorted(m.items())}
                for c, m in sorted(self.conditions.items())
            },
        }
        # only when set: a suite without floors keeps the hash it had before they existed
        if self.floor:
            out["floor"] = dict(sorted(self.floor.items()))
        if self.uninformative != "report":
            out["uninformative"] = self.uninformative
        return out


def _plain(g: GateLimits | None) -> dict[str, Any] | None:
    return None if g is None else dict(sorted(g.items()))


def table_entries(gates: Any) -> list[tuple[str, Any]]:
    """The entries of a ``gates:`` mapping (as a suite file writes it, or ``to_dict``'s), as
    (path, value): ``on``; each level (``default``, ``metrics.dice``,
    ``conditions.gaussian.dice``) with its mapping or None; each of its keys
    (``metrics.dice.max_drop``). Where each came from is keyed by these paths."""
    if not isinstance(gates, Mapping):
        return []
    out: list[tuple[str, Any]] = []

    def level(path: str, value: Any) -> None:
        out.append((path, value))
        if isinstance(value, Mapping):
            out.extend((f"{path}.{k}", v) for k, v in value.items())

    for key, value in gates.items():
        if key == "on":
            out.append(("on", value))
        elif key == "default":
            level("default", value)
        elif key == "metrics" and isinstance(value, Mapping):
            for metric, lv in value.items():
                level(f"metrics.{metric}", lv)
        elif key == "conditions" and isinstance(value, Mapping):
            for cond, per in value.items():
                for metric, lv in (per if isinstance(per, Mapping) else {}).items():
                    level(f"conditions.{cond}.{metric}", lv)
    return out


# --- judgement ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateOutcome:
    """One limit's outcome: the number compared with the limit, and a sentence about it."""

    passed: bool
    value_used: float
    explanation: str


def gated_values(result: BootstrapResult, kind: str) -> tuple[float, float, float]:
    """(estimate, ci_low, ci_high) of the quantity a gate of ``kind`` limits."""
    if kind == "min":
        return result.noisy, result.noisy_ci_low, result.noisy_ci_high
    if kind == "max_drop":
        return result.estimate, result.ci_low, result.ci_high
    if kind == "max_relative_drop":
        return result.relative, result.relative_ci_low, result.relative_ci_high
    raise UnknownNameError("gate kind", kind, GATE_KINDS)


def _fmt(x: float, relative: bool) -> str:
    if math.isnan(x):
        return "nan"
    return f"{x:.2%}" if relative else f"{x:.4g}"


def judge(
    kind: str,
    limit: float,
    estimate: float,
    ci_low: float,
    ci_high: float,
    clean: float,
    higher_is_better: bool,
    on: str = "ci",
    *,
    metric: str = "metric",
    context: str = "",
    ci: float = 0.95,
    n: int | None = None,
    n_groups: int | None = None,
    reason: str | None = None,
) -> GateOutcome:
    """Judge one limit. ``estimate``/``ci_low``/``ci_high`` describe the gated quantity:

    - ``"max_drop"``: the drop (positive = worse, metric units). Passes iff drop ≤ limit.
    - ``"max_relative_drop"``: the drop as a fraction of |clean|. Passes iff ≤ limit.
    - ``"min"``: the noisy metric itself. For higher-is-better metrics a floor: passes iff
      noisy ≥ limit; for lower-is-better metrics (HD95) a ceiling: passes iff noisy ≤ limit.

    ``on="ci"`` compares the conservative CI bound: the upper bound of a drop, the lower
    bound of a higher-is-better ``min`` (upper for lower-is-better). ``on="point"``
    compares the point estimate. A NaN value fails, saying why (``reason``). ``clean``,
    ``metric``, ``context``, ``n``, ``n_groups`` only feed the explanation.
    """
    if kind not in GATE_KINDS:
        raise UnknownNameError("gate kind", kind, GATE_KINDS)
    if on not in JUDGE_ON:
        raise UnknownNameError("judge mode", on, JUDGE_ON)
    lim = check_range("limit", limit)
    relative = kind == "max_relative_drop"
    if kind == "min":
        quantity = "noisy value"
        upper = not higher_is_better  # which side of the CI is the conservative one
    else:
        quantity = "relative drop" if relative else "drop"
        upper = True
    if on == "ci":
        value = ci_high if upper else ci_low
        used = f"{'upper' if upper else 'lower'} {ci:.0%} CI bound"
    else:
        value, used = estimate, "point estimate"
    ceiling = upper  # drops and lower-is-better floors are ceilings
    head = f"{metric}{' ' + context if context else ''}: {quantity} {_fmt(estimate, relative)}"
    head += f" [{ci:.0%} CI {_fmt(ci_low, relative)}, {_fmt(ci_high, relative)}]"
    head += f", clean {clean:.4g}"
    if n is not None:
        head += f", n={n} images" + (f" / {n_groups} patients" if n_groups is not None else "")
    fl = float(value)
    if math.isnan(fl):
        why = f" ({reason})" if reason else ""
        return GateOutcome(False, fl, f"{head}; {used} is undefined{why}: FAIL (limit {lim:g})")
    passed = fl <= lim if ceiling else fl >= lim
    op = ("<=" if passed else ">") if ceiling else (">=" if passed else "<")
    lim_s = f"{lim:.2%}" if relative else f"{lim:.4g}"
    verdict = "PASS" if passed else "FAIL"
    return GateOutcome(
        passed, fl, f"{head}; {used} {_fmt(fl, relative)} {op} limit {lim_s}: {verdict}"
    )


def judge_bootstrap(
    kind: str,
    limit: float,
    result: BootstrapResult,
    on: str = "ci",
    *,
    metric: str = "metric",
    context: str = "",
) -> GateOutcome:
    """:func:`judge` on the quantity of ``result`` that a gate of ``kind`` limits."""
    est, lo, hi = gated_values(result, kind)
    return judge(
        kind,
        limit,
        est,
        lo,
        hi,
        result.clean,
        result.higher_is_better,
        on,
        metric=metric,
        context=context,
        ci=result.ci,
        n=result.n,
        n_groups=result.n_groups,
        reason=result.reason,
    )


@dataclass(frozen=True)
class CaseVerdict:
    """A case's verdict, its one-line message and the limits that failed."""

    verdict: Verdict
    message: str
    failed: tuple[str, ...] = ()


def judge_case(
    gate: GateSpec | None,
    result: BootstrapResult,
    *,
    metric: str,
    target: str,
    condition: str,
) -> CaseVerdict:
    """Every limit of ``gate`` on one case's bootstrap: pass when all hold."""
    ctx = f"[{condition}]"
    if gate is None:
        if math.isnan(result.estimate) and condition != CLEAN:
            return CaseVerdict("no-gate", f"{metric} {target} {ctx}: undefined ({result.reason})")
        return CaseVerdict(
            "no-gate",
            f"{metric} {target} {ctx}: clean {result.clean:.4g}, noisy {result.noisy:.4g}, "
            f"drop {result.estimate:.4g} [{result.ci:.0%} CI {result.ci_low:.4g}, "
            f"{result.ci_high:.4g}], n={result.n}; no gate",
        )
    msgs: list[str] = []
    failed: list[str] = []
    for kind, limit in gate.limits().items():
        v = judge_bootstrap(kind, limit, result, gate.on, metric=f"{metric} {target}", context=ctx)
        if not v.passed:
            failed.append(kind)
        msgs.append(v.explanation)
    return CaseVerdict("fail" if failed else "pass", "; ".join(msgs), tuple(failed))


def judge_floor(
    clean: float,
    ci_low: float,
    ci_high: float,
    *,
    metric: str,
    target: str,
    higher_is_better: bool,
    chance: float | None,
    floor: float | None,
    ci: float = 0.95,
) -> str | None:
    """Why a metric/target's clean value makes its cases uninformative, or None.

    Uninformative: the clean CI contains the metric's chance level (AUROC 0.5: the model
    cannot be told from a coin, so it has nothing to lose to noise), or the clean point
    estimate misses the suite's floor (below it; above it for lower-is-better metrics).
    An undefined clean value (NaN) is not judged here: its cases say why already.
    """
    if math.isnan(clean):
        return None
    why: list[str] = []
    if chance is not None and not math.isnan(ci_low) and ci_low <= chance <= ci_high:
        why.append(f"its CI contains chance ({chance:g})")
    if floor is not None and (clean < floor if higher_is_better else clean > floor):
        why.append(f"{'below' if higher_is_better else 'above'} the suite's floor {floor:g}")
    if not why:
        return None
    return (
        f"clean {metric} {target} {clean:.4g} [{ci:.0%} CI {ci_low:.4g}, {ci_high:.4g}]: "
        + " and ".join(why)
    )


def mark_uninformative(verdict: CaseVerdict, why: str, policy: str = "report") -> CaseVerdict:
    """A case of an uninformative metric/target: verdict ``uninformative`` (``policy``
    "report") or ``fail`` with the limit ``floor`` ("fail"); an error stays an error.
    The gate's own outcome stays in the message."""
    if policy not in UNINFORMATIVE_POLICIES:
        raise UnknownNameError("uninformative policy", policy, UNINFORMATIVE_POLICIES)
    if verdict.verdict == "error":
        return verdict
    head = f"uninformative: {why}"
    if policy == "fail":
        return CaseVerdict(
            "fail",
            f"{head}; the suite fails uninformative cases (gates.uninformative: fail); "
            f"gate: {verdict.message}",
            (*verdict.failed, FLOOR),
        )
    return CaseVerdict(UNINFORMATIVE, f"{head}; not judged (gate: {verdict.message})")


__all__ = [
    "CLEAN",
    "FAILING",
    "FLOOR",
    "GATE_KEYS",
    "GATE_KINDS",
    "JUDGE_ON",
    "UNINFORMATIVE",
    "UNINFORMATIVE_POLICIES",
    "VERDICTS",
    "CaseVerdict",
    "GateKind",
    "GateOutcome",
    "GateSpec",
    "GateTable",
    "JudgeOn",
    "Verdict",
    "gated_values",
    "judge",
    "judge_bootstrap",
    "judge_case",
    "judge_floor",
    "mark_uninformative",
    "table_entries",
]

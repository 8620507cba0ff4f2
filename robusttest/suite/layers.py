"""Where a suite's definition comes from: ``extends`` and gate overrides.

A suite may build on another (``extends: lungs``): ``merge_documents`` lays the extending
file's keys over the extended suite's (the rules are in its docstring and the README).
The gates may then be overridden from the command line (``--robust-gate``, ``robusttest
run --gate``) or the ini file (``robusttest_gate``): ``GateOverride`` is one such
override, parsed and checked on its own; ``apply_gate_overrides`` checks it against a
suite and applies it. Every entry of the effective gate table keeps where it came from
(``Suite.gate_sources``: its path, e.g. ``metrics.dice.max_drop``, to a label such as
``suite: lungs.yaml`` or ``command line: --robust-gate dice.max_drop=0.1``), which the
reports show beside each case's gate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from robusttest.errors import ConfigError
from robusttest.gates import GATE_KEYS, GATE_KINDS, JUDGE_ON, GateTable, JudgeOn, table_entries
from robusttest.suite.grammar import GATE_BOUNDS
from robusttest.suite.model import Suite
from robusttest.suite.rules import Invalid, choice, number, show

# --- extends -------------------------------------------------------------------------------
# Top-level sections merged key by key (recursively); every other key is replaced whole.
MERGED_SECTIONS: tuple[str, ...] = ("data", "model", "bootstrap", "gates")
NOT_INHERITED: tuple[str, ...] = ("name", "extends")
REMOVE = False  # `noise: {FAMILY: false}` in an extending file drops the base's family

# where a gate entry came from: the first word(s) of its source label
SUITE_LABEL = "suite"
EXTENDED_LABEL = "extended suite"
COMMAND_LINE_LABEL = "command line"
INI_LABEL = "ini"
ARGUMENT_LABEL = "argument"
INI_SUFFIX = " (ini)"  # how RunSettings names an ini key it read (robusttest_gate (ini))


def merge_documents(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """The extending document ``own`` laid over ``base`` (both one task's body).

    - a key ``own`` gives replaces the base's, except ``data``, ``model``, ``bootstrap`` and
      ``gates``, which merge key by key at every depth (a value that is not a mapping on
      both sides, null included, replaces);
    - ``data`` with another ``adapter`` than the base's replaces the base's ``data`` whole
      (another adapter's options mean nothing);
    - ``noise`` merges by family: a family ``own`` names replaces the base's entry whole
      (levels, ladder, params, ``at``), ``FAMILY: false`` removes it, the others stay, in
      the base's order, new families after;
    - lists (``metrics``, ``targets``, ``pairwise``, levels) are replaced;
    - ``name`` is not inherited (it defaults to the extending file's name).
    """
    out = {k: v for k, v in base.items() if k not in NOT_INHERITED}
    for key, value in own.items():
        if key == "extends":
            continue
        old = out.get(key)
        if key == "noise" and isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge_noise(old, value)
        elif key == "noise" and isinstance(value, Mapping):
            out[key] = {f: v for f, v in value.items() if v is not REMOVE}
        elif key == "data" and _other_adapter(old, value):
            out[key] = value
        elif key in MERGED_SECTIONS:
            out[key] = _deep_merge(old, value)
        else:
            out[key] = value
    return out


def _merge_noise(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for family, entry in own.items():
        if entry is REMOVE:
            out.pop(family, None)
        else:
            out[family] = entry
    return out


def _other_adapter(old: Any, new: Any) -> bool:
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)) or "adapter" not in new:
        return False
    return bool(new["adapter"] != old.get("adapter", "phantom"))


def _deep_merge(old: Any, new: Any) -> Any:
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return new
    out = dict(old)
    for k, v in new.items():
        out[k] = _deep_merge(out.get(k), v)
    return out


def gate_paths(gates: Any) -> list[str]:
    """The entries a raw ``gates:`` mapping gives, as paths (``gates.table_entries``): a
    level's own path too (``metrics.hd95``), so a level set to null has a source."""
    return [path for path, _ in table_entries(gates)]


def gate_sources_of(doc: Mapping[str, Any], label: str) -> dict[str, str]:
    """Every gate entry of a suite document, from ``label``."""
    return dict.fromkeys(gate_paths(doc.get("gates")), label)


def layered_sources(
    merged: Mapping[str, Any], own: Mapping[str, Any], base_sources: Mapping[str, str]
) -> dict[str, str]:
    """The sources of the merged document's gate entries: the extending file's own, else
    the extended suite's (its ``suite:`` labels become ``extended suite:``)."""
    mine = set(gate_paths(own.get("gates")))
    own_label = f"{SUITE_LABEL}: "
    out: dict[str, str] = {}
    for path in gate_paths(merged.get("gates")):
        if path in mine:
            continue  # filled in by the caller, which knows the extending file's label
        src = base_sources.get(path, "")
        if src.startswith(own_label):
            src = f"{EXTENDED_LABEL}: {src.removeprefix(own_label)}"
        out[path] = src
    return out


# --- gate overrides ------------------------------------------------------------------------
GATE_SYNTAX = (
    "[NOISE:]METRIC.KEY=VALUE with KEY min, max_drop, max_relative_drop or on (e.g. "
    "dice.max_drop=0.05, gaussian:dice.max_drop=0.2, default.min=0.8), METRIC=null, on=ci|point"
)
DEFAULT_LEVEL = "default"


@dataclass(frozen=True)
class GateOverride:
    """One ``--robust-gate`` value: a change to one entry of a suite's gate table.

    ``scope``: a noise family or a condition (``gaussian``, ``quantum-dose10``) or None;
    ``level``: a metric, ``default`` (every metric), or None (the table's ``on``);
    ``key``: a gate kind or ``on``, or None (the whole level set to null: no limits);
    ``value``: a number, ``ci``/``point`` (``on``) or None (null: removes that limit);
    ``origin``: how it was given (``--robust-gate``, ``robusttest_gate (ini)``).
    """

    text: str
    scope: str | None
    level: str | None
    key: str | None
    value: float | str | None
    origin: str = "--robust-gate"

    @classmethod
    def parse(cls, text: str, origin: str = "--robust-gate") -> GateOverride:
        """Syntax and value; whether the metric and the condition exist in the suite is
        checked when it is applied. ConfigError (one line) otherwise."""
        raw = str(text).strip()

        def bad(why: str) -> ConfigError:
            return ConfigError(f"{raw!r}: {why}; expected {GATE_SYNTAX}")

        lhs, sep, rhs = raw.partition("=")
        lhs, rhs = lhs.strip(), rhs.strip()
        if not sep or not lhs or not rhs:
            raise bad("not NAME=VALUE")
        if lhs == "on":
            try:
                return cls(raw, None, None, "on", _value("on", rhs), origin)
            except ConfigError as exc:
                raise ConfigError(f"{raw!r}: {exc}") from None
        scope, colon, rest = lhs.rpartition(":")
        if colon and not scope:
            raise bad("nothing before ':'")
        level, dot, key = rest.partition(".")
        if not level:
            raise bad("no metric")
        if not dot:
            if rhs != "null":
                raise bad(f"{level}={rhs}: a whole level can only be set to null")
            if level == DEFAULT_LEVEL and scope:
                raise bad(f"{scope}:{DEFAULT_LEVEL}: a noise or condition scopes a metric")
            return cls(raw, scope or None, level, None, None, origin)
        if key not in GATE_KEYS:
            raise bad(f"unknown key {key!r}")
        if level == DEFAULT_LEVEL and scope:
            raise bad(f"{scope}:{DEFAULT_LEVEL}: a noise or condition scopes a metric")
        try:
            value = _value(key, rhs)
        except ConfigError as exc:
            raise ConfigError(f"{raw!r}: {exc}") from None
        return cls(raw, scope or None, level, key, value, origin)

    @property
    def path(self) -> str:
        """The gate table entry it sets (see ``gate_paths``)."""
        if self.level is None:
            return "on"
        where = (
            DEFAULT_LEVEL
            if self.level == DEFAULT_LEVEL
            else f"conditions.{self.scope}.{self.level}"
            if self.scope
            else f"metrics.{self.level}"
        )
        return where if self.key is None else f"{where}.{self.key}"

    @property
    def label(self) -> str:
        """Its source, as the reports show it: ``command line: --robust-gate TEXT``,
        ``ini: robusttest_gate TEXT`` or ``argument: gates TEXT`` (robusttest.run)."""
        if self.origin.endswith(INI_SUFFIX):
            return f"{INI_LABEL}: {self.origin.removesuffix(INI_SUFFIX)} {self.text}"
        where = COMMAND_LINE_LABEL if self.origin.startswith("-") else ARGUMENT_LABEL
        return f"{where}: {self.origin} {self.text}"


def _value(key: str, text: str) -> float | str | None:
    if text == "null":
        if key == "on":
            raise ConfigError("on=null: the judge mode is ci or point")
        return None
    if key == "on":
        try:
            return str(choice(JUDGE_ON)(text))
        except Invalid as exc:
            raise ConfigError(f"on: {exc.message}") from None
    try:
        number_ = float(text)
    except ValueError:
        raise ConfigError(f"{key}: {show(text)} is not a number (or null)") from None
    try:
        return float(number(*GATE_BOUNDS.get(key, (None, None)))(number_))
    except Invalid as exc:
        raise ConfigError(f"{key}: {exc.message}") from None


def apply_gate_overrides(suite: Suite, overrides: Iterable[GateOverride]) -> Suite:
    """The suite with its gate table changed by ``overrides``, in order (a later one wins);
    its hash covers the result and ``gate_sources`` says where each entry came from.

    ConfigError (naming the option) when one names a metric or a noise the suite lacks.
    """
    overrides = list(overrides)
    if not overrides:
        return suite
    t = suite.gates
    on: str = t.on
    default = _copy(t.default)
    metrics = {m: _copy(g) for m, g in t.metrics.items()}
    conditions = {c: {m: _copy(g) for m, g in per.items()} for c, per in t.conditions.items()}
    sources = dict(suite.gate_sources)
    for o in overrides:
        _check(suite, o)
        if o.level is None:
            on = str(o.value)
        elif o.level == DEFAULT_LEVEL:
            default = _set(default, o)
        elif o.scope is None:
            metrics[o.level] = _set(metrics.get(o.level, {}), o)
        else:
            per = conditions.setdefault(o.scope, {})
            per[o.level] = _set(per.get(o.level, {}), o)
        if o.key is None:  # a whole level: nothing below it stays from before
            sources = {p: s for p, s in sources.items() if not p.startswith(o.path + ".")}
        elif o.level is not None:  # a level the suite did not have comes from here too
            sources.setdefault(o.path.rpartition(".")[0], o.label)
        sources[o.path] = o.label
    gates = GateTable(on=cast(JudgeOn, on), default=default, metrics=metrics, conditions=conditions)
    return replace(suite, gates=gates, gate_sources=sources)


def _copy(level: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if level is None else dict(level)


def _set(level: dict[str, Any] | None, o: GateOverride) -> dict[str, Any] | None:
    if o.key is None:
        return None
    if level is None:
        # the level cleared every limit (null): it keeps clearing the others
        level = dict.fromkeys(GATE_KINDS)
    return {**level, o.key: o.value}


def _check(suite: Suite, o: GateOverride) -> None:
    where = f"{o.origin} {o.text!r}"
    if o.level not in (None, DEFAULT_LEVEL) and o.level not in suite.metrics:
        raise ConfigError(
            f"{where}: {o.level!r} is not a metric of suite {suite.name!r} "
            f"({', '.join(suite.metrics)}; or default for every metric)"
        )
    if o.scope is not None:
        known = sorted({n.name for n in suite.noise} | {n.slug for n in suite.noise})
        if o.scope not in known:
            raise ConfigError(
                f"{where}: {o.scope!r} is not a noise or condition of suite {suite.name!r} "
                f"(known: {', '.join(known)})"
            )


__all__ = [
    "GATE_SYNTAX",
    "MERGED_SECTIONS",
    "GateOverride",
    "apply_gate_overrides",
    "gate_paths",
    "gate_sources_of",
    "layered_sources",
    "merge_documents",
]

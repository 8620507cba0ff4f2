"""The value rules of the suite grammar, and its error messages.

A ``Rule`` is a check and the JSON Schema of what the check accepts, written side by side
so the validator and the schema cannot drift. A check returns the value in its final form
or raises ``Invalid``: the message says what is wrong, the value and what is allowed.
``one_line`` turns pydantic's first error into ``<file>: <yaml.key.path>: <message>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import PlainValidator, ValidationError, WithJsonSchema

Schema = dict[str, Any]


class Invalid(ValueError):
    """A value breaks a rule. ``at`` continues the YAML path below the value that holds
    the rule (``[2]``, ``.lmax``), for rules that look inside a list or mapping."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.at = at


def show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


@dataclass(frozen=True)
class Rule:
    check: Callable[[Any], Any]
    schema: Schema = field(default_factory=dict)

    @property
    def type(self) -> Any:
        """The rule as a pydantic field type."""
        return Annotated[Any, PlainValidator(self.check), WithJsonSchema(self.schema)]

    def __call__(self, value: Any) -> Any:
        return self.check(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(low: int, high: int | None = None) -> Rule:
    rng = f"[{low}, {high}]" if high is not None else f">= {low}"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{show(value)} is not an integer")
        if value < low or (high is not None and value > high):
            raise Invalid(f"{value} is not in {rng}")
        return value

    bounds = {"minimum": low} | ({} if high is None else {"maximum": high})
    return Rule(check, {"type": "integer", **bounds})


def number(low: float | None = None, high: float | None = None) -> Rule:
    rng = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"

    def check(value: Any) -> float:
        if not _is_number(value):
            raise Invalid(f"{show(value)} is not a number")
        v = float(value)
        if v != v or (low is not None and v < low) or (high is not None and v > high):
            raise Invalid(f"{value} is not in {rng}")
        return v

    bounds = ({} if low is None else {"minimum": low}) | ({} if high is None else {"maximum": high})
    return Rule(check, {"type": "number", **bounds})


def choice(values: Sequence[str], message: str = "{value} is not one of {allowed}") -> Rule:
    """One of ``values``; ``message`` may use ``{value}`` (shown) and ``{allowed}``."""
    allowed = tuple(values)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise Invalid(message.format(value=show(value), allowed=", ".join(allowed)))
        return value

    return Rule(check, {"enum": list(allowed)})


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"{show(value)} is not a non-empty string")
    return value


NAME = Rule(_name, {"type": "string", "minLength": 1})


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{show(value)} is not a string")
    return value


TEXT = Rule(_text, {"type": ["string", "null"]})


def _mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(f"{show(value)} is not a mapping (key: value pairs)")
    return dict(value)


MAPPING = Rule(_mapping, {"type": ["object", "null"]})


def optional(rule: Rule) -> Rule:
    """``rule`` or null (None)."""
    return Rule(
        lambda v: None if v is None else rule.check(v),
        {"anyOf": [rule.schema, {"type": "null"}]},
    )


def names(item: Rule = NAME) -> Rule:
    """One name or a list of them, each checked by ``item``; a tuple."""

    def check(value: Any) -> tuple[Any, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise Invalid(f"{show(value)} is not a list of names")
        out = []
        for i, v in enumerate(items):
            try:
                out.append(item.check(v))
            except Invalid as exc:
                raise Invalid(exc.message, f"[{i}]{exc.at}") from None
        return tuple(out)

    return Rule(check, {"anyOf": [item.schema, {"type": "array", "items": item.schema}]})


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(f"{show(value)} is not a list of pairs [positive, negative]")
    for i, p in enumerate(value):
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)):
            raise Invalid(f"{show(p)} is not a pair [positive, negative]", f"[{i}]")
    return tuple((p[0], p[1]) for p in value)


PAIRS = Rule(
    _pairs,
    {
        "type": ["array", "null"],
        "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
    },
)


def nothing(message: str) -> Rule:
    """Only an empty list or null: the key exists for other tasks (``message`` says which)."""

    def check(value: Any) -> tuple[()]:
        if value is None or value == []:
            return ()
        raise Invalid(message)

    return Rule(check, {"type": ["array", "null"], "maxItems": 0})


def finite(value: Any) -> float:
    """A finite number (levels: the open-ended ones would otherwise take .inf)."""
    if not _is_number(value):
        raise Invalid(f"{show(value)} is not a number")
    if not math.isfinite(value):
        raise Invalid(f"{value} is not a finite number")
    return float(value)


# --- messages ------------------------------------------------------------------------------
def _path(loc: Sequence[int | str]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in loc)


def one_line(source: str, exc: ValidationError, within: Mapping[str, str] | None = None) -> str:
    """``<source>: <yaml.key.path>: <message>`` for the first of pydantic's errors.

    ``within``: top-level keys that the file holds inside another key (a variant's body),
    so the path is the one in the file.
    """
    err = exc.errors()[0]
    cause = err.get("ctx", {}).get("error")
    at = ""
    if isinstance(cause, Invalid):
        msg, at = cause.message, cause.at
    elif isinstance(cause, Exception):
        msg = str(cause)
    elif err["type"] in ("dict_type", "model_type", "model_attributes_type"):
        msg = f"{show(err['input'])} is not a mapping (key: value pairs)"
    else:  # a pydantic message: its first line, with the value
        msg = f"{show(err['input'])}: {err['msg'].splitlines()[0]}"
    loc = list(err["loc"])
    if loc[-1:] == ["[key]"]:  # a mapping's key (YAML reads `1:` as a number)
        loc, msg = loc[:-2], f"key {show(err['input'])} is not a string"
    where = (_path(loc) + at).lstrip(".") or "(top level)"
    top = where.split(".", 1)[0].split("[", 1)[0]
    if within and top in within:
        where = f"{within[top]}.{where}"
    return f"{source}: {where}: {msg}"

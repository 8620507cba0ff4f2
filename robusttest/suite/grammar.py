"""The suite grammar, in one place: every key of a suite file, its type and what it allows.

The models are built from the registries (metrics per task, noise families with their
level parameter, ladders and parameters, gate kinds and judge modes), so an extension
registered at run time is accepted and documented like a built-in. Validation
(``validate``) and the JSON Schema (``json_schema``) both derive from these models.

A new top-level key is one entry in ``_top_level``: that makes it valid, typed, listed in
the "unknown key; allowed: ..." messages and in the schema (single-task files and each
variant of a multi-task file); ``parse_suite`` hands its value to the ``Suite`` field of
the same name.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from robusttest.errors import ConfigError, SuiteError
from robusttest.gates import GATE_KEYS, GATE_KINDS, JUDGE_ON, UNINFORMATIVE_POLICIES
from robusttest.imageio import DEFAULT_MAX_PIXELS, MIN_SIDE
from robusttest.metrics import METRICS, TASKS, available_metrics, default_metrics
from robusttest.noise import NoiseFamily, available_noises, get_noise
from robusttest.suite.rules import (
    MAPPING,
    NAME,
    PAIRS,
    TEXT,
    Invalid,
    Rule,
    Schema,
    choice,
    finite,
    integer,
    names,
    nothing,
    number,
    one_line,
    optional,
    show,
)

NOISE_AT: tuple[str, ...] = ("native", "model")
MODEL_KEYS: tuple[str, ...] = (
    "input_size",
    "channels",
    "mean",
    "std",
    "labels",
    "structures",
    "output_activation",
    "task",
)
TASK = choice(TASKS)
REPEATS = integer(1, 1000)
SEED = integer(0)
# bounds of the gate kinds beyond "a number" (a relative drop below zero means nothing)
GATE_BOUNDS: dict[str, tuple[float | None, float | None]] = {"max_relative_drop": (0.0, None)}


# --- sections ------------------------------------------------------------------------------
class Section(BaseModel):
    """A mapping of known keys: null reads as empty, an unknown key names the allowed ones."""

    model_config = ConfigDict(extra="forbid")
    unknown: ClassVar[str] = "unknown key; allowed: {allowed}"

    @classmethod
    def allowed_keys(cls) -> tuple[str, ...]:
        """The keys as a file spells them, in the order messages list them."""
        return tuple(f.alias or n for n, f in cls.model_fields.items())

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        """A short form of the whole section (e.g. a ladder name), as a mapping."""
        return value

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        data = MAPPING(cls.shorthand(data))
        allowed = cls.allowed_keys()
        for k in data:
            if k not in allowed:
                raise Invalid(cls.unknown.format(allowed=", ".join(allowed)), f".{k}")
        return data

    def given(self) -> dict[str, Any]:
        """The keys the file gave, spelled as in the file."""
        return self.model_dump(by_alias=True, exclude_unset=True)


def _also(*alternatives: Schema) -> Callable[[dict[str, Any]], None]:
    """json_schema_extra: a section field that also accepts the short forms given."""

    def extra(schema: dict[str, Any]) -> None:
        schema["anyOf"] = [{"$ref": schema.pop("$ref")}, *alternatives]

    return extra


def _key(kind: Rule | type[Section] | Any, default: Any, doc: str, **extra: Any) -> Any:
    """A field: a Rule, a Section (null or absent reads as the empty section; ``default``
    is not used) or a pydantic type."""
    if isinstance(kind, Rule):
        return (kind.type, Field(default, description=doc, **extra))
    if isinstance(kind, type) and issubclass(kind, Section):
        extra.setdefault("json_schema_extra", _also({"type": "null"}))
        return (kind, Field(default_factory=kind, description=doc, **extra))
    return (kind, Field(default, description=doc, **extra))


def _section(name: str, base: type[Section], doc: str, fields: Mapping[str, Any]) -> Any:
    return create_model(name, __base__=base, __doc__=doc, **fields)


# --- data, model, bootstrap ----------------------------------------------------------------
DATA = _section(
    "Data",
    Section,
    "Where the images come from.",
    {
        "adapter": _key(NAME, "phantom", "a registered dataset adapter"),
        "root": _key(optional(NAME), None, "the dataset's folder (${VAR} expands)"),
        "options": _key(MAPPING, {}, "the adapter's options"),
        "limit": _key(optional(integer(1)), None, "the first N images only"),
        "on_bad_image": _key(
            choice(("error", "skip")),
            "error",
            "an unreadable image: fail the run listing every one (error), or leave it out (skip)",
        ),
        "max_pixels": _key(
            optional(integer(MIN_SIDE * MIN_SIDE)),
            None,
            "largest image accepted, in pixels, checked from the header before decoding "
            f"(default {DEFAULT_MAX_PIXELS:,})",
        ),
        "bit_depth": _key(
            optional(integer(1, 32)),
            None,
            "bits of an integer image that hold data (e.g. 12 in a 16-bit PNG; default: the "
            "PNG sBIT chunk or DICOM BitsStored, else the file's 8 or 16)",
        ),
    },
)
MODEL = _section(
    "Model",
    Section,
    "Model card fields the suite sets for models whose card lacks them.",
    {k: (Any, Field(None)) for k in MODEL_KEYS},
)
BOOTSTRAP = _section(
    "Bootstrap",
    Section,
    "The patient bootstrap behind every confidence interval.",
    {
        "resamples": _key(integer(100), 1000, "bootstrap resamples"),
        "ci": _key(number(0.5, 0.999), 0.95, "confidence level of the intervals"),
    },
)


# --- gates ---------------------------------------------------------------------------------
def _gate_field(key: str) -> Any:
    if key == "on":
        return _key(choice(JUDGE_ON), None, "judge on the CI's conservative bound or the point")
    assert key in GATE_KINDS, key
    return _key(number(*GATE_BOUNDS.get(key, (None, None))), None, f"the {key} limit")


GATE = _section(
    "Gate",
    Section,
    "Limits of one case; null clears the limits of the levels before.",
    {k: _gate_field(k) for k in GATE_KEYS},
)


def _by_name(value: Any) -> Any:
    """A mapping of names to ``value`` or null (null reads as empty)."""
    return dict[str, value] | None


def _gates(name: str, metrics: tuple[str, ...]) -> Any:
    gate = GATE | None
    return _section(
        name,
        Section,
        "Gate limits at four levels, most specific last: default, metric, noise, condition.",
        {
            "on": _key(choice(JUDGE_ON), "ci", "judge on the CI's conservative bound or the point"),
            "default": _key(gate, None, "limits of every case"),
            "metrics": _key(
                _by_name(gate),
                None,
                "limits per metric",
                json_schema_extra={"propertyNames": {"enum": list(metrics)}},
            ),
            "conditions": _key(
                _by_name(_by_name(gate)),
                None,
                "limits per noise (all its levels) or condition (one level), then per metric",
            ),
            "floor": _key(
                _by_name(number().type),
                None,
                "clean-performance floor per metric: a target whose clean value misses it "
                "(or whose clean CI contains chance) makes its cases uninformative",
                json_schema_extra={"propertyNames": {"enum": list(metrics)}},
            ),
            "uninformative": _key(
                choice(UNINFORMATIVE_POLICIES),
                "report",
                "uninformative cases: reported apart (report) or failures (fail)",
            ),
        },
    )


# --- noise ---------------------------------------------------------------------------------
class NoiseEntry(Section):
    """One family's conditions: its levels (or a ladder of them), parameters, where added."""

    family: ClassVar[NoiseFamily]
    _levels: tuple[float, ...] = PrivateAttr(default=())
    if TYPE_CHECKING:  # the fields, made per family by _entry
        level: tuple[float, ...]
        ladder: str | None
        params: dict[str, Any]
        at: str

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):  # `quantum:` or `quantum: stress`
            return {"ladder": _ladder(cls.family)(value or "default")}
        if not isinstance(value, Mapping):
            ladders = ", ".join(cls.family.ladders)
            raise Invalid(f"{show(value)} is not a ladder ({ladders}) or a mapping of levels")
        return value

    @property
    def levels(self) -> tuple[float, ...]:
        return self._levels

    def _unit_given(self) -> tuple[str, tuple[float, ...]] | None:
        """(key, values) when the levels are given in one of the family's ``level_units``."""
        for name, f in type(self).model_fields.items():
            if f.alias in self.family.level_units and name in self.model_fields_set:
                return str(f.alias), getattr(self, name)
        return None

    @model_validator(mode="after")
    def _resolve(self) -> NoiseEntry:
        fam = self.family
        at = f".{fam.level_param}"
        unit = self._unit_given()
        if unit is not None:
            key, values = unit
            if "level" in self.model_fields_set:
                raise Invalid(f"give the levels as {fam.level_param} or as {key}, not both", at)
            levels = tuple(
                _level(fam, _from_unit(fam, key, v, self.params, f".{key}[{i}]"), f".{key}[{i}]")
                for i, v in enumerate(values)
            )
        elif "level" in self.model_fields_set:
            levels = self.level
        else:
            which = self.ladder or "default"
            try:
                ladder = _ladder(fam)(which)
            except Invalid as exc:
                raise Invalid(exc.message, ".ladder") from None
            ladder_levels = fam.ladders[ladder]
            levels = tuple(_level(fam, lv, f"{at}[{i}]") for i, lv in enumerate(ladder_levels))
        slugs: list[str] = []
        for i, lv in enumerate(levels):
            slug = fam.slug(lv)
            if slug in slugs:
                raise Invalid(f"{lv:g} repeats condition {slug}", f"{at}[{i}]")
            slugs.append(slug)
        self._levels = tuple(levels)
        return self


def _from_unit(fam: NoiseFamily, key: str, value: float, params: Any, at: str) -> float:
    try:
        return fam.level_from(key, value, dict(fam.check_params(dict(params))))
    except ConfigError as exc:
        raise Invalid(str(exc).split(": ", 1)[-1], at) from None


def _numbers(value: Any) -> tuple[float, ...]:
    """One finite number or a non-empty list of them."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise Invalid("empty list; give at least one level")
    out = []
    for i, v in enumerate(values):
        try:
            out.append(finite(v))
        except Invalid as exc:
            raise Invalid(exc.message, f"[{i}]") from None
    return tuple(out)


_NUMBER_OR_LIST: Schema = {
    "anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}, "minItems": 1}]
}


def _ladder(fam: NoiseFamily) -> Rule:
    return choice(tuple(fam.ladders), "unknown ladder {value}; known: {allowed}")


def _level(fam: NoiseFamily, value: Any, at: str) -> float:
    try:
        return fam.check_level(finite(value))
    except Invalid as exc:
        raise Invalid(exc.message, at) from None
    except ConfigError as exc:  # the family's own range: "quantum.dose: -0.1 is not in (0, 1]"
        raise Invalid(str(exc).split(": ", 1)[-1], at) from None


def _levels(fam: NoiseFamily) -> Rule:
    def check(value: Any) -> tuple[float, ...]:
        levels = value if isinstance(value, list) else [value]
        if not levels:
            raise Invalid("empty list; give at least one level")
        return tuple(_level(fam, lv, f"[{i}]") for i, lv in enumerate(levels))

    level: Schema = {"type": "number"}
    return Rule(check, {"anyOf": [level, {"type": "array", "items": level, "minItems": 1}]})


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _params(fam: NoiseFamily) -> Rule:
    """The family's parameters: each a number or a string, as its default is."""
    kinds = {k: "string" if isinstance(v, str) else "number" for k, v in fam.defaults.items()}

    def check(value: Any) -> dict[str, Any]:
        params = MAPPING(value)
        for k, v in params.items():
            if not isinstance(k, str):
                raise Invalid(f"key {show(k)} is not a string")
            if k in kinds and not _is_kind(v, kinds[k]):
                raise Invalid(f"{show(v)} is not a {kinds[k]}", f".{k}")
        try:
            fam.check_params(params)
        except ConfigError as exc:
            msg = str(exc)
            for k in params:
                if msg.startswith(f"{fam.name}.{k}:"):
                    raise Invalid(msg.split(": ", 1)[1], f".{k}") from None
            raise Invalid(msg) from None
        return params

    known = {k: {"type": kinds[k], "default": v} for k, v in fam.defaults.items()}
    return Rule(check, {"type": ["object", "null"], "properties": known})


def _entry(fam: NoiseFamily) -> Any:
    unit = f" ({fam.level_unit})" if fam.level_unit else ""
    cls = _section(
        f"Noise_{_ident(fam.name)}",
        NoiseEntry,
        fam.summary,
        {
            "level": _key(
                _levels(fam),
                None,
                f"{fam.level_param}{unit}: one level or a list of them",
                alias=fam.level_param,
            ),
            "ladder": _key(
                optional(_ladder(fam)), None, f"a named list of levels: {', '.join(fam.ladders)}"
            ),
            "params": _key(_params(fam), {}, "the family's parameters"),
            "at": _key(choice(NOISE_AT), "native", "native resolution, or the model's input"),
            **{
                f"u_{_ident(key)}": _key(
                    Rule(_numbers, _NUMBER_OR_LIST),
                    None,
                    f"the levels as {doc}: one or a list",
                    alias=key,
                )
                for key, doc in fam.level_units.items()
            },
        },
    )
    cls.family = fam
    return cls


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


class NoiseSection(Section):
    """Noise families, each with its conditions, in the order the file gives them."""

    unknown: ClassVar[str] = "unknown noise; known: {allowed}"
    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        inst = handler(data)
        inst._order = tuple(data) if isinstance(data, Mapping) else ()
        return inst

    def entries(self) -> list[NoiseEntry]:
        field_of = {f.alias: n for n, f in type(self).model_fields.items()}
        return [getattr(self, field_of[k]) for k in self._order]

    def conditions(self) -> set[str]:
        """What gates.conditions may name: each family, and each of its levels' slugs."""
        out: set[str] = set()
        for e in self.entries():
            out |= {e.family.name} | {e.family.slug(lv) for lv in e.levels}
        return out


def _noise(families: list[NoiseFamily]) -> Any:
    fields = {}
    for i, fam in enumerate(families):
        ladders: Schema = {"enum": list(fam.ladders)}
        fields[f"f{i}"] = _key(
            _entry(fam),
            None,
            fam.summary,
            alias=fam.name,
            json_schema_extra=_also(ladders, {"type": "null"}),
        )
    return _section("Noise", NoiseSection, NoiseSection.__doc__ or "", fields)


# --- frontier ------------------------------------------------------------------------------
FRONTIER_MIN = "min_level"


def _frontier_requirement(value: Any) -> dict[str, float] | None:
    """null, or {min_level: x} (or min_<unit>: x, e.g. min_dose_uGy for quantum)."""
    if value is None:
        return None
    req = MAPPING(value)
    if len(req) != 1:
        raise Invalid(
            f"{show(value)}: give one requirement, {FRONTIER_MIN}: LEVEL (or min_<unit> "
            "where the family has a unit, e.g. min_dose_uGy)"
        )
    ((key, v),) = req.items()
    if not isinstance(key, str) or not key.startswith("min_"):
        raise Invalid(f"unknown key; allowed: {FRONTIER_MIN} (or min_<unit>)", f".{key}")
    try:
        return {key: finite(v)}
    except Invalid as exc:
        raise Invalid(exc.message, f".{key}") from None


def _frontier(value: Any) -> dict[str, dict[str, dict[str, float] | None] | None]:
    """family -> null (every gated metric) | {metric: null | {min_level: x}}; a list of
    families reads as each null."""
    if value is None:
        return {}
    if isinstance(value, list):
        fams = names()(value)
        return dict.fromkeys(fams)
    out: dict[str, dict[str, dict[str, float] | None] | None] = {}
    for fam, per in MAPPING(value).items():
        if not isinstance(fam, str):
            raise Invalid(f"key {show(fam)} is not a string")
        if per is None:
            out[fam] = None
            continue
        metrics: dict[str, dict[str, float] | None] = {}
        for metric, req in MAPPING(per).items():
            try:
                metrics[str(metric)] = _frontier_requirement(req)
            except Invalid as exc:
                raise Invalid(exc.message, f".{fam}.{metric}{exc.at}") from None
        out[fam] = metrics
    return out


_REQUIREMENT: Schema = {
    "type": ["object", "null"],
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {FRONTIER_MIN: {"type": "number"}},
    "patternProperties": {"^min_": {"type": "number"}},
    "additionalProperties": False,
}
FRONTIER = Rule(
    _frontier,
    {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {
                "type": ["object", "null"],
                "additionalProperties": {
                    "type": ["object", "null"],
                    "additionalProperties": _REQUIREMENT,
                },
            },
        ]
    },
)


def _frontier_level(fam: NoiseFamily, req: Mapping[str, float], params: Any, at: str) -> float:
    """The required level of a frontier requirement, in the family's own level."""
    ((key, value),) = req.items()
    if key == FRONTIER_MIN:
        level = value
    else:
        unit = key.removeprefix("min_")
        if unit not in fam.level_units:
            allowed = ", ".join([FRONTIER_MIN, *(f"min_{u}" for u in fam.level_units)])
            raise Invalid(f"unknown key; allowed: {allowed}", f"{at}.{key}")
        level = _from_unit(fam, unit, value, params, f"{at}.{key}")
    level = _level(fam, level, f"{at}.{key}")
    mild, severe = fam.search_range()
    if not min(mild, severe) <= level <= max(mild, severe):
        raise Invalid(
            f"{value:g} is outside the levels the frontier searches ({mild:g} to {severe:g})",
            f"{at}.{key}",
        )
    return level


# --- the top level -------------------------------------------------------------------------
class SuiteBody(Section):
    """A suite file's top level (or the body of one variant)."""

    if TYPE_CHECKING:  # the fields parse_suite reads, made per task by _top_level
        name: str | None
        data: Any
        model: Section
        noise: NoiseSection
        metrics: tuple[str, ...]
        bootstrap: Any
        gates: Any
        frontier: Any

    @model_validator(mode="after")
    def _references(self) -> SuiteBody:
        """Gates may only name this suite's metrics and conditions."""
        metrics, gates = self.metrics, self.gates
        known = f"not a metric of this suite ({', '.join(metrics)})"
        for part in ("metrics", "floor"):
            for k in getattr(gates, part) or {}:
                if k not in metrics:
                    raise Invalid(known, f".gates.{part}.{k}")
        conditions = self.noise.conditions()
        for cond, per in (gates.conditions or {}).items():
            if cond not in conditions:
                raise Invalid(
                    "not a condition or noise of this suite; "
                    f"known: {', '.join(sorted(conditions))}",
                    f".gates.conditions.{cond}",
                )
            for k in per or {}:
                if k not in metrics:
                    raise Invalid(known, f".gates.conditions.{cond}.{k}")
        entries = {e.family.name: e for e in self.noise.entries()}
        resolved: dict[str, dict[str, float | None] | None] = {}
        for fam_name, per in (self.frontier or {}).items():
            entry = entries.get(fam_name)
            if entry is None:
                raise Invalid(
                    f"not a noise of this suite; known: {', '.join(entries) or '(none)'}",
                    f".frontier.{fam_name}",
                )
            if per is None:
                resolved[fam_name] = None
                continue
            out: dict[str, float | None] = {}
            for k, req in per.items():
                at = f".frontier.{fam_name}.{k}"
                if k not in metrics:
                    raise Invalid(known, at)
                out[k] = (
                    None if req is None else _frontier_level(entry.family, req, entry.params, at)
                )
            resolved[fam_name] = out
        self.frontier = resolved
        return self


_PAIRWISE = "pairwise tasks need task: classification"


def _top_level(task: str | None, noise: Any, gates: Any) -> dict[str, Any]:
    """Every top-level key of a suite file, in the order messages list them.

    The body of a variant is the same less ``task``; ``task`` None: the keys shared by
    the variants of a multi-task file (any task's metrics: loading a variant checks them
    against its task).
    """
    metrics = _metrics(task)
    what = f"{task} metric" if task else "metric"
    return {
        "name": _key(optional(NAME), None, "the suite's name (default: the file's name)"),
        "extends": _key(
            optional(NAME),
            None,
            "a suite this one builds on: a built-in name or a YAML path relative to this "
            "file; this file's keys override its keys (data, model, bootstrap and gates "
            "merge key by key, noise family by family; `FAMILY: false` drops one)",
        ),
        "description": _key(TEXT, "", "one line for reports"),
        "task": _key(
            Rule(TASK.check, {"const": task}) if task else TASK, ..., "the kind of model it tests"
        ),
        "data": _key(DATA, None, "where the images come from"),
        "model": _key(MODEL, None, "model card fields for models whose card lacks them"),
        "noise": _key(noise, None, "noise families and their levels: the grid's conditions"),
        "repeats": _key(REPEATS, 1, "noise draws per image and condition"),
        "seed": _key(SEED, 0, "the seed of every noise draw"),
        "metrics": _key(
            names(choice(metrics, f"{{value}} is not a {what}; allowed: {{allowed}}")),
            default_metrics(task) if task else None,
            "metrics computed for every target and condition",
        ),
        "targets": _key(optional(names()), None, "structures or labels (default: the model's)"),
        "pairwise": _key(
            PAIRS if task in (None, "classification") else nothing(_PAIRWISE),
            (),
            "binary tasks [positive, negative] between two labels (classification)",
        ),
        "threshold": _key(number(0.0, 1.0), 0.5, "probability threshold of a mask pixel"),
        "bootstrap": _key(BOOTSTRAP, None, "confidence intervals"),
        "gates": _key(gates, None, "limits to assert"),
        "frontier": _key(
            FRONTIER,
            None,
            "failure frontiers to search, per noise family and metric (null: every gated "
            "metric), each optionally required to lie at min_level or more noise",
        ),
    }


def _metrics(task: str | None) -> tuple[str, ...]:
    tasks = TASKS if task is None else (task,)
    return tuple(dict.fromkeys(m for t in tasks for m in available_metrics(t)))


class MultiTaskFile(Section):
    """Shared keys and one body per task; the model card's task picks one."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": [t]} for t in TASKS]}
    )


class Grammar:
    """The models of one registry state, each built when first needed: a single-task file
    per task (validation), and any suite file (the schema)."""

    def __init__(self) -> None:
        self.noise = _noise([get_noise(n) for n in available_noises()])
        self._gates: dict[str | None, Any] = {}
        self._suites: dict[str, type[SuiteBody]] = {}
        self._file: TypeAdapter[Any] | None = None

    def gates(self, task: str | None) -> Any:
        if task not in self._gates:
            self._gates[task] = _gates(f"{(task or 'shared').title()}Gates", _metrics(task))
        return self._gates[task]

    def suite(self, task: str) -> type[SuiteBody]:
        """The top level of a single-task suite file."""
        if task not in self._suites:
            top = _top_level(task, self.noise, self.gates(task))
            self._suites[task] = _section(
                f"{task.title()}Suite", SuiteBody, f"A {task} suite.", top
            )
        return self._suites[task]

    def file(self) -> TypeAdapter[Any]:
        """Any suite file: single-task, or shared keys beside one body per task."""
        if self._file is None:
            variants: dict[str, Any] = {}
            for t in TASKS:
                body = _top_level(t, self.noise, self.gates(t))
                del body["task"]
                variant = _section(f"{t.title()}Variant", SuiteBody, f"The {t} variant.", body)
                variants[t] = (variant, Field(None, description=f"the suite for {t} models"))
            shared = _top_level(None, self.noise, self.gates(None))
            del shared["task"]
            doc = MultiTaskFile.__doc__ or ""
            multi = _section("MultiTaskSuite", MultiTaskFile, doc, {**shared, **variants})
            files = [*(self.suite(t) for t in TASKS), multi]
            self._file = TypeAdapter(functools.reduce(operator.or_, files))
        return self._file


def _registry_state() -> tuple[Any, ...]:
    """What the grammar depends on; the registry objects themselves, so a replaced
    family or metric is a new state."""
    metrics = tuple((n, m, m.tasks, m.default) for n, m in METRICS.items())
    noises = []
    for n in available_noises():
        f = get_noise(n)
        noises.append((n, f, f.level_param, tuple(f.ladders.items())))
    return metrics, tuple(noises)


@functools.lru_cache(maxsize=4)
def _grammar(state: tuple[Any, ...]) -> Grammar:
    return Grammar()


def grammar() -> Grammar:
    """The grammar of the registries as they are now (built once per state)."""
    return _grammar(_registry_state())


def validate(doc: Any, source: str, within: Mapping[str, str] | None = None) -> SuiteBody:
    """The validated top level of a single-task suite document; SuiteError otherwise.

    ``within``: top-level keys the file holds in a variant's body (see ``one_line``).
    """
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise SuiteError(f"{source}: (top level): {show(doc)} is not a mapping (key: value pairs)")
    if doc.get("task") is None:
        raise SuiteError(f"{source}: task: missing; allowed: {', '.join(TASKS)}")
    try:
        task = TASK(doc["task"])
    except Invalid as exc:
        raise SuiteError(f"{source}: task: {exc.message}") from None
    try:
        return grammar().suite(task).model_validate(doc)
    except ValidationError as exc:
        raise SuiteError(one_line(source, exc, within)) from None


class _Schema(GenerateJsonSchema):
    """Property titles repeat the key; a null default says nothing an absent key does not."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        if "default" in out and out["default"] is None:
            del out["default"]
        return out


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a suite file, for editors.

    It accepts what the validator accepts except what a schema cannot say: the families'
    own level and parameter ranges (``check_level``, ``check_params``), repeated levels,
    gates naming the suite's own metrics and conditions, and metrics shared by the
    variants of a multi-task file (checked against each variant's task when loaded).
    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "robusttest suite",
        "description": (
            "A single-task suite (`task:`), or shared keys beside one body per task "
            "(`segmentation:`, `classification:`), the model card's task picking one."
        ),
        **grammar().file().json_schema(schema_generator=_Schema),
    }

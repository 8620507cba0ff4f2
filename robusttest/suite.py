"""Suite files: validated once into frozen objects, expanded into a grid of cases.

A suite says which data to use, which noise conditions to apply, which metrics to compute
and which gates to assert. Every validation error names the file, the key path, the value
and what is allowed, e.g. ``lungs.yaml: noise.quantum.dose[2]: -0.1 is not in (0, 1]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from robusttest import resources
from robusttest.errors import ConfigError, SuiteError, UnknownNameError
from robusttest.gates import CLEAN, GATE_KEYS, JUDGE_ON, GateLimits, GateSpec, GateTable
from robusttest.noise import NoiseSpec, available_noises, get_noise

Task = Literal["segmentation", "classification"]
TASKS: tuple[str, ...] = ("segmentation", "classification")
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "segmentation": ("dice", "iou", "hd95"),
    "classification": ("auroc",),
}
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "segmentation": ("dice",),
    "classification": ("auroc",),
}
# Which built-in suite `pytest --model m.onnx` runs when no --suite is given.
DEFAULT_SUITE_FOR_TASK = {"segmentation": "lungs", "classification": "findings"}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (YAML 1.1 reads the gate key `on:` as True.)"""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
# YAML 1.1 (PyYAML) reads `1e-3` and `7.5e5` as strings: its floats need a dot and a signed
# exponent. YAML 1.2 reads them as floats, and so must a suite (`dose: [1e-3]`).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


# --- where built-in suites live (robusttest.resources finds them) ----------------------
def suite_dirs() -> list[Path]:
    """ROBUSTTEST_SUITES, then the built-in suites shipped with the package."""
    return resources.suite_dirs()


def builtin_suites() -> dict[str, Path]:
    return resources.builtin_suites()


# --- validation helpers --------------------------------------------------------------------
class _V:
    """Validation context: the file name, for messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, msg: str) -> SuiteError:
        return SuiteError(f"{self.source}: {path}: {msg}")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, f"{_show(value)} is not a mapping (key: value pairs)")
        return value

    def keys(self, value: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
        for k in value:
            if k not in allowed:
                where = f"{path}.{k}" if path else str(k)
                raise self.fail(where, f"unknown key; allowed: {', '.join(allowed)}")

    def integer(self, value: Any, path: str, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"{_show(value)} is not an integer")
        if value < low or (high is not None and value > high):
            rng = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise self.fail(path, f"{value} is not in {rng}")
        return value

    def number(
        self, value: Any, path: str, low: float | None = None, high: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"{_show(value)} is not a number")
        v = float(value)
        if v != v or (low is not None and v < low) or (high is not None and v > high):
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            raise self.fail(path, f"{value} is not in [{lo}, {hi}]")
        return v

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"{_show(value)} is not a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail(path, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def str_list(self, value: Any, path: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(path, f"{_show(value)} is not a list of names")
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(value))


def _show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


# --- the model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    adapter: str
    root: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    on_bad_image: Literal["error", "skip"] = "error"


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
    source: str = "<memory>"
    sha256: str = ""  # derived: recomputed on every construction (replace, with_overrides)

    def __post_init__(self) -> None:
        # A Suite may be built or changed (with_overrides, dataclasses.replace) after the
        # file was validated: keep the invariants the engine relies on, and keep the hash
        # in step with the definition it identifies (provenance).
        v = _V(self.source)
        v.integer(self.repeats, "repeats", 1, 1000)
        v.integer(self.seed, "seed", 0)
        object.__setattr__(self, "sha256", _suite_digest(self))

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

    def with_overrides(self, **kw: Any) -> Suite:
        """A copy with the given fields replaced (None = keep); __post_init__ re-hashes."""
        from dataclasses import replace

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
            "source": self.source,
        }


def _suite_digest(suite: Suite) -> str:
    blob = json.dumps({**suite.to_dict(), "source": None}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# --- parsing ---------------------------------------------------------------------------------
TOP_KEYS = (
    "name",
    "description",
    "task",
    "data",
    "model",
    "noise",
    "repeats",
    "seed",
    "metrics",
    "targets",
    "pairwise",
    "threshold",
    "bootstrap",
    "gates",
)
MODEL_KEYS = (
    "input_size",
    "channels",
    "mean",
    "std",
    "labels",
    "structures",
    "output_activation",
    "task",
)


def _parse_gate(v: _V, value: Any, path: str) -> GateLimits | None:
    if value is None:
        return None
    m = v.mapping(value, path)
    v.keys(m, path, GATE_KEYS)
    kw: dict[str, Any] = {}
    if "on" in m:
        kw["on"] = v.string(m["on"], f"{path}.on", JUDGE_ON)
    if "min" in m:
        kw["min"] = v.number(m["min"], f"{path}.min")
    if "max_drop" in m:
        kw["max_drop"] = v.number(m["max_drop"], f"{path}.max_drop")
    if "max_relative_drop" in m:
        kw["max_relative_drop"] = v.number(m["max_relative_drop"], f"{path}.max_relative_drop", 0.0)
    return kw


NOISE_AT = ("native", "model")


def _parse_noise(v: _V, value: Any) -> tuple[tuple[NoiseSpec, ...], dict[str, str]]:
    m = v.mapping(value, "noise")
    specs: list[NoiseSpec] = []
    at: dict[str, str] = {}
    for name, entry in m.items():
        path = f"noise.{name}"
        try:
            fam = get_noise(str(name))
        except UnknownNameError:
            raise v.fail(path, f"unknown noise; known: {', '.join(available_noises())}") from None
        if entry is None or isinstance(entry, str):
            which = entry or "default"
            if which not in fam.ladders:
                raise v.fail(path, f"unknown ladder {which!r}; known: {', '.join(fam.ladders)}")
            levels: list[Any] = list(fam.ladders[which])
            params: Mapping[str, Any] = {}
        else:
            e = v.mapping(entry, path)
            v.keys(e, path, (fam.level_param, "ladder", "params", "at"))
            params = v.mapping(e.get("params"), f"{path}.params")
            if v.string(e.get("at", "native"), f"{path}.at", NOISE_AT) == "model":
                at[fam.name] = "model"
            if fam.level_param in e:
                raw = e[fam.level_param]
                levels = raw if isinstance(raw, list) else [raw]
                if not levels:
                    raise v.fail(f"{path}.{fam.level_param}", "empty list; give at least one level")
            else:
                which = e.get("ladder", "default")
                if which not in fam.ladders:
                    raise v.fail(
                        f"{path}.ladder",
                        f"unknown ladder {which!r}; known: {', '.join(fam.ladders)}",
                    )
                levels = list(fam.ladders[which])
        for i, lv in enumerate(levels):
            lpath = f"{path}.{fam.level_param}[{i}]"
            if isinstance(lv, bool) or not isinstance(lv, (int, float)):
                raise v.fail(lpath, f"{_show(lv)} is not a number")
            if not math.isfinite(lv):  # the open-ended levels (sigma_e, rate) took .inf
                raise v.fail(lpath, f"{lv} is not a finite number")
            try:  # the level alone first, so a params error is not blamed on the level
                fam.check_level(float(lv))
            except ConfigError as exc:
                raise v.fail(lpath, str(exc).split(": ", 1)[-1]) from None
            try:
                spec = NoiseSpec(fam.name, float(lv), dict(params))
            except ConfigError as exc:
                msg = str(exc)
                for k in params:
                    if msg.startswith(f"{fam.name}.{k}:"):
                        raise v.fail(f"{path}.params.{k}", msg.split(": ", 1)[1]) from None
                raise v.fail(f"{path}.params", msg) from None
            if any(s.slug == spec.slug for s in specs):
                raise v.fail(lpath, f"{lv} repeats condition {spec.slug}")
            specs.append(spec)
    return tuple(specs), at


def parse_suite(doc: Any, source: str = "<memory>") -> Suite:
    """Validate a suite document (the parsed YAML) into a frozen Suite."""
    v = _V(source)
    m = v.mapping(doc, "(top level)")
    v.keys(m, "", TOP_KEYS)
    name = v.string(m.get("name", Path(source).stem), "name")
    if m.get("task") is None:
        raise v.fail("task", f"missing; allowed: {', '.join(TASKS)}")
    task = v.string(m.get("task"), "task", TASKS)

    d = v.mapping(m.get("data"), "data")
    v.keys(d, "data", ("adapter", "root", "options", "limit", "on_bad_image"))
    root = d.get("root")
    if root is not None:
        root = v.string(str(root), "data.root")
    data = DataConfig(
        adapter=v.string(d.get("adapter", "phantom"), "data.adapter"),
        root=root,
        options=dict(v.mapping(d.get("options"), "data.options")),
        limit=None if d.get("limit") is None else v.integer(d["limit"], "data.limit", 1),
        on_bad_image=v.string(
            d.get("on_bad_image", "error"), "data.on_bad_image", ("error", "skip")
        ),  # type: ignore[arg-type]
    )

    model = dict(v.mapping(m.get("model"), "model"))
    v.keys(model, "model", MODEL_KEYS)

    metrics = v.str_list(m.get("metrics", list(DEFAULT_METRICS[task])), "metrics")
    for i, met in enumerate(metrics):
        if met not in METRICS_BY_TASK[task]:
            raise v.fail(
                f"metrics[{i}]",
                f"{met!r} is not a {task} metric; allowed: {', '.join(METRICS_BY_TASK[task])}",
            )
    targets = None if m.get("targets") is None else v.str_list(m["targets"], "targets")
    pairs: list[tuple[str, str]] = []
    for i, p in enumerate(m.get("pairwise") or []):
        if task != "classification":
            raise v.fail("pairwise", "pairwise tasks need task: classification")
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)):
            raise v.fail(f"pairwise[{i}]", f"{_show(p)} is not a pair [positive, negative]")
        pairs.append((p[0], p[1]))

    b = v.mapping(m.get("bootstrap"), "bootstrap")
    v.keys(b, "bootstrap", ("resamples", "ci"))
    resamples = v.integer(b.get("resamples", 1000), "bootstrap.resamples", 100)
    ci = v.number(b.get("ci", 0.95), "bootstrap.ci", 0.5, 0.999)

    g = v.mapping(m.get("gates"), "gates")
    v.keys(g, "gates", ("on", "default", "metrics", "conditions"))
    on = v.string(g.get("on", "ci"), "gates.on", JUDGE_ON)
    gm = v.mapping(g.get("metrics"), "gates.metrics")
    for k in gm:
        if k not in metrics:
            raise v.fail(f"gates.metrics.{k}", f"not a metric of this suite ({', '.join(metrics)})")
    noise, noise_at = _parse_noise(v, m.get("noise"))
    slugs = {n.slug for n in noise} | {n.name for n in noise}
    gc = v.mapping(g.get("conditions"), "gates.conditions")
    conditions: dict[str, dict[str, GateLimits | None]] = {}
    for cond, per in gc.items():
        if cond not in slugs:
            raise v.fail(
                f"gates.conditions.{cond}",
                f"not a condition or noise of this suite; known: {', '.join(sorted(slugs))}",
            )
        pm = v.mapping(per, f"gates.conditions.{cond}")
        for k in pm:
            if k not in metrics:
                raise v.fail(
                    f"gates.conditions.{cond}.{k}",
                    f"not a metric of this suite ({', '.join(metrics)})",
                )
        conditions[str(cond)] = {
            str(k): _parse_gate(v, pm[k], f"gates.conditions.{cond}.{k}") for k in pm
        }
    gates = GateTable(
        on=on,  # type: ignore[arg-type]
        default=_parse_gate(v, g.get("default"), "gates.default"),
        metrics={str(k): _parse_gate(v, gm[k], f"gates.metrics.{k}") for k in gm},
        conditions=conditions,
    )
    suite = Suite(
        name=name,
        task=task,  # type: ignore[arg-type]
        description=str(m.get("description", "")),
        data=data,
        model=model,
        noise=noise,
        noise_at=noise_at,
        metrics=metrics,
        targets=targets,
        pairwise=tuple(pairs),
        repeats=v.integer(m.get("repeats", 1), "repeats", 1, 1000),
        seed=v.integer(m.get("seed", 0), "seed", 0),
        threshold=v.number(m.get("threshold", 0.5), "threshold", 0.0, 1.0),
        resamples=resamples,
        ci=ci,
        gates=gates,
        source=source,
    )
    return suite  # sha256 is derived in Suite.__post_init__


def select_variant(doc: Any, source: str, task: str | None) -> Any:
    """A suite file may hold one body per task (``segmentation:``, ``classification:``)
    beside shared keys; the model's task picks the body."""
    if not isinstance(doc, Mapping) or "task" in doc or not any(t in doc for t in TASKS):
        return doc
    have = [t for t in TASKS if t in doc]
    if task is None:
        raise SuiteError(
            f"{source}: the suite has {' and '.join(have)} variants; the model card's task "
            "picks one (give a model, or use a single-task suite)"
        )
    if task not in doc:
        raise SuiteError(f"{source}: no {task} variant (it has {', '.join(have)})")
    shared = {k: v for k, v in doc.items() if k not in TASKS}
    body = doc[task]
    if not isinstance(body, Mapping):
        raise SuiteError(f"{source}: {task}: {_show(body)} is not a mapping")
    return {**shared, **body, "task": task}


def load_suite(ref: str | Path, task: str | None = None) -> Suite:
    """A suite by built-in name (``lungs``) or by path to a YAML file.

    ``task`` picks the variant of a multi-task suite file (e.g. the paper's grid).
    """
    p = Path(ref)
    known = builtin_suites()
    if str(ref) in known and not p.is_file():
        p = known[str(ref)]
    elif not p.exists():
        if p.suffix in (".yaml", ".yml"):
            raise SuiteError(f"{p}: no such suite file; check the path")
        raise UnknownNameError("suite", str(ref), known)
    try:
        doc = read_yaml(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SuiteError(f"{p}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise SuiteError(f"{p}: cannot read ({exc.strerror})") from None
    return parse_suite(select_variant(doc, str(p), task), str(p))


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a suite file, for editors."""
    gate = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "min": {"type": "number"},
            "max_drop": {"type": "number"},
            "max_relative_drop": {"type": "number", "minimum": 0},
            "on": {"enum": ["ci", "point"]},
        },
    }
    noise_props: dict[str, Any] = {}
    for name in available_noises():
        fam = get_noise(name)
        noise_props[name] = {
            "oneOf": [
                {"type": "null"},
                {"enum": list(fam.ladders)},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        fam.level_param: {
                            "oneOf": [
                                {"type": "number"},
                                {"type": "array", "items": {"type": "number"}},
                            ]
                        },
                        "ladder": {"enum": list(fam.ladders)},
                        "at": {"enum": list(NOISE_AT)},
                        "params": {"type": "object"},
                    },
                },
            ],
            "description": fam.summary,
        }
    metric_names = sorted({m for ms in METRICS_BY_TASK.values() for m in ms})
    body: dict[str, Any] = {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "data": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "adapter": {"type": "string"},
                "root": {"type": ["string", "null"]},
                "options": {"type": "object"},
                "limit": {"type": ["integer", "null"], "minimum": 1},
                "on_bad_image": {"enum": ["error", "skip"]},
            },
        },
        "model": {"type": "object", "propertyNames": {"enum": list(MODEL_KEYS)}},
        "noise": {"type": "object", "additionalProperties": False, "properties": noise_props},
        "repeats": {"type": "integer", "minimum": 1, "maximum": 1000},
        "seed": {"type": "integer", "minimum": 0},
        "metrics": {  # one name or a list, as parse_suite accepts
            "oneOf": [
                {"enum": metric_names},
                {"type": "array", "items": {"enum": metric_names}},
            ]
        },
        "targets": {
            "oneOf": [
                {"type": "string"},
                {"type": ["array", "null"], "items": {"type": "string"}},
            ]
        },
        "pairwise": {
            "type": "array",
            "items": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 2,
                "maxItems": 2,
            },
        },
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "bootstrap": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "resamples": {"type": "integer", "minimum": 100},
                "ci": {"type": "number", "minimum": 0.5, "maximum": 0.999},
            },
        },
        "gates": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "on": {"enum": ["ci", "point"]},
                "default": gate,
                "metrics": {"type": "object", "additionalProperties": gate},
                "conditions": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": gate},
                },
            },
        },
    }
    variant = {"type": "object", "additionalProperties": False, "properties": body}
    has_variant = {"anyOf": [{"required": [t]} for t in TASKS]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "robusttest suite",
        "type": "object",
        "additionalProperties": False,
        # either a single-task suite (`task:`), or one body per task beside shared keys
        # (the model card's task picks one, e.g. suites/paper-2509.25265.yaml)
        "oneOf": [
            {"required": ["task"], "not": has_variant},
            {"not": {"required": ["task"]}, **has_variant},
        ],
        "properties": {**body, "task": {"enum": list(TASKS)}, **{t: variant for t in TASKS}},
    }

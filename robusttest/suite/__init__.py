"""Suite files: validated once into frozen objects, expanded into a grid of cases.

A suite says which data to use, which noise conditions to apply, which metrics to compute
and which gates to assert. Its grammar is ``robusttest.suite.grammar`` (validation and the
JSON Schema both derive from it); the validated object is ``robusttest.suite.model.Suite``.
Every validation error names the file, the key path, the value and what is allowed, e.g.
``lungs.yaml: noise.quantum.dose[2]: -0.1 is not in (0, 1]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robusttest import resources
from robusttest.errors import SuiteError, UnknownNameError
from robusttest.gates import GateTable
from robusttest.metrics import TASKS, Task
from robusttest.noise import NoiseSpec
from robusttest.suite import layers
from robusttest.suite.grammar import NOISE_AT, json_schema, validate
from robusttest.suite.model import CaseSpec, DataConfig, Suite
from robusttest.suite.rules import show

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


# --- where built-in suites live ----------------------------------------------------------
def suite_dirs() -> list[Path]:
    """ROBUSTTEST_SUITES, then the built-in suites shipped with the package."""
    return resources.suite_dirs()


def builtin_suites() -> dict[str, Path]:
    return resources.builtin_suites()


# --- parsing ---------------------------------------------------------------------------------
# Top-level keys parse_suite builds into Suite fields itself; every other key of the grammar
# goes, as validated, to the Suite field of its name (a key without one, e.g. a loading
# directive, belongs here and is consumed below).
_BUILT = ("name", "extends", "data", "model", "noise", "bootstrap", "gates")


def parse_suite(
    doc: Any,
    source: str = "<memory>",
    *,
    within: Mapping[str, str] | None = None,
    task: str | None = None,
) -> Suite:
    """Validate a suite document (the parsed YAML) into a frozen Suite.

    ``within``: top-level keys that the file holds in a variant's body, by variant, so
    messages give their path in the file (``classification.metrics[0]``). ``extends``
    is resolved here (relative paths from ``source``'s folder); ``task`` picks the variant
    of a multi-task suite it extends when the document names no task.
    """
    doc, extends, gate_sources = _extends(doc, source, task, ())
    top = validate(doc, source, within)
    data, noise, boot, gates = top.data, top.noise, top.bootstrap, top.gates
    specs: list[NoiseSpec] = []
    noise_at: dict[str, str] = {}
    for entry in noise.entries():
        name = entry.family.name
        specs += [NoiseSpec(name, lv, dict(entry.params)) for lv in entry.levels]
        if entry.at == "model":
            noise_at[name] = "model"
    return Suite(
        name=top.name or Path(source).stem,
        data=DataConfig(**dict(data)),
        model=top.model.given(),
        noise=tuple(specs),
        noise_at=noise_at,
        resamples=boot.resamples,
        ci=boot.ci,
        gates=GateTable(
            on=gates.on,
            default=_limits(gates.default),
            metrics={k: _limits(g) for k, g in (gates.metrics or {}).items()},
            conditions={
                c: {k: _limits(g) for k, g in (per or {}).items()}
                for c, per in (gates.conditions or {}).items()
            },
            floor=dict(gates.floor or {}),
            uninformative=gates.uninformative,
        ),
        source=source,
        extends=extends,
        gate_sources=gate_sources,
        **{k: v for k, v in top if k not in _BUILT},
    )  # sha256 is derived in Suite.__post_init__


def _extends(
    doc: Any, source: str, task: str | None, seen: tuple[Path, ...]
) -> tuple[Any, tuple[str, ...], dict[str, str]]:
    """The document with ``extends`` applied (layers.merge_documents, recursively), the
    suites it extends ("ref (path)", nearest first) and its gate entries' sources."""
    own = f"{layers.SUITE_LABEL}: {source}"
    if not isinstance(doc, Mapping) or doc.get("extends") is None:
        sources = layers.gate_sources_of(doc, own) if isinstance(doc, Mapping) else {}
        return doc, (), sources
    ref = doc["extends"]
    if not isinstance(ref, str) or not ref.strip():
        raise SuiteError(f"{source}: extends: {show(ref)} is not a suite name or path")
    path = _extended_path(ref.strip(), source)
    here = Path(source).resolve() if Path(source).is_file() else None
    if path in seen or path == here:
        chain = " -> ".join(str(p) for p in (*seen, here, path) if p is not None)
        raise SuiteError(f"{source}: extends: {ref}: suites extend each other ({chain})")
    own_task = doc.get("task")
    want = own_task if isinstance(own_task, str) else task
    raw = _read_document(path)
    base = select_variant(raw, str(path), want)
    within = {k: str(want) for k in raw[want]} if base is not raw else None
    chain_here = (*seen, here) if here is not None else seen
    base, base_chain, base_sources = _extends(base, str(path), want, chain_here)
    validate(base, str(path), within)  # valid on its own: its messages name its file
    base_task = base.get("task") if isinstance(base, Mapping) else None
    if own_task is not None and base_task is not None and own_task != base_task:
        raise SuiteError(
            f"{source}: task: {own_task!r}, but the suite it extends ({ref}) is a "
            f"{base_task} suite; extend a {own_task} suite or leave task out"
        )
    merged = layers.merge_documents(base, doc)
    sources = layers.layered_sources(merged, doc, base_sources)
    sources.update(layers.gate_sources_of(doc, own))
    return merged, (f"{ref} ({path})", *base_chain), sources


def _extended_path(ref: str, source: str) -> Path:
    """A built-in suite name, or a YAML path (relative to the extending file's folder)."""
    if not (ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref):
        known = builtin_suites()
        if ref not in known:
            raise SuiteError(
                f"{source}: extends: unknown suite {ref!r}; built-in: {', '.join(known)} "
                "(or give a path to a .yaml file)"
            )
        return known[ref].resolve()
    p = Path(ref).expanduser()
    here = Path(source).parent if Path(source).is_file() else Path.cwd()
    p = p if p.is_absolute() else here / p
    if not p.is_file():
        raise SuiteError(f"{source}: extends: {ref}: no such suite file ({p})")
    return p.resolve()


def _read_document(p: Path) -> Any:
    try:
        return read_yaml(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SuiteError(f"{p}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise SuiteError(f"{p}: cannot read ({exc.strerror})") from None


def _limits(gate: Any) -> dict[str, Any] | None:
    return None if gate is None else gate.given()


def select_variant(doc: Any, source: str, task: str | None) -> Any:
    """A suite file may hold one body per task (``segmentation:``, ``classification:``)
    beside shared keys; the model card's task picks the body."""
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
        raise SuiteError(f"{source}: {task}: {show(body)} is not a mapping")
    if "task" in body:
        raise SuiteError(f"{source}: {task}.task: unknown key; the variant's key is its task")
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
    doc = _read_document(p)
    merged = select_variant(doc, str(p), task)
    within = {k: str(task) for k in doc[task]} if merged is not doc else None
    return parse_suite(merged, str(p), within=within, task=task)


__all__ = [
    "DEFAULT_SUITE_FOR_TASK",
    "NOISE_AT",
    "TASKS",
    "CaseSpec",
    "DataConfig",
    "Suite",
    "Task",
    "builtin_suites",
    "json_schema",
    "load_suite",
    "parse_suite",
    "read_yaml",
    "select_variant",
    "suite_dirs",
]

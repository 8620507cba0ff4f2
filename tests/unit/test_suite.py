"""Suite files: loading, validation messages, gate resolution, grid ids, schema and hash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from robusttest.errors import ConfigError, SuiteError
from robusttest.gates import GateSpec
from robusttest.suite import (
    builtin_suites,
    json_schema,
    load_suite,
    parse_suite,
    read_yaml,
)

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "suites"

BASE = """\
name: s
task: segmentation
data: {adapter: phantom, options: {n: 6, size: 64}}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def load_error(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(SuiteError) as exc:
        load_suite(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: "), msg  # every message names the file first
    assert "\n" not in msg
    return msg[len(f"{p}: ") :]


# --- built-in suites ------------------------------------------------------------------
SINGLE = sorted(n for n in (p.stem for p in SUITES.glob("*.yaml")) if n != "paper-2509.25265")


def test_builtin_suites_are_all_found() -> None:
    names = set(builtin_suites())
    assert {p.stem for p in SUITES.glob("*.yaml")} <= names
    assert {"lungs", "findings", "paper-2509.25265"} <= names


@pytest.mark.parametrize("name", SINGLE)
def test_every_single_task_builtin_suite_loads(name: str) -> None:
    s = load_suite(name)
    assert s.name == name
    assert s.task in ("segmentation", "classification")
    assert s.noise, "a built-in suite without noise tests nothing"
    assert len(s.sha256) == 64
    targets = list(s.targets or ("x",)) + s.pairwise_names()
    cases = s.cases(targets)
    assert len(cases) == len(targets) * len(s.metrics) * (1 + len(s.noise))
    assert len({c.case_id for c in cases}) == len(cases)


def test_lungs_suite_grid_by_hand() -> None:
    s = load_suite("lungs")
    # quantum, electronic and gaussian default ladders: 5 levels each
    assert [n.slug for n in s.noise][:5] == [
        "quantum-dose50",
        "quantum-dose25",
        "quantum-dose10",
        "quantum-dose5",
        "quantum-dose2",
    ]
    assert [n.slug for n in s.noise][5:7] == ["electronic-sigma5", "electronic-sigma10"]
    assert s.conditions[0] == "clean" and len(s.conditions) == 16
    assert s.metrics == ("dice", "hd95") and s.repeats == 2 and s.resamples == 1000


@pytest.mark.parametrize(
    ("task", "metrics"),
    [("segmentation", ("dice", "iou", "hd95")), ("classification", ("auroc",))],
)
def test_paper_suite_both_variants(task: str, metrics: tuple[str, ...]) -> None:
    from robusttest.data import available_adapters

    s = load_suite("paper-2509.25265", task)
    assert s.task == task and s.metrics == metrics
    assert s.data.adapter in available_adapters() and s.data.adapter != "phantom"
    assert s.name == "paper-2509.25265"
    assert s.repeats == 2 and s.seed == 0 and s.resamples == 1000  # shared keys
    assert {n.name for n in s.noise} == {"gaussian", "poisson", "quantum"}
    assert len(s.noise) == 15
    if task == "classification":
        assert s.pairwise == (("Pneumothorax", "Atelectasis"),)
        assert s.pairwise_names() == ["Pneumothorax-vs-Atelectasis"]


def test_paper_variants_hash_differently() -> None:
    a = load_suite("paper-2509.25265", "segmentation")
    b = load_suite("paper-2509.25265", "classification")
    assert a.sha256 != b.sha256


def test_multi_variant_suite_needs_a_task() -> None:
    with pytest.raises(SuiteError, match="segmentation and classification variants"):
        load_suite("paper-2509.25265")


def test_missing_variant_is_named(tmp_path: Path) -> None:
    p = write(tmp_path, "name: v\nsegmentation:\n  data: {adapter: phantom}\n")
    with pytest.raises(SuiteError, match=r"no classification variant \(it has segmentation\)"):
        load_suite(p, "classification")


def test_unknown_suite_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        load_suite("no-such-suite")
    assert "lungs" in str(exc.value) and "no-such-suite" in str(exc.value)


def test_missing_yaml_path(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "absent.yaml")


# --- validation messages -----------------------------------------------------------------
def test_level_out_of_range_message_is_exact(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "noise:\n  quantum:\n    dose: [0.5, 0.2, -0.1]\n")
    assert msg == "noise.quantum.dose[2]: -0.1 is not in (0, 1]"


@pytest.mark.parametrize(
    ("noise", "level", "expected"),
    [
        ("gaussian", "[0.1, 1.5]", "noise.gaussian.sigma[1]: 1.5 is not in [0, 1]"),
        ("poisson", "[0]", "noise.poisson.rate[0]: 0.0 is not in (0, inf]"),
        ("electronic", "[-1]", "noise.electronic.sigma_e[0]: -1.0 is not in [0, inf]"),
        ("gaussian", "[0.1, high]", "noise.gaussian.sigma[1]: 'high' is not a number"),
        ("gaussian", "[true]", "noise.gaussian.sigma[0]: True is not a number"),
        ("gaussian", "[]", "noise.gaussian.sigma: empty list; give at least one level"),
        ("electronic", "[5, .inf]", "noise.electronic.sigma_e[1]: inf is not a finite number"),
        ("poisson", ".inf", "noise.poisson.rate[0]: inf is not a finite number"),
        ("gaussian", ".nan", "noise.gaussian.sigma[0]: nan is not a finite number"),
    ],
)
def test_level_errors_name_the_path(tmp_path: Path, noise: str, level: str, expected: str) -> None:
    param = {"gaussian": "sigma", "poisson": "rate", "electronic": "sigma_e"}[noise]
    msg = load_error(tmp_path, BASE + f"noise:\n  {noise}:\n    {param}: {level}\n")
    assert msg == expected


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "bogus: 1\n")
    assert msg.startswith("bogus: unknown key; allowed: name, description, task, data")
    assert "gates" in msg


def test_unknown_nested_key_has_dotted_path(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "bootstrap: {resample: 100}\n")
    assert msg == "bootstrap.resample: unknown key; allowed: resamples, ci"


def test_unknown_noise_lists_the_known_ones(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "noise:\n  speckle: default\n")
    assert msg == "noise.speckle: unknown noise; known: electronic, gaussian, poisson, quantum"


def test_unknown_ladder(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "noise:\n  quantum: heavy\n")
    assert msg == "noise.quantum: unknown ladder 'heavy'; known: default, stress"


def test_repeated_level_is_refused(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "noise:\n  quantum: {dose: [0.5, 0.5]}\n")
    assert msg == "noise.quantum.dose[1]: 0.5 repeats condition quantum-dose50"


def test_params_errors_point_at_params_not_the_level(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "noise:\n  quantum: {dose: [0.5], params: {lmax: -1}}\n")
    assert msg == "noise.quantum.params.lmax: -1.0 is not in (0, 50]"
    msg = load_error(tmp_path, BASE + "noise:\n  quantum: {dose: [0.5], params: {dose: 0.3}}\n")
    assert msg.startswith("noise.quantum.params.dose: set dose through the level")
    msg = load_error(tmp_path, BASE + "noise:\n  gaussian: {sigma: 0.1, params: {foo: 1}}\n")
    assert msg.startswith("noise.gaussian.params: gaussian: unknown parameter(s) foo")


def test_wrong_metric_for_the_task(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "metrics: [dice, auroc]\n")
    assert msg == "metrics[1]: 'auroc' is not a segmentation metric; allowed: dice, iou, hd95"
    cls = BASE.replace("segmentation", "classification")
    msg = load_error(tmp_path, cls + "metrics: dice\n")
    assert msg == "metrics[0]: 'dice' is not a classification metric; allowed: auroc"


def test_gate_on_a_metric_not_in_the_suite(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "metrics: [dice]\ngates:\n  metrics:\n    iou: {min: 0.5}\n")
    assert msg == "gates.metrics.iou: not a metric of this suite (dice)"
    text = BASE + "noise: {gaussian: {sigma: 0.1}}\ngates:\n  conditions:\n"
    msg = load_error(tmp_path, text + "    gaussian: {hd95: {min: 1}}\n")
    assert msg == "gates.conditions.gaussian.hd95: not a metric of this suite (dice)"


def test_gate_on_an_unknown_condition(tmp_path: Path) -> None:
    text = BASE + "noise: {gaussian: {sigma: 0.1}}\ngates:\n  conditions:\n"
    msg = load_error(tmp_path, text + "    quantum: {dice: {min: 1}}\n")
    assert msg == (
        "gates.conditions.quantum: not a condition or noise of this suite; "
        "known: gaussian, gaussian-sigma0.1"
    )


def test_unknown_gate_key_and_bad_on(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "gates:\n  default: {max: 0.1}\n")
    assert msg == "gates.default.max: unknown key; allowed: min, max_drop, max_relative_drop, on"
    msg = load_error(tmp_path, BASE + "gates:\n  default: {on: yes, min: 0.5}\n")
    assert msg == "gates.default.on: 'yes' is not one of ci, point"


def test_missing_task_lists_the_tasks(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE.replace("task: segmentation\n", ""))
    assert msg == "task: missing; allowed: segmentation, classification"
    msg = load_error(tmp_path, BASE.replace("task: segmentation", "task: detection"))
    assert msg == "task: 'detection' is not one of segmentation, classification"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("repeats: 0\n", "repeats: 0 is not in [1, 1000]"),
        ("seed: -1\n", "seed: -1 is not in >= 0"),
        ("threshold: 1.5\n", "threshold: 1.5 is not in [0, 1]"),
        ("bootstrap: {resamples: 10}\n", "bootstrap.resamples: 10 is not in >= 100"),
        ("data: 3\n", "data: 3 is not a mapping (key: value pairs)"),
        ("pairwise: [[a, b]]\n", "pairwise: pairwise tasks need task: classification"),
    ],
)
def test_scalar_errors(tmp_path: Path, extra: str, expected: str) -> None:
    text = BASE.replace("data: {adapter: phantom, options: {n: 6, size: 64}}\n", "") + extra
    assert load_error(tmp_path, text) == expected


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    # the stray `}` is line 4, column 23 (1-based) of this text
    text = "name: x\ntask: segmentation\nnoise:\n  quantum: {dose: [0.5}\n"
    msg = load_error(tmp_path, text)
    assert msg.startswith("line 4, column 23 invalid YAML"), msg


# --- YAML dialect ----------------------------------------------------------------------
def test_yaml_11_booleans_are_not_booleans() -> None:
    doc = read_yaml("on: yes\noff: no\ny: n\nOn: Off\nt: true\nf: FALSE\n")
    assert doc == {"on": "yes", "off": "no", "y": "n", "On": "Off", "t": True, "f": False}
    # PyYAML's own loader would have turned the key into True: check we differ
    assert True in yaml.safe_load("on: ci")


def test_gates_on_key_survives_in_a_suite(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + "gates:\n  on: point\n  default: {on: ci, min: 0.5}\n")
    s = load_suite(p)
    assert s.gates.on == "point"
    assert s.gates.default == {"on": "ci", "min": 0.5}


def test_yaml_12_exponent_floats() -> None:
    assert read_yaml("a: 1e-3\nb: 7.5e5\nc: 2.5E+2\nd: 10\ne: 0.5\n") == {
        "a": 0.001,
        "b": 750000.0,
        "c": 250.0,
        "d": 10,
        "e": 0.5,
    }
    s = parse_suite(read_yaml(BASE + "noise:\n  quantum: {dose: [5e-3]}\n"))
    assert s.noise[0].level == 0.005


# --- gates -----------------------------------------------------------------------------
GATES = (
    BASE
    + """\
noise:
  gaussian: {sigma: [0.1, 0.2]}
  quantum: {dose: [0.5, 0.1]}
metrics: [dice, iou, hd95]
gates:
  on: ci
  default: {min: 0.5, max_drop: 0.1}
  metrics:
    dice: {max_drop: 0.05}
    hd95: null
  conditions:
    gaussian:
      dice: {max_drop: 0.2}
    gaussian-sigma0.2:
      dice: {max_relative_drop: 0.3, on: point}
    quantum:
      dice: null
      iou: {min: 0.7}
    quantum-dose10:
      dice: {max_drop: 0.3}
"""
)


def gate_of(tmp_path: Path, metric: str, condition: str) -> GateSpec | None:
    s = load_suite(write(tmp_path, GATES))
    by_id = {c.case_id: c for c in s.cases(["lungs"])}
    return by_id[f"lungs-{metric}[{condition}]"].gate


@pytest.mark.parametrize(
    ("metric", "condition", "expected"),
    [
        # default < metric: dice's max_drop replaces the default's, min stays
        ("dice", "gaussian-sigma0.1", GateSpec(min=0.5, max_drop=0.2)),  # noise level wins
        (
            "dice",
            "gaussian-sigma0.2",  # condition beats noise; `on` from the condition
            GateSpec(min=0.5, max_drop=0.2, max_relative_drop=0.3, on="point"),
        ),
        ("dice", "quantum-dose50", None),  # noise null clears everything before it
        ("dice", "quantum-dose10", GateSpec(max_drop=0.3)),  # ...and a condition adds back
        ("dice", "clean", GateSpec(min=0.5)),  # clean keeps only min
        ("iou", "gaussian-sigma0.1", GateSpec(min=0.5, max_drop=0.1)),  # default only
        ("iou", "quantum-dose50", GateSpec(min=0.7, max_drop=0.1)),
        ("iou", "clean", GateSpec(min=0.5)),
        ("hd95", "gaussian-sigma0.1", None),  # metric null
        ("hd95", "clean", None),
    ],
)
def test_gate_merging(
    tmp_path: Path, metric: str, condition: str, expected: GateSpec | None
) -> None:
    assert gate_of(tmp_path, metric, condition) == expected


def test_clean_without_min_has_no_gate(tmp_path: Path) -> None:
    p = write(
        tmp_path, BASE + "noise: {gaussian: {sigma: 0.1}}\ngates: {default: {max_drop: 0.1}}\n"
    )
    cases = load_suite(p).cases(["lungs"])
    assert [c.gate for c in cases] == [None, GateSpec(max_drop=0.1)]


def test_suite_level_on_point_reaches_every_gate(tmp_path: Path) -> None:
    text = BASE + "noise: {gaussian: {sigma: 0.1}}\ngates: {on: point, default: {min: 0.2}}\n"
    cases = load_suite(write(tmp_path, text)).cases(["lungs"])
    assert {c.gate for c in cases} == {GateSpec(min=0.2, on="point")}


# --- grid --------------------------------------------------------------------------------
def test_case_ids_and_order(tmp_path: Path) -> None:
    text = BASE + "noise:\n  quantum: {dose: [0.5, 0.1]}\n  gaussian: {sigma: 0.04}\n"
    text += "metrics: [dice, hd95]\n"
    s = load_suite(write(tmp_path, text))
    ids = [c.case_id for c in s.cases(["lungs", "heart"])]
    assert ids[:4] == [
        "lungs-dice[clean]",
        "lungs-dice[quantum-dose50]",
        "lungs-dice[quantum-dose10]",
        "lungs-dice[gaussian-sigma0.04]",
    ]
    assert ids[4] == "lungs-hd95[clean]" and ids[8] == "heart-dice[clean]"
    assert len(ids) == 2 * 2 * 4
    c = s.cases(["lungs"])[2]
    assert (c.metric, c.target, c.condition) == ("dice", "lungs", "quantum-dose10")
    assert c.noise is not None and c.noise.level == pytest.approx(0.1)
    assert s.noise_spec("clean") is None and s.noise_spec("quantum-dose10") == c.noise


def test_default_metrics_by_task(tmp_path: Path) -> None:
    assert load_suite(write(tmp_path, BASE)).metrics == ("dice",)
    cls = BASE.replace("segmentation", "classification")
    assert load_suite(write(tmp_path, cls)).metrics == ("auroc",)


# --- JSON Schema ---------------------------------------------------------------------------
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "null": type(None),
}


def _type_ok(x: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(x, int) and not isinstance(x, bool)
    if t == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if t == "boolean":
        return isinstance(x, bool)
    return isinstance(x, _TYPES[t])


def validate(x: Any, schema: Any, path: str = "$") -> list[str]:
    """A small JSON Schema checker: the keywords json_schema() uses, nothing more."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: not allowed"]
    known = {
        "$schema",
        "title",
        "description",
        "type",
        "enum",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "oneOf",
        "anyOf",
        "not",
        "minimum",
        "maximum",
        "propertyNames",
        "minItems",
        "maxItems",
    }
    assert set(schema) <= known, f"validator lacks {set(schema) - known}"
    errs: list[str] = []
    if "type" in schema:
        ts = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(x, t) for t in ts):
            return [f"{path}: {x!r} is not of type {ts}"]
    if "enum" in schema and x not in schema["enum"]:
        errs.append(f"{path}: {x!r} not in {schema['enum']}")
    if "minimum" in schema and _type_ok(x, "number") and x < schema["minimum"]:
        errs.append(f"{path}: {x} < {schema['minimum']}")
    if "maximum" in schema and _type_ok(x, "number") and x > schema["maximum"]:
        errs.append(f"{path}: {x} > {schema['maximum']}")
    if isinstance(x, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in x:
                errs.append(f"{path}: missing {k}")
        for k, v in x.items():
            if k in props:
                errs += validate(v, props[k], f"{path}.{k}")
            elif "additionalProperties" in schema:
                errs += validate(v, schema["additionalProperties"], f"{path}.{k}")
            if "propertyNames" in schema:
                errs += validate(k, schema["propertyNames"], f"{path}.<{k}>")
    if isinstance(x, list):
        if "items" in schema:
            for i, v in enumerate(x):
                errs += validate(v, schema["items"], f"{path}[{i}]")
        if len(x) < schema.get("minItems", 0) or len(x) > schema.get("maxItems", 1 << 30):
            errs.append(f"{path}: length {len(x)}")
    if "oneOf" in schema:
        ok = sum(not validate(x, s, path) for s in schema["oneOf"])
        if ok != 1:
            errs.append(f"{path}: matches {ok} of oneOf")
    if "anyOf" in schema and not any(not validate(x, s, path) for s in schema["anyOf"]):
        errs.append(f"{path}: matches none of anyOf")
    if "not" in schema and not validate(x, schema["not"], path):
        errs.append(f"{path}: matches not")
    return errs


def test_schema_is_json_and_names_the_draft() -> None:
    schema = json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]["noise"]["properties"]) == {
        "electronic",
        "gaussian",
        "poisson",
        "quantum",
    }


@pytest.mark.parametrize("path", sorted(SUITES.glob("*.yaml")), ids=lambda p: p.stem)
def test_schema_accepts_every_builtin_suite(path: Path) -> None:
    doc = read_yaml(path.read_text(encoding="utf-8"))
    assert validate(doc, json_schema()) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(bogus=1),
        lambda d: d.update(task="detection"),
        lambda d: d.pop("task"),
        lambda d: d.update(repeats=0),
        lambda d: d["noise"].update(speckle="default"),
        lambda d: d["noise"].update(quantum="heavy"),
        lambda d: d["noise"].update(quantum={"dose": [0.5], "levels": 1}),
        lambda d: d["gates"].update(default={"max": 1}),
        lambda d: d["gates"].update(on="yes"),
        lambda d: d.update(metrics=["dice", "f1"]),
        lambda d: d.update(segmentation={"noise": {}}),  # task and a variant at once
    ],
)
def test_schema_rejects_what_the_loader_rejects(mutate: Any) -> None:
    doc = read_yaml((SUITES / "lungs.yaml").read_text(encoding="utf-8"))
    mutate(doc)
    assert validate(doc, json_schema()) != []


# --- hash ---------------------------------------------------------------------------------
def test_sha256_stable_and_independent_of_the_path(tmp_path: Path) -> None:
    text = BASE + "noise:\n  quantum: {dose: [0.5, 0.1]}\n"
    a = load_suite(write(tmp_path, text, "a.yaml"))
    b = load_suite(write(tmp_path, text, "b.yaml"))
    assert a.sha256 == b.sha256 == load_suite(tmp_path / "a.yaml").sha256
    # the hash is the sha256 of the canonical definition without its source
    blob = json.dumps({**a.to_dict(), "source": None}, sort_keys=True).encode()
    import hashlib

    assert a.sha256 == hashlib.sha256(blob).hexdigest()


def test_sha256_changes_when_a_level_changes(tmp_path: Path) -> None:
    a = load_suite(write(tmp_path, BASE + "noise:\n  quantum: {dose: [0.5, 0.1]}\n", "a.yaml"))
    b = load_suite(write(tmp_path, BASE + "noise:\n  quantum: {dose: [0.5, 0.11]}\n", "b.yaml"))
    assert a.sha256 != b.sha256


def test_overrides_update_the_hash_and_keep_the_invariants(tmp_path: Path) -> None:
    s = load_suite(write(tmp_path, BASE + "noise:\n  quantum: {dose: 0.5}\n"))
    t = s.with_overrides(seed=5, repeats=None)
    assert (t.seed, t.repeats) == (5, s.repeats)
    assert t.sha256 != s.sha256  # provenance must identify what actually ran
    assert s.with_overrides(seed=0).sha256 == s.sha256
    limited = dataclasses.replace(s, data=dataclasses.replace(s.data, limit=3))
    assert limited.sha256 != s.sha256
    with pytest.raises(SuiteError, match=r"repeats: 0 is not in \[1, 1000\]"):
        s.with_overrides(repeats=0)
    with pytest.raises(SuiteError, match="seed: -2"):
        dataclasses.replace(s, seed=-2)


def test_to_dict_is_json_and_complete(tmp_path: Path) -> None:
    s = load_suite(write(tmp_path, GATES))
    d = json.loads(json.dumps(s.to_dict()))
    assert d["gates"]["metrics"] == {"dice": {"max_drop": 0.05}, "hd95": None}
    assert d["noise"][0] == {
        "noise": "gaussian",
        "level": 0.1,
        "params": {},
        "at": "native",
    }
    assert d["bootstrap"] == {"resamples": 1000, "ci": 0.95}
    assert d["source"] == str(tmp_path / "s.yaml")


def test_robusttest_suites_env_overrides_a_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lungs.yaml").write_text(BASE.replace("name: s", "name: mine"), encoding="utf-8")
    monkeypatch.setenv("ROBUSTTEST_SUITES", str(tmp_path))
    assert builtin_suites()["lungs"] == tmp_path / "lungs.yaml"
    assert load_suite("lungs").name == "mine"
    assert "findings" in builtin_suites()  # the others are still found


def test_noise_at_is_validated_and_kept(tmp_path: Path) -> None:
    from robusttest.suite import parse_suite

    doc = {
        "task": "segmentation",
        "noise": {"gaussian": {"sigma": [0.1], "at": "model"}, "quantum": {"dose": [0.5]}},
    }
    s = parse_suite(doc, "at.yaml")
    assert s.noise_at == {"gaussian": "model"}
    assert [n["at"] for n in s.to_dict()["noise"]] == ["model", "native"]
    doc["noise"] = {"gaussian": {"sigma": [0.1], "at": "input"}}
    with pytest.raises(
        SuiteError, match=r"at\.yaml: noise\.gaussian\.at: 'input' is not one of native, model"
    ):
        parse_suite(doc, "at.yaml")

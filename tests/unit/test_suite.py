"""Suite files: loading, validation messages, gate resolution, grid ids, schema and hash."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml

from robusttest.errors import ConfigError, SuiteError, check_range
from robusttest.gates import GATE_KEYS, GateSpec
from robusttest.metrics import available_metrics, register_metric
from robusttest.noise import available_noises
from robusttest.suite import (
    builtin_suites,
    json_schema,
    load_suite,
    parse_suite,
    read_yaml,
    select_variant,
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
    # quantum down to where the fixture breaks (doses 1e-3 .. 1e-5, slugs in percent),
    # electronic and gaussian default ladders: 5 levels each
    assert [n.slug for n in s.noise][:5] == [
        "quantum-dose0.1",
        "quantum-dose0.03",
        "quantum-dose0.01",
        "quantum-dose0.003",
        "quantum-dose0.001",
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


def test_errors_in_a_variant_name_its_path_in_the_file(tmp_path: Path) -> None:
    text = "seed: -1\nclassification:\n  metrics: [dice]\n  data: {limit: 0}\n"
    p = write(tmp_path, text)
    with pytest.raises(SuiteError) as exc:
        load_suite(p, "classification")
    assert str(exc.value) == f"{p}: classification.data.limit: 0 is not in >= 1"
    p = write(tmp_path, text.replace("limit: 0", "limit: 1"))
    with pytest.raises(SuiteError) as exc:
        load_suite(p, "classification")
    assert str(exc.value) == f"{p}: seed: -1 is not in >= 0"  # a shared key
    p = write(tmp_path, text.replace("limit: 0", "limit: 1").replace("seed: -1", "seed: 1"))
    with pytest.raises(SuiteError) as exc:
        load_suite(p, "classification")
    assert str(exc.value) == (
        f"{p}: classification.metrics[0]: 'dice' is not a classification metric; allowed: auroc"
    )


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
    assert msg.startswith("bogus: unknown key; allowed: name, extends, description, task, data")
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
    assert msg == "metrics[1]: 'auroc' is not a segmentation metric; allowed: dice, hd95, iou"
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
# The schema is checked with the reference validator (`jsonschema`), independent of pydantic.
def schema_errors(doc: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(json_schema())
    return [e.message for e in validator.iter_errors(doc)]


def test_schema_is_json_and_names_the_draft() -> None:
    schema = json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["$defs"]["Noise"]["properties"]) == set(available_noises())
    seg = schema["$defs"]["SegmentationSuite"]["properties"]
    assert seg["metrics"]["anyOf"][0] == {"enum": list(available_metrics("segmentation"))}
    assert list(schema["$defs"]["Gate"]["properties"]) == list(GATE_KEYS)


@pytest.mark.parametrize("path", sorted(SUITES.glob("*.yaml")), ids=lambda p: p.stem)
def test_schema_accepts_every_builtin_suite(path: Path) -> None:
    doc = read_yaml(path.read_text(encoding="utf-8"))
    assert schema_errors(doc) == []


def lungs() -> dict[str, Any]:
    doc = read_yaml((SUITES / "lungs.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def paper() -> dict[str, Any]:
    doc = read_yaml((SUITES / "paper-2509.25265.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def loader_error(doc: Any, task: str | None = None) -> str:
    with pytest.raises(SuiteError) as exc:
        parse_suite(select_variant(doc, "s.yaml", task), "s.yaml")
    return str(exc.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(bogus=1), "s.yaml: bogus: unknown key; allowed: name,"),
        (lambda d: d.update(task="detection"), "s.yaml: task: 'detection' is not one of"),
        (lambda d: d.pop("task"), "s.yaml: task: missing"),
        (lambda d: d.update(repeats=0), "s.yaml: repeats: 0 is not in [1, 1000]"),
        (lambda d: d.update(repeats=True), "s.yaml: repeats: True is not an integer"),
        (lambda d: d.update(name=""), "s.yaml: name: '' is not a non-empty string"),
        (lambda d: d.update(data=3), "s.yaml: data: 3 is not a mapping"),
        (lambda d: d["data"].update(limit=0), "s.yaml: data.limit: 0 is not in >= 1"),
        (lambda d: d["noise"].update(speckle="default"), "s.yaml: noise.speckle: unknown noise"),
        (lambda d: d["noise"].update(quantum="heavy"), "s.yaml: noise.quantum: unknown ladder"),
        (
            lambda d: d["noise"].update(quantum={"dose": [0.5], "levels": 1}),
            "s.yaml: noise.quantum.levels: unknown key; allowed: dose, ladder, params, at",
        ),
        (
            lambda d: d["noise"].update(quantum={"dose": []}),
            "s.yaml: noise.quantum.dose: empty list",
        ),
        (
            lambda d: d["noise"].update(quantum={"dose": 0.5, "at": "input"}),
            "s.yaml: noise.quantum.at: 'input' is not one of native, model",
        ),
        (
            lambda d: d["noise"].update(quantum={"dose": 0.5, "params": {"lmax": "abc"}}),
            "s.yaml: noise.quantum.params.lmax: 'abc' is not a number",
        ),
        (
            lambda d: d["noise"].update(quantum={"dose": 0.5, "params": {"variant": 1}}),
            "s.yaml: noise.quantum.params.variant: 1 is not a string",
        ),
        (lambda d: d["gates"].update(default={"max": 1}), "s.yaml: gates.default.max: unknown"),
        (
            lambda d: d["gates"].update(default={"max_relative_drop": -0.1}),
            "s.yaml: gates.default.max_relative_drop: -0.1 is not in [0, inf]",
        ),
        (lambda d: d["gates"].update(on="yes"), "s.yaml: gates.on: 'yes' is not one of ci"),
        (lambda d: d["gates"]["metrics"].update(f1=None), "s.yaml: gates.metrics.f1: not a"),
        (lambda d: d.update(metrics=["dice", "f1"]), "s.yaml: metrics[1]: 'f1' is not a"),
        (lambda d: d.update(metrics="auroc"), "s.yaml: metrics[0]: 'auroc' is not a seg"),
        (lambda d: d.update(pairwise=[["a", "b"]]), "s.yaml: pairwise: pairwise tasks need"),
        (lambda d: d.update(segmentation={"noise": {}}), "s.yaml: segmentation: unknown key"),
    ],
)
def test_schema_and_loader_reject_the_same_single_task_suites(mutate: Any, message: str) -> None:
    doc = lungs()
    mutate(doc)
    assert schema_errors(doc) != []
    assert loader_error(doc).startswith(message)


@pytest.mark.parametrize(
    ("mutate", "task", "message"),
    [
        (lambda d: d.update(task="segmentation"), "segmentation", "s.yaml: segmentation: unk"),
        (
            lambda d: [d.pop(t) for t in ("segmentation", "classification")],
            None,
            "s.yaml: task: mis",
        ),
        (
            lambda d: d["classification"].update(task="classification"),
            "classification",
            "s.yaml: classification.task: unknown key",
        ),
        (
            lambda d: d["classification"].update(metrics=["dice"]),
            "classification",
            "s.yaml: metrics[0]: 'dice' is not a classification metric",
        ),
        (
            lambda d: d["segmentation"].update(pairwise=[["a", "b"]]),
            "segmentation",
            "s.yaml: pairwise: pairwise tasks need task: classification",
        ),
        (lambda d: d.update(repeats=0), "segmentation", "s.yaml: repeats: 0 is not in"),
        (
            lambda d: d.update(classification=None),
            "classification",
            "s.yaml: classification: None is not a mapping",
        ),
    ],
)
def test_schema_and_loader_reject_the_same_variant_suites(
    mutate: Any, task: str | None, message: str
) -> None:
    doc = paper()
    mutate(doc)
    assert schema_errors(doc) != []
    assert loader_error(doc, task).startswith(message)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["noise"].update(quantum=None),  # the default ladder
        lambda d: d["noise"].update(quantum="stress"),
        lambda d: d["noise"].update(quantum={"ladder": "stress", "at": "model"}),
        lambda d: d["noise"].update(quantum={"dose": 0.3, "params": {"variant": "resample"}}),
        lambda d: d.update(metrics="iou", targets="lungs", pairwise=None, gates={"on": "point"}),
        lambda d: d.update(data=None, model=None, bootstrap=None, gates=None),
        lambda d: d.update(model={"input_size": [64, 64], "channels": 1}),
        lambda d: d["gates"].update(default=None, conditions={"quantum-dose0.01": None}),
        lambda d: d["gates"].update(metrics={"dice": {"min": 1, "on": "point"}}),
    ],
)
def test_schema_and_loader_accept_the_same_short_forms(mutate: Any) -> None:
    doc = lungs()
    mutate(doc)
    assert schema_errors(doc) == []
    parse_suite(doc, "s.yaml")


def test_a_number_as_a_key_is_one_line(tmp_path: Path) -> None:
    msg = load_error(tmp_path, BASE + "gates:\n  metrics:\n    1: {min: 0.5}\n")
    assert msg == "gates.metrics: key 1 is not a string"
    msg = load_error(tmp_path, BASE + "noise:\n  quantum: {dose: 0.5, params: {1: 2}}\n")
    assert msg == "noise.quantum.params: key 1 is not a string"


def test_what_only_the_loader_checks() -> None:
    """What a schema cannot say: the families' own level and parameter ranges, repeated
    levels, gates that name conditions of this suite. The schema accepts, the loader says."""
    cases = [
        ({"noise": {"quantum": {"dose": [-0.1]}}}, "noise.quantum.dose[0]: -0.1 is not in (0, 1]"),
        ({"noise": {"quantum": {"dose": [0.5, 0.5]}}}, "noise.quantum.dose[1]: 0.5 repeats"),
        (
            {"noise": {"quantum": {"dose": 0.5, "params": {"lmax": -1}}}},
            "noise.quantum.params.lmax",
        ),
        ({"threshold": float("nan")}, "threshold: nan is not in [0, 1]"),  # not JSON anyway
    ]
    for change, message in cases:
        doc = {**lungs(), "gates": None, **change}
        assert schema_errors(doc) == []
        assert loader_error(doc).startswith(f"s.yaml: {message}")
    gated = {**lungs(), "gates": {"conditions": {"quantum-dose3": {"dice": None}}}}
    assert schema_errors(gated) == []
    assert "gates.conditions.quantum-dose3: not a condition" in loader_error(gated)


@pytest.fixture
def extension() -> Iterator[None]:
    """A metric and a noise family registered at run time, removed afterwards."""
    import robusttest.noise as noise_mod
    from robusttest.metrics import METRICS, SegmentationBatch, SegmentationMetric
    from robusttest.noise import NoiseFamily, register_noise

    @register_metric
    class Sensitivity(SegmentationMetric):
        name = "sensitivity"

        def values(self, batch: SegmentationBatch) -> Any:
            return batch.inter / batch.n_true.clip(1)

    class Blur(NoiseFamily):
        name = "soft-blur"
        level_param = "radius"
        summary = "a test family"
        ladders: ClassVar[dict[str, tuple[float, ...]]] = {"mild": (1.0, 2.0)}

        def check_level(self, level: float) -> float:
            return check_range("soft-blur.radius", level, 0.0, 10.0)

        def _apply(self, x: Any, level: float, params: Any, gens: Any, spacing_mm: Any) -> Any:
            return x.clone()

    register_noise(Blur)
    try:
        yield
    finally:
        METRICS.remove("sensitivity")
        noise_mod.NOISES.remove("soft-blur")


@pytest.mark.usefixtures("extension")
def test_extensions_registered_at_run_time_are_in_the_grammar() -> None:
    doc = {
        **lungs(),
        "metrics": ["dice", "sensitivity"],
        "noise": {"soft-blur": "mild", "quantum": {"dose": 0.5}},
        "gates": {"conditions": {"soft-blur-radius2": {"sensitivity": {"min": 0.5}}}},
    }
    assert schema_errors(doc) == []
    s = parse_suite(doc, "s.yaml")
    assert s.metrics == ("dice", "sensitivity")
    assert [n.slug for n in s.noise] == [
        "soft-blur-radius1",
        "soft-blur-radius2",
        "quantum-dose50",
    ]
    schema = json_schema()
    assert "soft-blur" in schema["$defs"]["Noise"]["properties"]
    assert (
        "sensitivity"
        in schema["$defs"]["SegmentationGates"]["properties"]["metrics"]["propertyNames"]["enum"]
    )
    doc["noise"] = {"soft-blur": {"radius": [11]}}
    assert loader_error(doc) == "s.yaml: noise.soft-blur.radius[0]: 11.0 is not in [0, 10]"
    doc["noise"] = {"soft-blur": "default"}
    assert schema_errors(doc) != []
    assert loader_error(doc) == "s.yaml: noise.soft-blur: unknown ladder 'default'; known: mild"


def test_extensions_are_gone_afterwards() -> None:
    assert "soft-blur" not in json_schema()["$defs"]["Noise"]["properties"]
    msg = loader_error({**lungs(), "metrics": "sensitivity"})
    assert msg == "s.yaml: metrics[0]: 'sensitivity' is not a segmentation metric; " + (
        "allowed: dice, hd95, iou"
    )


# --- hash ---------------------------------------------------------------------------------
# The built-in suites' hashes as they were before the grammar became pydantic models
# (commit e57da08): results carry the hash, so a change here orphans every stored result.
# Changed on purpose by issue 19: every built-in suite sets a clean floor (gates.floor),
# findings drops its nodule head, tb and the paper's segmentation evaluate on Montgomery +
# Shenzhen; and by issue 18: the lungs and findings quantum ladders reach the doses where
# the fixture models break. (Re-pinned after merging both.)
BUILTIN_SHA256 = {
    ("findings", None): "85d3df7e544efeb093539aa3e36e0935d8f275fd7e549f98963f0a6cff72519d",
    ("lungs-montgomery", None): "129b6803f3417471af6b48529ac87d27b18985202743596bb25a7a14ce035c35",
    ("lungs-shenzhen", None): "c92ecc5760adc948a755c9fe1834f76c413effcf268d468ea8485e13ebcdb8ec",
    ("lungs", None): "32e647e96c579ecdd8c07ba950829497a068ef211fed9cd9dbd12e62d73b00a7",
    ("nih-cxr14", None): "8506505927b206d2a4d0909d1117d029e6ec3416f47abeb28d80e6b79b359e11",
    (
        "paper-2509.25265",
        "segmentation",
    ): "1e0e6d998e26b946c70d8f6182ee7e0f19322bdfd83b714070f9001151e7d2a8",
    (
        "paper-2509.25265",
        "classification",
    ): "3e62528fdfab124067e7949dbff56e754d53609a4bdb05f6ba031ffb0322642c",
    ("tb", None): "052cabefbe7cbf6034e97935ca53c6331c50c12cd3785777b312a00a56279989",
}


def test_builtin_suite_hashes_are_pinned() -> None:
    assert {(p.stem) for p in SUITES.glob("*.yaml")} == {n for n, _ in BUILTIN_SHA256}
    for (name, task), sha in BUILTIN_SHA256.items():
        assert load_suite(SUITES / f"{name}.yaml", task).sha256 == sha, (name, task)


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

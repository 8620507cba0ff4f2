"""Issue 16, point 6: suites that extend another, and gates overridden from outside.

``extends: lungs`` lays a file over a built-in suite (or a YAML path); ``--robust-gate
dice.max_drop=0.1`` / ``robusttest run --gate`` / ``robusttest_gate`` (ini) /
``robusttest.run(gates=...)`` change one entry of the gate table. Each entry of the
effective table keeps where it came from. The expectations are written out by hand: the
merged document, an equivalent flat suite file (same hash), the limits a case gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robusttest.errors import ConfigError, SuiteError
from robusttest.suite import builtin_suites, load_suite
from robusttest.suite.layers import GateOverride, apply_gate_overrides, merge_documents

LUNGS = builtin_suites()["lungs"].resolve()

EXTENDING = """\
extends: lungs
description: lungs, small
data: {options: {n: 4, size: 64}}
noise:
  electronic: false
  gaussian: {sigma: [0.08]}
repeats: 1
gates:
  metrics:
    dice: {max_drop: 0.1}
"""

# The same suite written out flat, by hand from suites/lungs.yaml and the file above.
FLAT = """\
name: ext
description: lungs, small
task: segmentation
data:
  adapter: phantom
  options: {n: 4, size: 64, seed: 0}
noise:
  quantum: {dose: [1.0e-3, 3.0e-4, 1.0e-4, 3.0e-5, 1.0e-5]}
  gaussian: {sigma: [0.08]}
repeats: 1
seed: 0
metrics: [dice, hd95]
targets: [lungs]
bootstrap: {resamples: 1000, ci: 0.95}
gates:
  on: ci
  floor: {dice: 0.80}
  metrics:
    dice: {min: 0.80, max_drop: 0.1}
    hd95: null
  conditions:
    gaussian:
      dice: {max_drop: 0.15}
"""


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


# --- merging documents -----------------------------------------------------------------
def test_merge_documents_by_hand() -> None:
    base = {
        "name": "b",
        "task": "segmentation",
        "data": {"adapter": "phantom", "options": {"n": 48, "seed": 0}},
        "noise": {"quantum": "default", "electronic": "default", "gaussian": "default"},
        "metrics": ["dice", "hd95"],
        "gates": {"on": "ci", "metrics": {"dice": {"min": 0.8, "max_drop": 0.05}}},
    }
    own = {
        "extends": "b",
        "data": {"options": {"n": 4}},
        "noise": {"electronic": False, "gaussian": {"sigma": [0.1]}, "speckle": "default"},
        "metrics": ["dice"],
        "gates": {"metrics": {"dice": {"max_drop": 0.1}, "hd95": None}},
    }
    assert merge_documents(base, own) == {
        "task": "segmentation",
        "data": {"adapter": "phantom", "options": {"n": 4, "seed": 0}},
        # families in the base's order, one dropped, one replaced whole, new ones after
        "noise": {"quantum": "default", "gaussian": {"sigma": [0.1]}, "speckle": "default"},
        "metrics": ["dice"],  # lists are replaced
        "gates": {
            "on": "ci",
            "metrics": {"dice": {"min": 0.8, "max_drop": 0.1}, "hd95": None},
        },
    }
    # another adapter: the base's data options mean nothing, so data is replaced whole
    other = merge_documents(base, {"data": {"adapter": "folder", "root": "x"}})
    assert other["data"] == {"adapter": "folder", "root": "x"}


# --- extends -----------------------------------------------------------------------------
def test_extends_a_builtin_equals_the_flat_file(tmp_path: Path) -> None:
    ext = load_suite(write(tmp_path, "ext.yaml", EXTENDING))
    flat = load_suite(write(tmp_path, "flat.yaml", FLAT))
    assert ext.name == "ext"  # the name is not inherited
    assert {**ext.to_dict(), "source": ""} == {**flat.to_dict(), "source": ""}
    assert ext.sha256 == flat.sha256  # where it came from is provenance, not content
    assert ext.extends == (f"lungs ({LUNGS})",)
    assert sorted({n.name for n in ext.noise}) == ["gaussian", "quantum"]
    src = ext.gate_sources
    mine, theirs = f"suite: {tmp_path / 'ext.yaml'}", f"extended suite: {LUNGS}"
    assert src["metrics.dice.max_drop"] == mine
    assert src["metrics.dice.min"] == theirs
    assert src["metrics.hd95"] == theirs
    assert src["conditions.gaussian.dice.max_drop"] == theirs
    # a gaussian case: max_drop from the condition entry of lungs.yaml, min from the metric
    assert ext.gate_source("dice", "gaussian-sigma0.08", "gaussian") == {
        "min": theirs,
        "max_drop": theirs,
        "on": theirs,
    }
    assert ext.gate_source("dice", "quantum-dose10", "quantum") == {
        "min": theirs,
        "max_drop": mine,
        "on": theirs,
    }


def test_extends_a_chain_of_paths(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", EXTENDING)
    sub = tmp_path / "sub"
    sub.mkdir()
    child = write(
        sub, "child.yaml", "extends: ../base.yaml\ngates: {metrics: {dice: {min: 0.9}}}\n"
    )
    s = load_suite(child)
    assert s.extends == (f"../base.yaml ({tmp_path / 'base.yaml'})", f"lungs ({LUNGS})")
    g = s.gates.for_case("dice", "quantum-dose10", "quantum")
    assert g is not None and g.limits() == {"min": 0.9, "max_drop": 0.1}
    assert s.gate_sources["metrics.dice.min"] == f"suite: {child}"
    # the middle file is an extended suite now, as is lungs.yaml
    assert s.gate_sources["metrics.dice.max_drop"] == f"extended suite: {tmp_path / 'base.yaml'}"
    assert s.gate_sources["metrics.hd95"] == f"extended suite: {LUNGS}"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"s.yaml": "extends: nosuch\n"}, "extends: unknown suite 'nosuch'; built-in: "),
        ({"s.yaml": "extends: gone.yaml\n"}, "extends: gone.yaml: no such suite file ("),
        (
            {"s.yaml": "extends: findings\ntask: segmentation\n"},
            "task: 'segmentation', but the suite it extends (findings) is a classification "
            "suite; extend a segmentation suite or leave task out",
        ),
        (
            {"s.yaml": "extends: t.yaml\n", "t.yaml": "extends: s.yaml\ntask: segmentation\n"},
            "suites extend each other (",
        ),
        ({"s.yaml": "extends: s.yaml\n"}, "suites extend each other ("),
    ],
    ids=["unknown-name", "missing-file", "other-task", "loop", "itself"],
)
def test_extends_errors_are_one_line(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(SuiteError) as exc:
        load_suite(tmp_path / "s.yaml")
    msg = str(exc.value)
    assert expected in msg and "\n" not in msg
    assert msg.startswith(str(tmp_path)) or msg.startswith("s.yaml")


# --- gate overrides ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("dice.max_drop=0.05", "metrics.dice.max_drop", 0.05),
        ("gaussian:dice.max_drop=0.2", "conditions.gaussian.dice.max_drop", 0.2),
        ("quantum-dose10:dice.min=0.7", "conditions.quantum-dose10.dice.min", 0.7),
        ("default.min=0.8", "default.min", 0.8),
        ("dice.min=null", "metrics.dice.min", None),
        ("hd95=null", "metrics.hd95", None),
        ("on=point", "on", "point"),
        ("dice.on=point", "metrics.dice.on", "point"),
    ],
)
def test_override_syntax(text: str, path: str, value: object) -> None:
    o = GateOverride.parse(text)
    assert (o.path, o.value) == (path, value)
    assert o.label == f"command line: --robust-gate {text}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("dice", "not NAME=VALUE"),
        ("dice.foo=1", "unknown key 'foo'"),
        ("dice.max_drop=abc", "max_drop: 'abc' is not a number (or null)"),
        ("dice.max_relative_drop=-1", "max_relative_drop: "),
        ("on=maybe", "on: 'maybe' is not one of ci, point"),
        ("on=null", "the judge mode is ci or point"),
        ("dice=0.5", "a whole level can only be set to null"),
        ("gaussian:default.min=1", "a noise or condition scopes a metric"),
        (":dice.min=1", "nothing before ':'"),
    ],
)
def test_override_syntax_errors(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        GateOverride.parse(text)
    assert why in str(exc.value) and "\n" not in str(exc.value)


def test_overrides_change_the_limits_by_hand() -> None:
    lungs = load_suite("lungs")
    # lungs.yaml: dice {min 0.8, max_drop 0.05}, hd95 null, gaussian dice {max_drop 0.15}
    ov = [
        GateOverride.parse("dice.min=0.9"),
        GateOverride.parse("gaussian:dice.max_drop=0.3"),
        GateOverride.parse("dice.max_drop=0.02"),
        GateOverride.parse("dice.max_drop=0.04"),  # later ones win
        GateOverride.parse("hd95.max_drop=3", origin="robusttest_gate (ini)"),
    ]
    s = apply_gate_overrides(lungs, ov)
    assert s.sha256 != lungs.sha256  # the hash covers the gates applied

    def limits(metric: str, condition: str, noise: str | None) -> dict[str, float]:
        g = s.gates.for_case(metric, condition, noise)
        return {} if g is None else g.limits()

    assert limits("dice", "quantum-dose10", "quantum") == {"min": 0.9, "max_drop": 0.04}
    assert limits("dice", "gaussian-sigma0.1", "gaussian") == {"min": 0.9, "max_drop": 0.3}
    assert limits("dice", "clean", None) == {"min": 0.9}
    # hd95 was null (no limits): only the limit set now
    assert limits("hd95", "quantum-dose10", "quantum") == {"max_drop": 3.0}
    assert s.gate_source("dice", "quantum-dose10", "quantum") == {
        "min": "command line: --robust-gate dice.min=0.9",
        "max_drop": "command line: --robust-gate dice.max_drop=0.04",
        "on": f"suite: {LUNGS}",
    }
    assert s.gate_source("hd95", "quantum-dose10", "quantum")["max_drop"] == (
        "ini: robusttest_gate hd95.max_drop=3"
    )
    # a whole level to null: no dice limits left, and no sources under it
    cleared = apply_gate_overrides(s, [GateOverride.parse("dice=null")])
    assert cleared.gates.for_case("dice", "quantum-dose10", "quantum") is None
    assert not [p for p in cleared.gate_sources if p.startswith("metrics.dice.")]
    # and the judge mode
    point = apply_gate_overrides(lungs, [GateOverride.parse("on=point")])
    g = point.gates.for_case("dice", "quantum-dose10", "quantum")
    assert g is not None and g.on == "point"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("auroc.min=0.5", "'auroc' is not a metric of suite 'lungs' (dice, hd95; or default"),
        ("speckle:dice.min=0.5", "'speckle' is not a noise or condition of suite 'lungs'"),
    ],
)
def test_overrides_checked_against_the_suite(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        apply_gate_overrides(load_suite("lungs"), [GateOverride.parse(text)])
    assert str(exc.value).startswith(f"--robust-gate {text!r}: ")
    assert why in str(exc.value)

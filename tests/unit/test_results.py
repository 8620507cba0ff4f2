"""The result model: lossless, deterministic JSON; NaN handling; JUnit properties."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robusttest.errors import ConfigError
from robusttest.gates import GateSpec
from robusttest.results import (
    SCHEMA_VERSION,
    CaseResult,
    GalleryItem,
    ImageRecord,
    RunResult,
    merge,
)


def make_case(**kw: Any) -> CaseResult:
    base: dict[str, Any] = {
        "case_id": "lungs-dice[quantum-dose10]",
        "suite": "lungs",
        "metric": "dice",
        "target": "lungs",
        "condition": "quantum-dose10",
        "noise": "quantum",
        "level": 0.1,
        "severity": "moderate",
        "higher_is_better": True,
        "clean": 0.9312,
        "noisy": 0.9012,
        "drop": 0.1 + 0.2,  # 0.30000000000000004: repr must keep every digit
        "ci_low": 0.02,
        "ci_high": 0.04,
        "noisy_ci_low": 0.89,
        "noisy_ci_high": 0.91,
        "relative_drop": 0.0322,
        "p_value": 0.001,
        "p_adjusted": 0.004,
        "test": "wilcoxon",
        "n": 48,
        "n_patients": 40,
        "repeats": 2,
        "gate": GateSpec(min=0.8, max_drop=0.05),
        "verdict": "pass",
        "message": "dice lungs [quantum-dose10]: drop 0.03 ... PASS",
        "reason": None,
    }
    base.update(kw)
    return CaseResult(**base)


def make_result() -> RunResult:
    nan_case = make_case(
        case_id="lungs-hd95[quantum-dose10]",
        metric="hd95",
        higher_is_better=False,
        clean=math.nan,
        noisy=math.nan,
        drop=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        relative_drop=math.inf,
        p_value=None,
        p_adjusted=None,
        test=None,
        gate=None,
        verdict="no-gate",
        reason="hd95 undefined: empty prediction on every image",
    )
    clean_case = make_case(
        case_id="lungs-dice[clean]",
        condition="clean",
        noise=None,
        level=None,
        severity=None,
        drop=0.0,
        p_value=None,
        p_adjusted=None,
        test=None,
        gate=GateSpec(min=0.8, on="point"),
    )
    records = (
        ImageRecord("lungs", "img-1", "p-1", "clean", 0, {"dice/lungs": 0.93, "hd95/lungs": 4.5}),
        ImageRecord(
            "lungs",
            "img-1",
            "p-1",
            "quantum-dose10",
            1,
            {"dice/lungs": 0.9, "hd95/lungs": math.nan},
        ),
        ImageRecord(
            "findings", "img-2", "p-2", "clean", 0, {"score/Effusion": 0.25}, {"Effusion": 1}
        ),
    )
    gallery = (
        GalleryItem("lungs", "img-1", "clean", "sample", 0.93, "aGVsbG8=", "b3Zs", "img-1 · clean"),
        GalleryItem("findings", "img-2", "clean", "worst", None, "aGVsbG8=", "", "img-2 · <b>"),
    )
    return RunResult(
        cases=(clean_case, make_case(), nan_case),
        records=records,
        provenance={"model": {"sha256": "ab" * 32}, "seed": 0, "suite": {"name": "lungs"}},
        run={"started_at": "2024-01-01T00:00:00+00:00", "seconds_total": 1.25},
        gallery=gallery,
    )


def test_round_trip_is_lossless() -> None:
    r = make_result()
    text = r.to_json()
    back = RunResult.from_json(text)
    assert back.to_json() == text
    assert back.to_json(include_run=False) == r.to_json(include_run=False)
    assert back.records[2].targets == {"Effusion": 1}
    assert back.cases[1] == r.cases[1]  # a case without NaN compares equal field by field
    assert back.gallery == r.gallery
    failed = dataclasses.replace(r.cases[1], verdict="fail", failed_limits=("min", "max_drop"))
    again = RunResult.from_json(RunResult(cases=(failed,), records=(), provenance={}).to_json())
    assert again.cases[0] == failed and again.cases[0].failed_limits == ("min", "max_drop")


def test_json_is_deterministic_and_strict() -> None:
    r = make_result()
    text = r.to_json()
    assert text == make_result().to_json()
    assert text.endswith("\n")
    assert "NaN" not in text and "Infinity" not in text
    assert "0.30000000000000004" in text  # repr, shortest round trip
    d = json.loads(text)
    assert list(d) == sorted(d)
    assert d["schema"] == "robusttest-results" and d["schema_version"] == SCHEMA_VERSION
    assert d["summary"] == {"pass": 2, "fail": 0, "no-gate": 1, "uninformative": 0, "error": 0}


def test_nan_becomes_null_and_the_reason_is_kept() -> None:
    d = json.loads(make_result().to_json())
    nan_case = d["cases"][2]
    for key in ("clean", "noisy", "drop", "ci_low", "ci_high", "relative_drop"):
        assert nan_case[key] is None, key
    assert nan_case["reason"] == "hd95 undefined: empty prediction on every image"
    assert d["records"][1]["values"] == {"dice/lungs": 0.9, "hd95/lungs": None}
    assert d["gallery"][1]["value"] is None
    back = RunResult.from_json(json.dumps(d))
    assert math.isnan(back.cases[2].clean) and math.isnan(back.cases[2].relative_drop)
    assert back.cases[2].reason == "hd95 undefined: empty prediction on every image"
    assert math.isnan(back.records[1].values["hd95/lungs"])


def test_include_run_false_drops_only_the_run_block() -> None:
    r = make_result()
    full = r.to_dict()
    lean = r.to_dict(include_run=False)
    assert set(full) - set(lean) == {"run", "digest"}
    assert {k: v for k, v in full.items() if k not in ("run", "digest")} == lean
    # two runs that differ only in wall-clock facts are byte-identical without `run`
    other = r.with_run(started_at="2030-01-01", host="elsewhere")
    assert other.to_json(include_run=False) == r.to_json(include_run=False)
    assert other.to_json() != r.to_json()
    assert other.run["seconds_total"] == 1.25  # with_run merges


def test_numbers_in_float_fields_always_serialise_as_floats() -> None:
    c = make_case(clean=1, noisy=np.float32(0.5), drop=np.float64(0.5), level=1, p_value=0)
    r = RunResult(cases=(c,), records=(), provenance={})
    text = r.to_json()
    d = json.loads(text)["cases"][0]
    assert d["clean"] == 1.0 and isinstance(d["clean"], float)
    assert d["noisy"] == 0.5 and isinstance(d["level"], float) and d["p_value"] == 0.0
    assert RunResult.from_json(text).to_json() == text


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"schema": "something-else"}, "not a robusttest results file"),
        ({}, "not a robusttest results file"),
        ({"schema": "robusttest-results", "schema_version": "3.0"}, "schema_version '3.0'"),
        ({"schema": "robusttest-results", "schema_version": "0.9"}, "not readable"),
        ({"schema": "robusttest-results", "schema_version": "1.0"}, "malformed results file"),
    ],
)
def test_wrong_schema_or_version(doc: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        RunResult.from_json(json.dumps(doc), source="old.json")
    assert str(exc.value).startswith("old.json: ")


def test_minor_version_is_readable_and_kept() -> None:
    d = make_result().to_dict()
    d["schema_version"] = "2.7"
    back = RunResult.from_dict(d)
    assert back.schema_version == "2.7"
    assert json.loads(back.to_json())["schema_version"] == "2.7"


def test_schema_1_results_are_read_with_suite_for_task() -> None:
    # 1.x called each case's, record's and thumbnail's suite name "task"
    d = json.loads(make_result().to_json())
    for key in ("cases", "records", "gallery"):
        for x in d[key]:
            x["task"] = x.pop("suite")
    d["schema_version"] = "1.0"
    back = RunResult.from_dict(d)
    assert back.schema_version == SCHEMA_VERSION
    assert back.to_json() == make_result().to_json()


def test_not_json() -> None:
    with pytest.raises(ConfigError, match=r"x\.json: not valid JSON"):
        RunResult.from_json("{oops", source="x.json")


def test_write_and_read(tmp_path: Path) -> None:
    r = make_result()
    p = r.write_json(tmp_path / "r.json")
    assert p.read_text(encoding="utf-8") == r.to_json()
    assert RunResult.read(p).to_json() == r.to_json()
    with pytest.raises(ConfigError, match="cannot read results"):
        RunResult.read(tmp_path / "absent.json")


def test_gatespec() -> None:
    g = GateSpec.from_dict({"min": 0.8, "max_drop": 0.05, "on": "point"})
    assert g.describe() == "min 0.8, max_drop 0.05 (on point)"
    assert GateSpec().describe() == "no gate" and GateSpec().empty
    assert GateSpec.from_dict(g.to_dict()) == g


def test_verdict_helpers() -> None:
    r = make_result()
    assert r.passed and r.failed == []
    failing = dataclasses.replace(r, cases=(*r.cases, make_case(case_id="x", verdict="fail")))
    assert not failing.passed and [c.case_id for c in failing.failed] == ["x"]
    erroring = dataclasses.replace(r, cases=(make_case(verdict="error"),))
    assert not erroring.passed
    assert not dataclasses.replace(r, completed=False).passed
    assert r.case("lungs-dice[clean]").is_baseline
    with pytest.raises(KeyError):
        r.case("nope")


def test_merge() -> None:
    a, b = make_result(), make_result()
    m = merge([a, b])
    assert len(m.cases) == 6 and len(m.records) == 6 and len(m.gallery) == 4
    assert m.provenance == {"runs": [a.provenance, b.provenance]}
    assert merge([a]) is a
    assert not merge([a, dataclasses.replace(b, completed=False)]).completed
    with pytest.raises(ConfigError, match="no results"):
        merge([])
    assert RunResult.from_json(m.to_json()).to_json() == m.to_json()

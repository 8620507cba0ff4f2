"""robusttest.compare and the ``robusttest compare`` command."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from report_factory import make_classification_result, make_result, with_nan_case

import robusttest.cli as cli
from robusttest.compare import compare
from robusttest.errors import ConfigError
from robusttest.report.cli import register_cli
from robusttest.results import CaseResult, RunResult


@pytest.fixture
def main_with_compare() -> Iterator[None]:
    saved = list(cli._EXTRA_COMMANDS)
    if register_cli not in cli._EXTRA_COMMANDS:  # the main CLI may already wire it in
        cli._EXTRA_COMMANDS.append(register_cli)
    try:
        yield
    finally:
        cli._EXTRA_COMMANDS[:] = saved


def _shift_case(r: RunResult, case_id: str, by: float) -> RunResult:
    """Make one case's noisy metric (and its CI) worse by ``by`` (in the metric's
    orientation), as a worse model would."""
    d = -by

    def shifted(c: CaseResult) -> CaseResult:
        s = d if c.higher_is_better else -d
        return replace(
            c, noisy=c.noisy + s, noisy_ci_low=c.noisy_ci_low + s, noisy_ci_high=c.noisy_ci_high + s
        )

    return replace(r, cases=tuple(shifted(c) if c.case_id == case_id else c for c in r.cases))


def test_identical_results_are_ok() -> None:
    r = make_result()
    cmp = compare(r, RunResult.from_json(r.to_json()))
    assert cmp.ok and cmp.regressions == [] and cmp.new_failures == []
    assert len(cmp.cases) == len(r.cases)
    assert all(c.delta == 0 and c.status == "same" for c in cmp.cases)
    assert cmp.summary().startswith("OK: ")


def test_regression_beyond_tolerance_is_listed() -> None:
    base = make_result()
    new = _shift_case(base, "lungs-dice[quantum-dose25]", 0.03)
    cmp = compare(base, new, tolerance=0.01)
    assert not cmp.ok
    [reg] = cmp.regressions
    assert reg.case_id == "lungs-dice[quantum-dose25]" and reg.suite == "lungs"
    assert reg.delta == pytest.approx(0.03)
    text = cmp.format_text()
    first_row = text.splitlines()[2]
    assert first_row.startswith("regression") and "+0.03" in first_row  # worst first
    d = cmp.to_dict()
    assert d["ok"] is False and d["regressions"] == [["lungs", "lungs-dice[quantum-dose25]"]]
    json.dumps(d, allow_nan=False)


def test_lower_is_better_metric_is_oriented() -> None:
    base = make_result()
    worse = _shift_case(base, "lungs-hd95[gaussian-sigma0.04]", 2.0)  # HD95 up by 2 mm
    # ungated in the suite: reported, not failed, unless asked
    cmp = compare(base, worse)
    assert cmp.ok and [c.case_id for c in cmp.worse_ungated] == ["lungs-hd95[gaussian-sigma0.04]"]
    [reg] = compare(base, worse, fail_on_ungated=True).regressions
    assert reg.metric == "hd95" and reg.delta == pytest.approx(2.0)
    better = _shift_case(base, "lungs-hd95[gaussian-sigma0.04]", -2.0)
    cmp = compare(base, better)
    assert cmp.ok
    assert {c.status for c in cmp.cases} == {"same", "improved"}


def test_within_tolerance_is_ok_and_boundary_is_not_a_regression() -> None:
    base = make_result(fail=False)
    assert compare(base, _shift_case(base, "lungs-dice[quantum-dose50]", 0.005)).ok
    # exactly the tolerance, after float arithmetic: not "more than" the tolerance
    assert compare(base, _shift_case(base, "lungs-dice[quantum-dose50]", 0.01)).ok
    assert not compare(base, _shift_case(base, "lungs-dice[quantum-dose50]", 0.0101)).ok
    assert compare(base, _shift_case(base, "lungs-dice[quantum-dose50]", 0.05), tolerance=0.1).ok


def test_missing_cases_are_reported() -> None:
    base = make_result()
    new = replace(base, cases=base.cases[1:])
    cmp = compare(base, new)
    assert cmp.only_in_base == (("lungs", base.cases[0].case_id),)
    assert not cmp.ok  # a dropped case could hide a regression
    assert "missing in new" in cmp.format_text()
    reverse = compare(new, base)
    assert reverse.only_in_new == (("lungs", base.cases[0].case_id),) and reverse.ok
    assert "only in new" in reverse.format_text()


def test_new_gate_failure_is_not_ok_even_within_tolerance() -> None:
    base = make_result(fail=False)
    cid = "lungs-dice[quantum-dose10]"
    new = replace(
        base,
        cases=tuple(replace(c, verdict="fail") if c.case_id == cid else c for c in base.cases),
    )
    cmp = compare(base, new)
    assert cmp.regressions == [] and [c.case_id for c in cmp.new_failures] == [cid]
    assert not cmp.ok


def test_metric_becoming_undefined_is_a_regression() -> None:
    base = make_result()
    new = with_nan_case(base)
    cmp = compare(base, new)
    [reg] = cmp.regressions
    assert math.isnan(reg.delta) and reg.to_dict()["delta"] is None
    assert "n/a" in cmp.format_text()
    assert compare(new, new).ok  # undefined on both sides: nothing to compare


def test_matching_is_by_suite_and_case_id() -> None:
    seg, cls = make_result(), make_classification_result()
    cmp = compare(seg, cls)
    assert cmp.cases == () and len(cmp.only_in_base) == len(seg.cases)
    assert any("data differs" in n for n in cmp.notes)


def test_bad_tolerance() -> None:
    r = make_result()
    with pytest.raises(ConfigError, match="tolerance"):
        compare(r, r, tolerance=-1)
    with pytest.raises(ConfigError, match="tolerance"):
        compare(r, r, tolerance=math.nan)


# --- CLI ------------------------------------------------------------------------------------
def _write(tmp_path: Path, name: str, r: RunResult) -> str:
    p = tmp_path / name
    r.write_json(p)
    return str(p)


def test_cli_compare_exit_codes(
    tmp_path: Path, main_with_compare: None, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_result()
    b = _write(tmp_path, "base.json", base)
    same = _write(tmp_path, "same.json", base)
    worse = _write(tmp_path, "new.json", _shift_case(base, "lungs-dice[quantum-dose25]", 0.03))
    assert cli.main(["compare", b, same]) == 0
    assert "OK: 14 cases compared" in capsys.readouterr().out
    out_json = tmp_path / "cmp.json"
    assert cli.main(["compare", b, worse, "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "regression" in out and "lungs-dice[quantum-dose25]" in out and "NOT OK" in out
    assert json.loads(out_json.read_text())["ok"] is False
    assert cli.main(["compare", b, worse, "--tolerance", "0.05"]) == 0
    capsys.readouterr()
    assert cli.main(["compare", b, worse, "--only-problems"]) == 1
    listed = capsys.readouterr().out.splitlines()
    assert sum(ln.startswith(("regression", "same")) for ln in listed) == 1


def test_cli_compare_errors_are_one_line(
    tmp_path: Path, main_with_compare: None, capsys: pytest.CaptureFixture[str]
) -> None:
    b = _write(tmp_path, "base.json", make_result())
    assert cli.main(["compare", b, str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robusttest: error:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", b, b, "--tolerance", "-0.1"])
    assert exc.value.code == 2

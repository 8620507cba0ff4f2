"""Issue 14, point 7: `compare` judges a regression only when the runs' CIs say the change
is beyond noise, with tolerances per metric in its unit (Dice absolute, HD95 in mm or
relative); ungated metrics are reported, not failed, unless asked. The same model with
another seed: exit 0; a really worse model (the fixture with its weights perturbed): exit
1, naming the cases. `robusttest run --baseline` uses the same logic."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from report_factory import make_result

import robusttest.cli as cli
from robusttest.compare import Tolerance, compare, parse_tolerance_option
from robusttest.errors import ConfigError
from robusttest.results import CaseResult, RunResult

MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "lungs_tinyunet.onnx"
# The built-in lungs suite with gates the fixture (and the perturbed model) pass: the exit
# code then says only what the comparison says.
SUITE = (
    (Path(__file__).resolve().parents[2] / "suites" / "lungs.yaml")
    .read_text()
    .replace("dice: {min: 0.80, max_drop: 0.05}", "dice: {min: 0.5, max_drop: 0.4}")
)
SUITE = SUITE.replace("dice: {max_drop: 0.15}", "dice: {max_drop: 0.4}")
# two levels per family keep the three runs short; the rules do not depend on the ladder
SUITE = re.sub(r"(?m)^  quantum: .*$", "  quantum: {dose: [0.5, 0.02]}", SUITE)
SUITE = SUITE.replace("electronic: default ", "electronic: {sigma_e: [5, 100]}")
SUITE = SUITE.replace("gaussian: default ", "gaussian: {sigma: [0.04, 0.26]}")
assert ": default " not in SUITE and SUITE.count("quantum: {dose: [0.5, 0.02]}") == 1, SUITE


def perturbed_model(path: Path, scale: float = 0.15) -> Path:
    """The fixture lung model with Gaussian noise (``scale`` × each kernel's SD) on its
    convolution weights: same card, a worse network."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(MODEL))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 4:
            noisy = w + rng.normal(0, scale * float(w.std()), w.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def suite_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("suite")
    (folder / "lungs.yaml").write_text(SUITE)
    return ["--suite", str(folder / "lungs.yaml"), "--limit", "8", "--repeats", "1", "--no-cache"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, suite_args: list[str]) -> dict[str, Path]:
    RUN = suite_args
    folder = tmp_path_factory.mktemp("compare")
    out = {
        "seed0": folder / "seed0.json",
        "seed1": folder / "seed1.json",
        "worse": folder / "worse.json",
    }
    assert cli.main(["run", str(MODEL), *RUN, "--seed", "0", "--json", str(out["seed0"])]) == 0
    assert cli.main(["run", str(MODEL), *RUN, "--seed", "1", "--json", str(out["seed1"])]) == 0
    worse = perturbed_model(folder / "worse.onnx")
    assert cli.main(["run", str(worse), *RUN, "--seed", "0", "--json", str(out["worse"])]) == 0
    out["worse_model"] = worse
    return out


def test_compare_same_model_other_seed_exits_0(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli.main(["compare", str(runs["seed0"]), str(runs["seed1"])]) == 0
    out = capsys.readouterr().out
    assert "OK: 14 cases compared, 0 regression(s) beyond noise and tolerance" in out
    # the noise seed moves the numbers a little; never beyond the runs' CIs
    cmp = compare(RunResult.read(runs["seed0"]), RunResult.read(runs["seed1"]))
    assert any(c.delta > 0 for c in cmp.cases) and not any(c.beyond_noise for c in cmp.cases)
    # even with every ungated metric judged and every tolerance at zero
    assert cli.main(["compare", str(runs["seed0"]), str(runs["seed1"]), "--fail-on-ungated",
                     "--tolerance", "0"]) == 0  # fmt: skip


def test_compare_really_worse_model_exits_1_naming_the_cases(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli.main(["compare", str(runs["seed0"]), str(runs["worse"]), "--only-problems"]) == 1
    out = capsys.readouterr().out
    cmp = compare(RunResult.read(runs["seed0"]), RunResult.read(runs["worse"]))
    regressed = [c.case_id for c in cmp.regressions]
    assert "lungs-dice[clean]" in regressed and len(regressed) >= 5
    assert all(c.metric == "dice" for c in cmp.regressions)  # HD95 is ungated: reported
    assert cmp.worse_ungated and all(c.metric == "hd95" for c in cmp.worse_ungated)
    rows = {line.split()[2]: line.split()[0] for line in out.splitlines()[2:] if "lungs-" in line}
    assert all(rows[cid] == "regression" for cid in regressed)
    assert "NOT OK" in out


def test_compare_run_baseline_uses_the_same_logic(
    runs: dict[str, Path], suite_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    RUN = suite_args
    base = str(runs["seed0"])
    assert cli.main(["run", str(MODEL), *RUN, "--seed", "1", "--baseline", base]) == 0
    assert "OK: 14 cases compared" in capsys.readouterr().out
    worse = str(runs["worse_model"])
    assert cli.main(["run", worse, *RUN, "--baseline", base]) == 1
    out = capsys.readouterr().out
    assert "NOT OK" in out and "regression" in out and "lungs-dice[clean]" in out


def _worse(r: RunResult, case_id: str, by: float, ci_half: float | None = None) -> RunResult:
    def shifted(c: CaseResult) -> CaseResult:
        s = -by if c.higher_is_better else by
        lo, hi = c.noisy_ci_low + s, c.noisy_ci_high + s
        if ci_half is not None:
            lo, hi = c.noisy + s - ci_half, c.noisy + s + ci_half
        return replace(c, noisy=c.noisy + s, noisy_ci_low=lo, noisy_ci_high=hi)

    return replace(r, cases=tuple(shifted(c) if c.case_id == case_id else c for c in r.cases))


def test_compare_a_change_within_the_cis_is_noise() -> None:
    base = make_result(fail=False)
    cid = "lungs-dice[quantum-dose25]"
    wide = compare(base, _worse(base, cid, 0.03, ci_half=0.05))  # worse, CIs overlap
    [case] = [c for c in wide.cases if c.case_id == cid]
    assert wide.ok and case.status == "within-noise" and case.beyond_noise is False
    narrow = compare(base, _worse(base, cid, 0.03))
    assert [c.case_id for c in narrow.regressions] == [cid]


def test_compare_tolerances_per_metric_in_its_unit() -> None:
    base = make_result(fail=False)
    hd = "lungs-hd95[gaussian-sigma0.08]"  # base HD95 ~11.2 mm
    worse = _worse(base, hd, 2.0)
    args = {"fail_on_ungated": True}
    assert not compare(base, worse, **args).ok  # default: 10 % of the base value (~1.1 mm)
    assert compare(base, worse, tolerances={"hd95": "2.5"}, **args).ok  # 2.5 mm absolute
    assert compare(base, worse, tolerances={"hd95": "20%"}, **args).ok
    assert not compare(base, worse, tolerances={"hd95": "1"}, **args).ok
    # a Dice tolerance never applies to millimetres
    assert not compare(base, worse, tolerances={"dice": "5"}, **args).ok
    cmp = compare(base, worse, tolerances={"hd95": "20%"})
    assert "hd95 20% of the base value" in cmp.format_text() and "dice 0.01" in cmp.format_text()
    assert cmp.to_dict()["tolerances"]["hd95"] == {"value": 0.2, "relative": True}
    assert parse_tolerance_option("hd95=2") == ("hd95", Tolerance(2.0))
    assert parse_tolerance_option("0.02") == (None, Tolerance(0.02))
    for bad in ("hd95=", "dice=x", "-1", "nan", "=3"):
        with pytest.raises(ConfigError, match="tolerance"):
            parse_tolerance_option(bad)


def test_compare_ungated_reported_not_failed_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_result(fail=False)
    worse = _worse(base, "lungs-hd95[quantum-dose10]", 5.0)
    b, n = tmp_path / "b.json", tmp_path / "n.json"
    base.write_json(b)
    worse.write_json(n)
    assert cli.main(["compare", str(b), str(n)]) == 0
    out = capsys.readouterr().out
    assert "worse-ungated" in out and "1 ungated case(s) worse (reported)" in out
    assert cli.main(["compare", str(b), str(n), "--fail-on-ungated"]) == 1
    assert cli.main(["compare", str(b), str(n), "--tolerance", "hd95=6"]) == 0
    assert cli.main(["compare", str(b), str(n), "--tolerance", "hd95=6", "--fail-on-ungated"]) == 0

"""The failure frontier against independent answers.

A hand-built model with a known answer: it thresholds each pixel at 0.5 (logits
50·(x − 0.5)), on images whose left half (the "lung" mask) is 0.5 + c and right half
0.5 − c, one contrast c per image. Under ``gaussian`` noise a bright pixel stays above 0.5
with probability q = Φ(c/σ) and a dark one crosses with 1 − q, so an image's Dice is q
(as many mask pixels as others) and the mean Dice is mean_i Φ(c_i/σ): the test solves
mean Φ(c_i/σ) = limit for σ (scipy's brentq) and bootstraps the images itself (its own
random numbers) for the CI. Under ``quantum`` thinning the probabilities are binomial sums
(scipy), so the crossing dose is known exactly too.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import optimize
from scipy import stats as sps
from torch import nn

from robusttest import engine
from robusttest.engine.frontier import (
    MAX_EVALUATIONS,
    FrontierSpec,
    _first_crossing,
    judge_frontier,
    plan_frontiers,
)
from robusttest.errors import SuiteError
from robusttest.gates import GateSpec
from robusttest.models import ModelCard, export_onnx, load_model
from robusttest.noise import LMAX, PHOTONS_PER_MM2
from robusttest.results import FrontierResult, RunResult
from robusttest.suite import Suite, load_suite, parse_suite

CARD = ModelCard(
    task="segmentation",
    input_size=(64, 64),
    channels=1,
    mean=(0.5,),
    std=(0.25,),
    structures=("lungs",),
    output_activation="sigmoid",
)
CONTRASTS = np.linspace(0.15, 0.35, 40)
SPACING_MM = 0.05  # N0 = PHOTONS_PER_MM2 · 0.05² ≈ 1779 photons per open-beam pixel


class Threshold(nn.Module):
    """ "Lung" wherever the (un-normalised) pixel is above 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * 0.25 + 0.5
        return 50.0 * (raw - 0.5)


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The threshold model and its images (a manifest with the pixel spacing)."""
    d = tmp_path_factory.mktemp("known")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    Image.fromarray(mask).save(d / "mask.png")
    rows = ["image,mask,patient_id,pixel_spacing_mm"]
    for i, c in enumerate(CONTRASTS):
        img = np.full((64, 64), 0.5 - c, np.float32)
        img[:, :32] = 0.5 + c
        np.save(d / f"img{i:03d}.npy", img)
        rows.append(f"img{i:03d}.npy,mask.png,p{i:03d},{SPACING_MM}")
    (d / "manifest.csv").write_text("\n".join(rows) + "\n")
    export_onnx(Threshold(), d / "threshold.onnx", CARD)
    return d


def suite(d: Path, noise: dict[str, Any], **over: Any) -> Suite:
    doc: dict[str, Any] = {
        "name": "known",
        "task": "segmentation",
        "data": {"adapter": "manifest", "root": str(d / "manifest.csv")},
        "noise": noise,
        "repeats": 2,
        "metrics": ["dice"],
        "targets": ["lungs"],
        "gates": {"metrics": {"dice": {"min": 0.9}}},
    }
    doc.update(over)
    return parse_suite(doc)


def run(d: Path, s: Suite, tmp: Path, **kw: Any) -> RunResult:
    kw = {"cache": False, "gallery": 0, "workers": 1, "device": "cpu", **kw}
    return engine.run(d / "threshold.onnx", s, cache_dir=tmp / "cache", **kw)


def gaussian_dice(sigma: float, c: np.ndarray) -> float:
    return float(sps.norm.cdf(c / sigma).mean())


def gaussian_crossing(c: np.ndarray, limit: float = 0.9) -> float:
    return float(optimize.brentq(lambda s: gaussian_dice(s, c) - limit, 0.01, 1.0))


def test_gaussian_frontier_is_where_the_mean_dice_crosses_the_limit(
    known: Path, tmp_path: Path
) -> None:
    s = suite(
        known,
        {"gaussian": {"sigma": [0.05, 0.1, 0.3]}},
        frontier={"gaussian": {"dice": {"min_level": 0.18}}},
    )
    result = run(known, s, tmp_path)
    (f,) = result.frontiers
    want = gaussian_crossing(CONTRASTS)  # 0.1858
    assert f.frontier_id == "lungs-dice[gaussian-frontier]"
    assert f.reached and f.gate == "min" and f.limit == 0.9 and f.on == "ci"
    assert f.estimate == pytest.approx(want, rel=0.01)
    # the CI: the test's own patient bootstrap of the same crossing
    rng = np.random.default_rng(12345)
    boot = [gaussian_crossing(rng.choice(CONTRASTS, CONTRASTS.size)) for _ in range(2000)]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    assert f.ci_low == pytest.approx(lo, rel=0.02)
    assert f.ci_high == pytest.approx(hi, rel=0.02)
    # on: ci, the gate fails where the CI's lower bound of the mean Dice reaches 0.9:
    # the lower end of the crossing's CI (the bootstrap's duality)
    assert f.level is not None and f.level < f.estimate
    assert f.level == pytest.approx(f.ci_low, rel=0.01)
    assert 1 <= f.evaluations <= MAX_EVALUATIONS
    assert [p.source for p in f.points][:3] == ["clean", "ladder", "ladder"]
    # the requirement: a σ of 0.18 or more, judged on the CI's low end (0.171): fails
    assert f.min_level == 0.18 and f.verdict == "fail"
    assert "required sigma >= 0.18: CI low 0.171" in f.message and f.message.endswith("FAIL")
    assert not result.passed and result.failed_frontiers == [f]
    ok = judge_frontier(dataclasses.replace(f, min_level=0.15))
    assert ok[0] == "pass" and ok[1].endswith("PASS")
    assert f.dose_uGy is None and f.reference_uGy is None  # a σ has no dose


def test_an_evaluated_level_is_the_condition_a_suite_listing_it_runs(
    known: Path, tmp_path: Path
) -> None:
    s = suite(known, {"gaussian": {"sigma": [0.05, 0.3]}})
    result = run(known, s, tmp_path, frontier=True)
    (f,) = result.frontiers
    searched = [p for p in f.points if p.source == "search"]
    assert searched
    ladder = suite(known, {"gaussian": {"sigma": [p.level for p in searched]}})
    again = run(known, ladder, tmp_path)
    for p in searched:
        case = next(c for c in again.cases if c.level == p.level)
        # same noise keys (seed, family, level, image, repeat), same bootstrap resamples
        assert case.noisy == p.estimate and case.noisy_ci_low == p.bound
        assert (case.verdict == "pass") == p.passed


def binomial_dice(a: float, c: np.ndarray) -> float:
    """Mean Dice of the threshold model under binomial thinning to dose ``a``."""
    n0 = np.float32(PHOTONS_PER_MM2 * SPACING_MM**2)
    t = a * float(n0) * math.exp(-LMAX * 0.5)  # p' > 0.5  ⇔  max(k, 0.5) < a·N0·e^(−ℓ/2)

    def above(p: float) -> float:
        n = int(np.round(n0 * np.exp(np.float32(-LMAX * p))))  # the engine's float32 counts
        k = np.arange(n + 1)
        return float(sps.binom.pmf(k, n, a)[np.maximum(k, 0.5) < t].sum())

    out = []
    for x in c:
        q1, q0 = above(0.5 + x), above(0.5 - x)  # mask pixels kept; others taken
        out.append(2 * q1 / (1 + q1 + q0))
    return float(np.mean(out))


def test_quantum_frontier_in_dose_and_in_micrograys(known: Path, tmp_path: Path) -> None:
    s = suite(
        known,
        {"quantum": {"dose_uGy": [0.25, 0.025]}},  # doses 0.1 and 0.01
        frontier={"quantum": {"dice": {"min_dose_uGy": 0.01}}},
    )
    assert [n.level for n in s.noise] == [0.1, 0.01]
    result = run(known, s, tmp_path)
    (f,) = result.frontiers
    # the exact mean Dice falls in steps (the count threshold is an integer): find the
    # first dose from the mild side where it is below 0.9
    grid = [float(a) for a in np.geomspace(0.02, 0.002, 60)]
    k = next(i for i, a in enumerate(grid) if binomial_dice(a, CONTRASTS) < 0.9)
    ok_a, bad_a = grid[k - 1], grid[k]
    for _ in range(30):
        mid = math.sqrt(ok_a * bad_a)
        if binomial_dice(mid, CONTRASTS) < 0.9:
            bad_a = mid
        else:
            ok_a = mid
    want = ok_a
    assert f.reached and not f.higher_is_worse and f.level_param == "dose"
    assert f.estimate == pytest.approx(want, rel=0.03)
    # the evaluated levels agree with the exact curve (each a mean of 80 image draws)
    for p in f.points:
        if p.source != "clean" and p.level > 1e-4:
            assert p.estimate == pytest.approx(binomial_dice(p.level, CONTRASTS), abs=0.01)
    # lower is worse: the CI's high end is the one towards less noise
    assert f.ci_low is not None and f.ci_high is not None
    assert f.ci_low <= f.estimate <= f.ci_high and f.gated_end == f.ci_high
    assert f.level == pytest.approx(f.ci_high, rel=0.02)
    # detector air kerma: dose × 2.5 µGy (the spacing is in the manifest)
    assert f.reference_uGy == 2.5
    assert f.dose_uGy == pytest.approx(f.level * 2.5)
    assert f.ci_low_uGy == pytest.approx(f.ci_low * 2.5)
    assert f.ci_high_uGy == pytest.approx(f.ci_high * 2.5)
    # required: hold down to 0.01 µGy (dose 0.004); it fails from about 0.0074
    assert f.min_level == pytest.approx(0.004) and f.verdict == "fail"
    assert "required dose <= 0.004: CI high" in f.message
    assert judge_frontier(dataclasses.replace(f, min_level=0.008))[0] == "pass"


def test_not_reached_and_failing_from_the_start(known: Path, tmp_path: Path) -> None:
    holds = suite(
        known,
        {"gaussian": {"sigma": [0.1]}},
        gates={"metrics": {"dice": {"min": 0.01}}},
        frontier={"gaussian": {"dice": {"min_level": 0.5}}},
    )
    (f,) = run(known, holds, tmp_path).frontiers
    # at σ = 1 the Dice is still mean Φ(c) ≈ 0.6: the gate holds over the whole range
    assert not f.reached and f.level is None and f.evaluations == 1
    assert f.points[-1].level == 1.0 and f.points[-1].passed
    assert f.verdict == "pass" and "not reached" in f.message
    never = suite(known, {"gaussian": {"sigma": [0.1]}}, gates={"metrics": {"dice": {"min": 1.01}}})
    (g,) = run(known, never, tmp_path, frontier=True).frontiers
    assert g.reached and g.level == 0.0 and g.evaluations == 0
    assert g.note is not None and "mildest" in g.note


def test_a_repeated_search_reads_the_output_cache(known: Path, tmp_path: Path) -> None:
    s = suite(known, {"gaussian": {"sigma": [0.1, 0.3]}})
    runner = load_model(known / "threshold.onnx", device="cpu")
    calls = 0

    class Counting:
        path, card, sha256, device, backend = (
            runner.path,
            runner.card,
            runner.sha256,
            runner.device,
            runner.backend,
        )

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            return runner(batch)

    opts = engine.EngineOptions(cache=True, cache_dir=tmp_path / "c", gallery=0, workers=1)

    def once() -> RunResult:
        ds = engine.open_suite_data(s, None)
        return engine.evaluate(Counting(), s, ds, opts, frontier=True)

    first = once()
    assert calls > 0 and first.run["frontier_evaluations"] >= 1
    calls = 0
    second = once()
    assert calls == 0  # every level, the frontier's too, came from the cache
    assert second.frontiers == first.frontiers


def test_first_crossing_by_hand() -> None:
    s = np.array([0.0, 1.0, 2.0, 4.0])
    m = np.array(
        [
            [1.0, 0.5, -0.5, -1.0],  # crosses halfway between 1 and 2
            [1.0, 1.0, 1.0, 1.0],  # never
            [-1.0, 1.0, 1.0, 1.0],  # fails at the first level
            [1.0, 0.0, 1.0, -3.0],  # a tie passes; crosses at 2 + 2·1/4
            [1.0, np.nan, 1.0, 1.0],  # undefined fails: halfway
        ]
    )
    got = _first_crossing(s, m)
    assert got.tolist() == [1.5, math.inf, 0.0, 2.5, 0.5]


def test_plan_every_gated_case_or_the_ones_asked_for() -> None:
    lungs = load_suite("lungs")
    every = plan_frontiers(lungs, ["lungs"], every=True)
    assert [f.frontier_id for f in every] == [
        "lungs-dice[quantum-frontier]",
        "lungs-dice[electronic-frontier]",
        "lungs-dice[gaussian-frontier]",
    ]  # hd95 is reported, not gated: no limit to cross
    # the family's limits (dice: min 0.8; gaussian: max_drop 0.15), not a condition's
    assert every[2].gate == GateSpec(min=0.8, max_drop=0.15)
    assert plan_frontiers(lungs, ["lungs"], every=False) == []
    asked = dataclasses.replace(lungs, frontier={"gaussian": {"dice": 0.15}})
    assert plan_frontiers(asked, ["lungs"], every=False) == [
        FrontierSpec(
            "lungs-dice[gaussian-frontier]",
            "dice",
            "lungs",
            "gaussian",
            {},
            GateSpec(min=0.8, max_drop=0.15),
            0.15,
        )
    ]


@pytest.mark.parametrize(
    ("frontier", "message"),
    [
        ({"poisson": None}, "frontier.poisson: not a noise of this suite"),
        ({"gaussian": {"hd95": None}}, "frontier.gaussian.hd95: no gate limits hd95"),
        ({"gaussian": {"iou": None}}, "frontier.gaussian.iou: not a metric of this suite"),
        ({"gaussian": {"dice": {"min_levle": 0.1}}}, "dice.min_levle: unknown key"),
        ({"gaussian": {"dice": {"min_level": 2}}}, "dice.min_level: 2.0 is not in [0, 1]"),
        ({"gaussian": {"dice": {"min_dose_uGy": 1}}}, "allowed: min_level"),
        ({"quantum": {"dice": {"min_level": 1e-9}}}, "outside the levels the frontier searches"),
    ],
)
def test_frontier_key_errors_name_the_path(frontier: Any, message: str) -> None:
    from robusttest.suite import read_yaml

    doc = read_yaml(Path(load_suite("lungs").source).read_text())
    doc["frontier"] = frontier
    with pytest.raises(SuiteError) as err:
        parse_suite(doc, "lungs.yaml")
    assert str(err.value).startswith("lungs.yaml: ") and message in str(err.value)


def test_dose_in_micrograys_and_its_errors() -> None:
    from robusttest.suite import read_yaml

    doc = read_yaml(Path(load_suite("lungs").source).read_text())
    doc["noise"] = {"quantum": {"dose_uGy": [2.5, 1.0, 0.5, 0.1]}, "gaussian": None}
    s = parse_suite(doc, "x.yaml")
    assert [n.level for n in s.noise if n.name == "quantum"] == [1.0, 0.4, 0.2, 0.04]
    bad = [
        ({"dose_uGy": [5.0]}, "noise.quantum.dose_uGy[0]: 5 µGy is above the reference"),
        ({"dose_uGy": [1.0], "dose": 0.5}, "not both"),
        ({"dose_uGy": [1.0], "params": {"n0": 100}}, "dose_uGy[0]: dose_uGy needs"),
        ({"dose_uGy": [-1.0]}, "dose_uGy[0]: -1.0 is not in (0"),
    ]
    for entry, message in bad:
        doc["noise"] = {"quantum": entry, "gaussian": None}
        with pytest.raises(SuiteError) as err:
            parse_suite(doc, "x.yaml")
        assert message in str(err.value), str(err.value)
    # another detector: the reference kerma follows its fluence
    other = {"dose_uGy": [1.0], "params": {"photons_per_mm2": PHOTONS_PER_MM2 / 2}}
    doc["noise"] = {"quantum": other, "gaussian": None}
    assert parse_suite(doc, "x.yaml").noise[0].level == pytest.approx(0.8)


def test_results_round_trip_and_old_files_read(known: Path, tmp_path: Path) -> None:
    s = suite(known, {"gaussian": {"sigma": [0.1, 0.3]}})
    result = run(known, s, tmp_path, frontier=True)
    back = RunResult.from_json(result.to_json())
    assert back.frontiers == result.frontiers and back.to_json() == result.to_json()
    d = result.to_dict()
    d.pop("frontiers")
    d["schema_version"] = "2.0"  # written before frontiers existed
    assert RunResult.from_dict(d).frontiers == ()


def frontier(**kw: Any) -> FrontierResult:
    base: dict[str, Any] = {
        "frontier_id": "lungs-dice[gaussian-frontier]",
        "suite": "lungs",
        "metric": "dice",
        "target": "lungs",
        "noise": "gaussian",
        "level_param": "sigma",
        "higher_is_worse": True,
        "gate": "min",
        "limit": 0.8,
        "on": "ci",
        "level": 0.15,
        "estimate": 0.17,
        "ci_low": 0.15,
        "ci_high": 0.19,
        "reached": True,
        "evaluations": 3,
        "search_range": (0.0, 1.0),
        "points": (),
        "verdict": "no-gate",
        "message": "m",
    }
    base.update(kw)
    return FrontierResult(**base)


def test_judge_frontier_per_direction() -> None:
    sigma = frontier(min_level=0.15)
    assert judge_frontier(sigma)[0] == "pass"  # CI low 0.15 >= 0.15
    assert judge_frontier(dataclasses.replace(sigma, min_level=0.16))[0] == "fail"
    assert judge_frontier(dataclasses.replace(sigma, min_level=0.16, on="point"))[0] == "pass"
    rate = frontier(
        noise="poisson",
        level_param="rate",
        higher_is_worse=False,
        level=9.0,
        estimate=8.0,
        ci_low=6.0,
        ci_high=9.0,
        search_range=(1e4, 0.1),
        min_level=10.0,
    )
    assert judge_frontier(rate)[0] == "pass"  # CI high 9 <= 10: holds at rate 10 and below
    verdict, msg = judge_frontier(dataclasses.replace(rate, min_level=8.5))
    assert verdict == "fail" and "required rate <= 8.5: CI high 9 > 8.5: FAIL" in msg
    assert judge_frontier(frontier(reached=False, level=None, min_level=0.5))[0] == "pass"
    assert judge_frontier(frontier())[0] == "no-gate"


def test_compare_flags_a_frontier_that_moved_toward_less_noise() -> None:
    from robusttest.compare import compare

    def res(*fs: FrontierResult) -> RunResult:
        return RunResult(cases=(), records=(), provenance={}, frontiers=fs)

    base = frontier()  # crossing 0.17, CI [0.15, 0.19]
    same = compare(res(base), res(frontier(estimate=0.155)))
    assert same.ok and not same.frontiers_moved
    moved = compare(res(base), res(frontier(estimate=0.14, ci_low=0.13)))
    assert not moved.ok and [f.frontier_id for f in moved.frontiers_moved] == [base.frontier_id]
    assert "1 of 1 frontier(s) moved toward less noise" in moved.summary()
    assert "frontier-moved" in moved.format_text(all_cases=False)
    # a dose: less noise is a higher dose
    dose = frontier(
        noise="quantum", higher_is_worse=False, estimate=1e-4, ci_low=8e-5, ci_high=1.2e-4
    )
    assert not compare(res(dose), res(dataclasses.replace(dose, estimate=2e-4))).ok
    assert compare(res(dose), res(dataclasses.replace(dose, estimate=5e-5))).ok
    # reached now, never before within the range: moved
    assert not compare(res(frontier(reached=False, level=None, estimate=None)), res(base)).ok
    # only in one run: a note, not a failure
    alone = compare(res(base), res())
    assert alone.ok and any("one run only" in n for n in alone.notes)


def test_reports_carry_the_frontier(known: Path, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from robusttest.report import JUnitRenderer, render_html, summary_line

    s = suite(
        known,
        {"gaussian": {"sigma": [0.1, 0.3]}},
        frontier={"gaussian": {"dice": {"min_level": 0.18}}},
    )
    result = run(known, s, tmp_path)
    (f,) = result.frontiers
    assert summary_line(result).endswith("; 1 frontiers (1 failed)")
    xml = ET.fromstring(JUnitRenderer().render(result, rendered_at="t"))
    tc = next(t for t in xml.iter("testcase") if t.get("name") == f.frontier_id)
    props = {p.get("name"): p.get("value") for p in tc.iter("property")}
    assert props["frontier_level"] == repr(f.level) and props["frontier_ci_low"] == repr(f.ci_low)
    assert props["frontier_evaluations"] == str(f.evaluations) and props["min_level"] == "0.18"
    assert tc.find("failure") is not None
    page = render_html(result, rendered_at="t")
    assert "Failure frontiers" in page and "Failed frontiers (1)" in page
    assert "gaussian frontier: sigma 0.171 [0.171, 0.201]" in page  # the curve's legend


@pytest.mark.parametrize(
    "extra",
    [
        {"frontier": {"gaussian": {"dice": {"min_level": 0.15}}, "quantum": None}},
        {"frontier": ["gaussian", "electronic"]},
        {"frontier": {"quantum": {"dice": {"min_dose_uGy": 0.001}}}},
        {"noise": {"quantum": {"dose_uGy": [2.5, 1.0]}, "gaussian": None}},
    ],
)
def test_schema_and_loader_accept_the_frontier_and_micrograys(extra: dict[str, Any]) -> None:
    from test_suite import lungs, schema_errors

    doc = {**lungs(), **extra}
    assert schema_errors(doc) == []
    parse_suite(doc, "s.yaml")


def test_schema_rejects_two_requirements() -> None:
    from test_suite import lungs, schema_errors

    doc = {**lungs(), "frontier": {"gaussian": {"dice": {"min_level": 0.1, "min_x": 1}}}}
    assert schema_errors(doc)


def test_ctrl_c_during_the_search_keeps_the_grid(
    known: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robusttest import faults
    from robusttest.report import run_state

    s = suite(known, {"gaussian": {"sigma": [0.1, 0.3]}})
    # the grid: 3 batches × (clean + 2 levels × 2 repeats) = 15 items; the 17th is the
    # frontier's first evaluation
    monkeypatch.setenv(faults.ENV, "inference@17")
    faults.reset()
    result = run(known, s, tmp_path, frontier=True)
    faults.reset()
    assert not result.completed and result.run["stopped_in"] == "frontier"
    assert run_state(result) == "interrupted" and result.frontiers == ()
    assert len(result.cases) == 3 and all(c.verdict != "error" for c in result.cases)

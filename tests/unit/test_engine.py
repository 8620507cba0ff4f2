"""The engine against independent computations.

Known-answer models: tiny torch modules whose output is a fixed function of the input
(segmentation: lung where the image is dark; classification: the mean of one horizontal
band per label), exported with ``export_onnx``. The test recomputes every number the
engine reports from the phantom images directly: noise via ``NoiseSpec.apply`` one image
at a time, the model, Dice by hand, AUROC with scikit-learn, Holm and DeLong by hand.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats as sps
from sklearn.metrics import roc_auc_score
from torch import nn

from robusttest import engine
from robusttest import metrics as M
from robusttest.data import Sample, open_dataset
from robusttest.engine.gallery import THUMB
from robusttest.errors import ConfigError, DataError, ModelError, SuiteError
from robusttest.models import (
    ModelCard,
    ModelRunner,
    export_onnx,
    load_model,
    postprocess,
    preprocess,
)
from robusttest.noise import NoiseSpec
from robusttest.phantom import FINDINGS
from robusttest.results import ImageRecord, RunResult
from robusttest.suite import Suite, parse_suite
from robusttest.zoo.nets import TinyUNet

SEG_CARD = ModelCard(
    task="segmentation",
    input_size=(64, 64),
    channels=1,
    mean=(0.5,),
    std=(0.25,),
    structures=("lungs",),
    output_activation="sigmoid",
)
CLS_CARD = ModelCard(
    task="classification",
    input_size=(64, 64),
    channels=1,
    mean=(0.5,),
    std=(0.25,),
    labels=FINDINGS,
    output_activation="sigmoid",
)


# --- known-answer modules --------------------------------------------------------------
class DarkIsLung(nn.Module):
    """Segmentation logits 20·(0.5 − x): "lung" wherever the (un-normalised) image is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * 0.25 + 0.5
        return 20.0 * (0.5 - raw)


class NanWhenBright(nn.Module):
    """DarkIsLung, but NaN for every image whose mean exceeds ``thr`` (0/0)."""

    def __init__(self, thr: float) -> None:
        super().__init__()
        self.thr = thr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * 0.25 + 0.5
        t = torch.relu(self.thr - raw.mean(dim=(1, 2, 3), keepdim=True))
        return 20.0 * (0.5 - raw) + (t * 0.0) / t


BAND_EDGES = (0, 13, 26, 38, 51, 64)


class BandMeans(nn.Module):
    """Classification logits 10·(mean of band j − 0.5): label j looks at image rows band j."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.zeros(64, 64, 5)
        for j in range(5):
            lo, hi = BAND_EDGES[j], BAND_EDGES[j + 1]
            w[lo:hi, :, j] = 1.0 / ((hi - lo) * 64)
        self.w: torch.Tensor
        self.register_buffer("w", w.reshape(64 * 64, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * 0.25 + 0.5
        return 10.0 * (raw.flatten(1) @ self.w - 0.5)


class CountingRunner:
    """Wraps a ModelRunner and counts the batches it runs."""

    def __init__(self, inner: ModelRunner) -> None:
        self.inner = inner
        self.path, self.card, self.sha256 = inner.path, inner.card, inner.sha256
        self.device, self.backend = inner.device, inner.backend
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(batch)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    return {
        "dark": export_onnx(DarkIsLung(), d / "dark.onnx", SEG_CARD),
        "bands": export_onnx(BandMeans(), d / "bands.onnx", CLS_CARD),
        "unet": export_onnx(TinyUNet(base=4, depth=2), d / "unet.onnx", SEG_CARD),
    }


def seg_suite(**over: Any) -> Suite:
    doc: dict[str, Any] = {
        "name": "lungs-test",
        "task": "segmentation",
        "data": {"adapter": "phantom", "options": {"n": 6, "size": 96}},
        "noise": {"gaussian": {"sigma": [0.1]}, "quantum": {"dose": [0.1]}},
        "repeats": 2,
        "seed": 3,
        "metrics": ["dice", "hd95"],
        "targets": ["lungs"],
        "bootstrap": {"resamples": 200},
        "gates": {"metrics": {"dice": {"min": 0.0}, "hd95": None}},
    }
    doc.update(over)
    return parse_suite(doc)


def cls_suite(**over: Any) -> Suite:
    doc: dict[str, Any] = {
        "name": "findings-test",
        "task": "classification",
        "data": {
            "adapter": "phantom",
            "options": {"n": 12, "size": 64, "task": "classification", "finding_prob": 0.5},
        },
        "noise": {"gaussian": {"sigma": [0.2]}},
        "repeats": 2,
        "metrics": ["auroc"],
        "pairwise": [["pneumothorax", "effusion"]],
        "bootstrap": {"resamples": 200},
        "gates": {"default": {"max_drop": 0.5}},
    }
    doc.update(over)
    return parse_suite(doc)


def run(model: Path, suite: Suite, tmp: Path, **kw: Any) -> RunResult:
    kw = {"cache": False, "gallery": 0, "workers": 1, "device": "cpu", **kw}
    return engine.run(model, suite, cache_dir=tmp / "cache", **kw)


def samples_of(suite: Suite) -> list[Sample]:
    ds = open_dataset(suite.data.adapter, None, **dict(suite.data.options))
    return [ds.load(r) for r in ds.records]


def noisy_image(sample: Sample, spec: NoiseSpec | None, seed: int, repeat: int) -> torch.Tensor:
    """One image (1×H×W), noised on its own — not in the engine's batch."""
    x = torch.from_numpy(sample.image)[None]
    if spec is None:
        return x
    return spec.apply(
        x,
        seed=seed,
        image_ids=[sample.image_id],
        repeat=repeat,
        pixel_spacing_mm=[sample.pixel_spacing_mm],
    )


def probs_of(runner: ModelRunner, x: torch.Tensor, out_size: bool) -> np.ndarray:
    raw = runner(preprocess(x.unsqueeze(1), runner.card))
    size = (x.shape[-2], x.shape[-1]) if out_size else None
    return postprocess(raw, runner.card, out_size=size)[0].numpy()


def by_key(records: Sequence[ImageRecord]) -> dict[tuple[str, str, int], ImageRecord]:
    return {(r.image_id, r.condition, r.repeat): r for r in records}


# --- (1) segmentation: per-image values equal a direct computation ----------------------
@pytest.fixture(scope="module")
def seg_run(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(models["dark"], seg_suite(), tmp_path_factory.mktemp("seg"), gallery=1)


def test_known_answer_dice_per_image(models: dict[str, Path], seg_run: RunResult) -> None:
    suite = seg_suite()
    runner = load_model(models["dark"], device="cpu")
    recs = by_key(seg_run.records)
    assert len(recs) == len(seg_run.records) == 6 * (1 + 2 * 2)
    conditions: list[tuple[NoiseSpec | None, str, int]] = [(None, "clean", 0)]
    conditions += [(s, s.slug, r) for s in suite.noise for r in range(2)]
    changed = 0
    for sample in samples_of(suite):
        truth = np.asarray(sample.masks["lungs"], dtype=bool)  # type: ignore[index]
        sp = float(sample.pixel_spacing_mm)  # type: ignore[arg-type]
        assert sp == pytest.approx(400.0 / 96)  # the phantom's 400 mm field
        for spec, cond, repeat in conditions:
            x = noisy_image(sample, spec, suite.seed, repeat)
            prob = probs_of(runner, x, out_size=True)[0]
            assert prob.shape == truth.shape  # resized back to the mask's resolution
            pred = prob > 0.5
            dice = 2.0 * np.sum(pred & truth) / (np.sum(pred) + np.sum(truth))
            rec = recs[(sample.image_id, cond, repeat)]
            assert rec.values["dice/lungs"] == pytest.approx(dice, abs=1e-12), (cond, repeat)
            hd = float(M.hd95(pred[None], truth[None], spacing_mm=[[sp, sp]])[0])
            assert rec.values["hd95/lungs"] == pytest.approx(hd, rel=1e-9)
            assert rec.patient_id == sample.patient_id and rec.targets == {}
            if cond != "clean":
                changed += (
                    rec.values["dice/lungs"]
                    != recs[(sample.image_id, "clean", 0)].values["dice/lungs"]
                )
    assert changed > 0  # the noise did reach the model


def test_known_answer_model_is_what_we_think(models: dict[str, Path]) -> None:
    # lung exactly where the model-resolution image is darker than 0.5
    runner = load_model(models["dark"], device="cpu")
    x = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1))
    keep = (x - 0.5).abs() > 0.01  # away from the sigmoid's 0.5 crossing
    pred = probs_of(runner, x, out_size=False)[0] > 0.5
    assert np.array_equal(pred[keep[0].numpy()], (x[0] < 0.5).numpy()[keep[0].numpy()])


def test_iou_per_image_by_hand(models: dict[str, Path], tmp_path: Path) -> None:
    suite = seg_suite(
        data={"adapter": "phantom", "options": {"n": 4, "size": 64}},
        metrics=["iou"],
        gates={"default": {"min": 0.0}},
    )
    runner = load_model(models["dark"], device="cpu")
    recs = by_key(run(models["dark"], suite, tmp_path, batch_size=3, lanes=2).records)
    for sample in samples_of(suite):
        truth = np.asarray(sample.masks["lungs"], dtype=bool)  # type: ignore[index]
        for spec in (None, suite.noise[0]):
            pred = probs_of(runner, noisy_image(sample, spec, suite.seed, 0), out_size=True)[0]
            pred = pred > 0.5
            want = np.sum(pred & truth) / np.sum(pred | truth)
            cond = "clean" if spec is None else spec.slug
            assert recs[(sample.image_id, cond, 0)].values["iou/lungs"] == pytest.approx(want)


def test_case_summaries_by_hand(seg_run: RunResult) -> None:
    suite = seg_suite()
    ids = sorted({r.image_id for r in seg_run.records})
    recs = by_key(seg_run.records)
    for metric, hib in (("dice", True), ("hd95", False)):
        key = f"{metric}/lungs"
        clean = np.array([recs[(i, "clean", 0)].values[key] for i in ids])
        for spec in suite.noise:
            noisy = np.array(
                [np.mean([recs[(i, spec.slug, k)].values[key] for k in range(2)]) for i in ids]
            )
            c = seg_run.case(f"lungs-{metric}[{spec.slug}]")
            assert c.clean == pytest.approx(clean.mean(), abs=1e-12)
            assert c.noisy == pytest.approx(noisy.mean(), abs=1e-12)
            drop = clean.mean() - noisy.mean() if hib else noisy.mean() - clean.mean()
            assert c.drop == pytest.approx(drop, abs=1e-12)
            assert c.higher_is_better is hib
            assert (c.n, c.n_patients, c.repeats) == (6, 6, 2)
            assert c.ci_low <= c.drop <= c.ci_high
            d = clean - noisy
            expected_p = 1.0 if not np.any(d != 0) else float(sps.wilcoxon(d).pvalue)
            assert c.p_value == pytest.approx(expected_p, rel=1e-12)
            assert c.test == "wilcoxon"
            assert c.noise == spec.name and c.level == spec.level
        base = seg_run.case(f"lungs-{metric}[clean]")
        assert base.clean == base.noisy == pytest.approx(clean.mean(), abs=1e-12)
        assert base.drop == 0 and base.p_value is None and base.repeats == 1
    assert seg_run.case("lungs-dice[quantum-dose10]").severity == "moderate"
    assert seg_run.case("lungs-hd95[gaussian-sigma0.1]").verdict == "no-gate"
    assert seg_run.case("lungs-dice[gaussian-sigma0.1]").verdict == "pass"  # min 0


def holm_by_hand(p: list[float]) -> list[float]:
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def test_holm_over_the_grid(seg_run: RunResult) -> None:
    with_p = [c for c in seg_run.cases if c.p_value is not None]
    assert {c.condition for c in with_p} == {"gaussian-sigma0.1", "quantum-dose10"}
    assert len(with_p) == 4
    expected = holm_by_hand([c.p_value for c in with_p])  # type: ignore[misc]
    for c, e in zip(with_p, expected, strict=True):
        assert c.p_adjusted == pytest.approx(e, abs=1e-15)
    _check_holm_shape(with_p)
    assert all(c.p_adjusted is None for c in seg_run.cases if c.p_value is None)


def _check_holm_shape(cases: Sequence[Any]) -> None:
    ps = sorted((c.p_value, c.p_adjusted) for c in cases)
    for p, a in ps:
        assert p <= a <= 1.0
    adj = [a for _, a in ps]
    assert adj == sorted(adj)  # monotone in the order of the raw p-values


# --- synthetic records: statistics, Holm and gates with chosen numbers ------------------
GATE_SUITE = {
    "name": "synthetic",
    "task": "segmentation",
    "data": {"adapter": "phantom"},
    "noise": {"gaussian": {"sigma": [0.04, 0.08, 0.12]}},
    "repeats": 2,
    "targets": ["lungs"],
    "bootstrap": {"resamples": 200},
}


def synthetic_records() -> tuple[list[ImageRecord], np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    n = 10
    clean = rng.uniform(0.85, 0.95, n)
    drops = {"gaussian-sigma0.04": 0.01, "gaussian-sigma0.08": 0.1, "gaussian-sigma0.12": 0.0}
    recs = [
        ImageRecord("s", f"i{i}", f"p{i}", "clean", 0, {"dice/lungs": float(clean[i])})
        for i in range(n)
    ]
    noisy: dict[str, np.ndarray] = {}
    for cond, drop in drops.items():
        mat = np.empty((n, 2))
        for i in range(n):
            for k in range(2):
                # per-image, per-repeat changes; the mean drop is `drop`
                jitter = 0.0 if drop == 0 else (i - 4.5) * 0.002 + (k - 0.5) * 0.004
                mat[i, k] = clean[i] - drop + jitter
                recs.append(ImageRecord("s", f"i{i}", f"p{i}", cond, k, {"dice/lungs": mat[i, k]}))
        noisy[cond] = mat.mean(axis=1)
    return recs, clean, noisy


SEG_PLAN = engine.TaskPlan(
    task="segmentation",
    targets=("lungs",),
    case_targets=("lungs",),
    metrics=("dice",),
    pairwise=(),
    channel_index={"lungs": 0},
)


def test_summarise_synthetic_statistics_and_holm() -> None:
    recs, clean, noisy = synthetic_records()
    cases = engine.summarise(recs, parse_suite(GATE_SUITE), SEG_PLAN)
    assert [c.case_id for c in cases] == [
        "lungs-dice[clean]",
        "lungs-dice[gaussian-sigma0.04]",
        "lungs-dice[gaussian-sigma0.08]",
        "lungs-dice[gaussian-sigma0.12]",
    ]
    ps: list[float] = []
    for c in cases[1:]:
        z = noisy[c.condition]
        assert c.drop == pytest.approx(clean.mean() - z.mean(), abs=1e-12)
        d = clean - z
        p = 1.0 if not np.any(np.abs(d) > 1e-15) else float(sps.wilcoxon(d).pvalue)
        assert c.p_value is not None and c.p_value == pytest.approx(p, rel=1e-9)
        ps.append(c.p_value)
    assert cases[3].drop == pytest.approx(0.0, abs=1e-12)
    assert [c.p_adjusted for c in cases[1:]] == pytest.approx(holm_by_hand(ps), abs=1e-15)
    _check_holm_shape(cases[1:])
    assert ps[0] < 0.01 and ps[1] < 0.01  # consistent drops are detected at n=10


@pytest.mark.parametrize(("limit", "verdict"), [(0.0, "pass"), (1.01, "fail")])
def test_min_gate(limit: float, verdict: str) -> None:
    recs, _, _ = synthetic_records()
    suite = parse_suite({**GATE_SUITE, "gates": {"default": {"min": limit}}})
    cases = engine.summarise(recs, suite, SEG_PLAN)
    assert {c.verdict for c in cases} == {verdict}
    c = cases[2]
    assert c.gate is not None and c.gate.min == limit
    msg = c.message
    for part in ("dice", "gaussian-sigma0.08", "clean", "CI", "limit", "n=10"):
        assert part in msg, (part, msg)
    assert f"{limit:g}" in msg
    assert msg.endswith("FAIL" if verdict == "fail" else "PASS")


def test_point_max_drop_gate_splits_by_hand() -> None:
    recs, _, _ = synthetic_records()
    gates = {"on": "point", "default": {"max_drop": 0.05}}
    cases = engine.summarise(recs, parse_suite({**GATE_SUITE, "gates": gates}), SEG_PLAN)
    # drops 0.01, 0.1, 0 against 0.05 on the point estimate; clean has no gate
    assert [c.verdict for c in cases] == ["no-gate", "pass", "fail", "pass"]
    assert "point estimate" in cases[2].message and "0.05" in cases[2].message


def test_ci_gate_is_more_conservative_than_point() -> None:
    recs, _, _ = synthetic_records()
    # drop 0.01 at sigma 0.04: the point estimate passes 0.0105, the CI's upper bound not
    gates = {"conditions": {"gaussian-sigma0.04": {"dice": {"max_drop": 0.0105}}}}
    ci = engine.summarise(recs, parse_suite({**GATE_SUITE, "gates": gates}), SEG_PLAN)[1]
    assert ci.ci_high > 0.0105 and ci.verdict == "fail"
    gates["on"] = "point"  # type: ignore[assignment]
    point = engine.summarise(recs, parse_suite({**GATE_SUITE, "gates": gates}), SEG_PLAN)[1]
    assert point.verdict == "pass"


# --- (2) reproducibility and (3) the cache --------------------------------------------------
def unet_suite() -> Suite:
    return seg_suite(
        data={"adapter": "phantom", "options": {"n": 6, "size": 64}},
        noise={"gaussian": {"sigma": [0.1]}, "quantum": {"dose": [0.25]}},
    )


def test_same_seed_same_bytes_whatever_batch_and_workers(
    models: dict[str, Path], tmp_path: Path
) -> None:
    suite = unet_suite()
    a = run(models["unet"], suite, tmp_path, batch_size=16, workers=2)
    b = run(models["unet"], suite, tmp_path, batch_size=16, workers=2)
    c = run(models["unet"], suite, tmp_path, batch_size=1, workers=1)
    assert a.to_json(include_run=False) == b.to_json(include_run=False)
    assert a.to_json(include_run=False) == c.to_json(include_run=False)
    assert c.run["batch_size"] == 1 and a.run["workers"] == 2
    d = run(models["unet"], suite.with_overrides(seed=4), tmp_path)
    assert [r.values for r in d.records] != [r.values for r in a.records]
    assert d.provenance["suite"]["sha256"] != a.provenance["suite"]["sha256"]


def test_same_bytes_whatever_the_lanes(models: dict[str, Path], tmp_path: Path) -> None:
    suite = unet_suite().with_overrides(repeats=2)
    threads = torch.get_num_threads()
    one = run(models["unet"], suite, tmp_path, batch_size=4, lanes=1)
    assert one.run["lanes"] == 1
    for lanes, batch in ((2, 4), (3, 1), (5, 16)):
        r = run(models["unet"], suite, tmp_path, batch_size=batch, lanes=lanes)
        assert r.run["lanes"] == lanes
        assert r.to_json(include_run=False) == one.to_json(include_run=False), lanes
    assert torch.get_num_threads() == threads  # lanes run torch single-threaded, then restore


def test_default_lanes_follow_the_threads(models: dict[str, Path]) -> None:
    suite = unet_suite()
    ds = engine.open_suite_data(suite, None)
    opts = engine.EngineOptions(device="cpu", cache=False)

    def lanes(runner: Any, **kw: Any) -> int:
        return engine.Evaluator(runner, ds, suite, dataclasses.replace(opts, **kw)).lanes()

    ort_runner = load_model(models["unet"], device="cpu")
    assert lanes(ort_runner) == max(1, torch.get_num_threads())
    assert lanes(load_model(models["unet"], device="cpu", threads=3)) == 3
    assert lanes(ort_runner, lanes=4) == 4
    # a runner that cannot make a single-threaded twin keeps one lane
    assert lanes(CountingRunner(ort_runner)) == 1
    with pytest.raises(ConfigError, match="lanes: 0"):
        engine.EngineOptions(lanes=0)


def test_single_threaded_twin_gives_the_same_outputs(models: dict[str, Path]) -> None:
    runner = load_model(models["unet"], device="cpu")
    twin = runner.single_threaded()
    assert twin is runner.single_threaded() and twin is not runner
    assert twin.threads == 1 and twin.sha256 == runner.sha256 and twin.card == runner.card
    x = torch.rand(3, 1, *SEG_CARD.input_size)
    assert torch.equal(twin(x), runner(x))
    one = load_model(models["unet"], device="cpu", threads=1)
    assert one.single_threaded() is one


class NanTwin(CountingRunner):
    """A runner whose single-threaded twin is ``twin`` (e.g. one that fails)."""

    def __init__(self, inner: ModelRunner, twin: ModelRunner) -> None:
        super().__init__(inner)
        self.twin = twin

    def single_threaded(self) -> ModelRunner:
        return self.twin


def test_a_failing_lane_names_the_images_and_restores_threads(
    models: dict[str, Path], tmp_path: Path
) -> None:
    suite = seg_suite(data={"adapter": "phantom", "options": {"n": 6, "size": 64}})
    nan_path = export_onnx(NanWhenBright(-1.0), tmp_path / "nan.onnx", SEG_CARD)
    nan = load_model(nan_path, device="cpu")
    runner = NanTwin(load_model(models["dark"], device="cpu"), nan)
    threads = torch.get_num_threads()
    ds = engine.open_suite_data(suite, None)
    opts = engine.EngineOptions(device="cpu", cache=False, gallery=0, workers=1, lanes=2)
    result = engine.evaluate(runner, suite, ds, opts)
    assert "NaN or inf for 6 of 6 image" in result.run["error"] and not result.completed
    assert torch.get_num_threads() == threads
    assert runner.calls == 0  # every batch went to the lanes' twin


def test_large_batches_leave_the_lanes(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 6 images of 64² in batches of 4 and 2: with 2 lanes, 32,768 and 16,384 pixels
    suite = unet_suite()
    ds = engine.open_suite_data(suite, None)
    opts = engine.EngineOptions(device="cpu", cache=False, gallery=0, workers=1, batch_size=4)
    base = load_model(models["unet"], device="cpu")
    want = engine.evaluate(base, suite, ds, dataclasses.replace(opts, lanes=1))
    twin = CountingRunner(base.single_threaded())
    runner = NanTwin(base, twin)
    monkeypatch.setattr(engine.evaluation, "LANE_MAX_PIXELS", 20_000)
    threads = torch.get_num_threads()
    got = engine.evaluate(runner, suite, ds, dataclasses.replace(opts, lanes=2))
    assert got.to_json(include_run=False) == want.to_json(include_run=False)
    n_items = 1 + len(suite.noise) * suite.repeats
    assert (runner.calls, twin.calls) == (n_items, n_items)  # first batch alone, then lanes
    assert torch.get_num_threads() == threads


class InterruptTwin(CountingRunner):
    def __init__(self, inner: ModelRunner, at: int) -> None:
        super().__init__(inner)
        self.at = at

    def single_threaded(self) -> ModelRunner:
        return InterruptAt(self.inner, self.at)


def test_interrupt_in_a_lane_keeps_finished_images(models: dict[str, Path]) -> None:
    suite = seg_suite(
        data={"adapter": "phantom", "options": {"n": 6, "size": 64}},
        noise={"gaussian": {"sigma": [0.1]}},
        metrics=["dice"],
        gates={"default": {"min": 0.0}},
    )
    threads = torch.get_num_threads()
    runner = InterruptTwin(load_model(models["dark"], device="cpu"), at=8)
    opts = engine.EngineOptions(batch_size=2, workers=1, cache=False, gallery=1, lanes=1)
    # one lane: the calls come in order, so call 8 is the 3rd batch's 2nd item
    ds = engine.open_suite_data(suite, None)
    r = engine.evaluate(runner, suite, ds, dataclasses.replace(opts, lanes=1))
    assert r.completed  # lanes=1 calls the runner itself, never the twin
    r = engine.evaluate(runner, suite, ds, dataclasses.replace(opts, lanes=2))
    assert not r.completed and r.run["error"] == "interrupted" and r.gallery == ()
    assert torch.get_num_threads() == threads
    # items run two at a time, but records leave in order: whole batches before the cut
    done = sorted({x.image_id for x in r.records})
    assert done in (
        ["phantom-0-00000", "phantom-0-00001"],
        ["phantom-0-00000", "phantom-0-00001", "phantom-0-00002", "phantom-0-00003"],
    )
    assert len(r.records) == len(done) * 3


def test_cache_reuses_outputs(models: dict[str, Path], tmp_path: Path) -> None:
    suite = unet_suite()
    opts = engine.EngineOptions(cache=True, cache_dir=tmp_path, workers=1, gallery=0)

    def evaluate(options: engine.EngineOptions, s: Suite = suite) -> tuple[RunResult, int]:
        runner = CountingRunner(load_model(models["unet"], device="cpu"))
        ds = engine.open_suite_data(s, None)
        return engine.evaluate(runner, s, ds, options), runner.calls

    first, calls1 = evaluate(opts)
    assert calls1 == 1 + 2 * 2  # one batch: clean + 2 conditions × 2 repeats
    second, calls2 = evaluate(opts)
    assert calls2 == 0
    assert second.to_json(include_run=False) == first.to_json(include_run=False)
    _, calls3 = evaluate(dataclasses.replace(opts, cache=False))
    assert calls3 == calls1
    # another seed is another context: nothing reused
    other, calls4 = evaluate(opts, suite.with_overrides(seed=11))
    assert calls4 == calls1
    assert other.to_json(include_run=False) != first.to_json(include_run=False)
    # noise moved to the model's input size is another context too (a bug once reused
    # the native-resolution outputs); the clean pass is shared
    at_model = dataclasses.replace(suite, noise_at={n.name: "model" for n in suite.noise})
    _, calls5 = evaluate(opts, at_model)
    assert calls5 == calls1 - 1
    assert (tmp_path / "outputs.sqlite").is_file()


def test_cache_context_sees_the_model(models: dict[str, Path], tmp_path: Path) -> None:
    suite = unet_suite()
    a = run(models["unet"], suite, tmp_path, cache=True)
    b = run(models["dark"], suite, tmp_path, cache=True)  # same card, other weights
    assert [r.values for r in a.records] != [r.values for r in b.records]


# --- (4) errors -----------------------------------------------------------------------------
def test_zero_repeats_is_a_config_error(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repeats: 0"):
        run(models["dark"], seg_suite(), tmp_path, repeats=0)
    with pytest.raises(ConfigError, match="repeats"):
        dataclasses.replace(seg_suite(), repeats=0)  # a Suite cannot hold K = 0
    with pytest.raises(ConfigError, match="batch_size"):
        engine.EngineOptions(batch_size=0)


def test_unknown_metric_is_a_suite_error() -> None:
    with pytest.raises(SuiteError, match=r"metrics\[0\]: 'f1' is not a segmentation metric"):
        seg_suite(metrics=["f1"])


def test_nan_outputs_name_the_images(tmp_path: Path) -> None:
    suite = seg_suite(data={"adapter": "phantom", "options": {"n": 6, "size": 64}})
    means = {s.image_id: float(np.mean(s.image, dtype=np.float64)) for s in samples_of(suite)}
    order = sorted(means, key=means.__getitem__)
    gaps = [means[order[i + 1]] - means[order[i]] for i in range(1, len(order) - 2)]
    cut = 1 + int(np.argmax(gaps))  # split inside the list: some images on each side
    thr = (means[order[cut]] + means[order[cut + 1]]) / 2
    bright = sorted(order[cut + 1 :])
    path = export_onnx(NanWhenBright(thr), tmp_path / "nan.onnx", SEG_CARD)
    result = run(path, suite, tmp_path)  # an evaluation error: a result that says so
    assert not result.completed and result.cases == () and result.records == ()
    assert result.run["stopped_in"] == "evaluation" and not result.run["interrupted"]
    (msg,) = result.run["errors"]
    assert msg == result.run["error"]
    assert f"NaN or inf for {len(bright)} of 6 image(s): {', '.join(bright)};" in msg
    for i in order[: cut + 1]:
        assert i not in msg


def test_classification_model_on_a_segmentation_suite(
    models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelError) as exc:
        run(models["bands"], seg_suite(), tmp_path)
    msg = str(exc.value)
    assert "classification" in msg and "segmentation" in msg and "bands.onnx" in msg


def test_empty_dataset_after_a_filter(models: dict[str, Path], tmp_path: Path) -> None:
    options = {
        "n": 4,
        "size": 64,
        "task": "classification",
        "finding_prob": 0.0,  # no findings at all: no image is in the pairwise subset
        "pairwise": ["pneumothorax", "effusion"],
    }
    suite = cls_suite(data={"adapter": "phantom", "options": options})
    with pytest.raises(DataError, match="left no images"):
        run(models["bands"], suite, tmp_path)


def test_unknown_target_is_named(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="target 'heart' is not a structure of the model"):
        run(models["dark"], seg_suite(targets=["heart"]), tmp_path)


def test_multi_variant_suite_follows_the_model_card(
    models: dict[str, Path], tmp_path: Path
) -> None:
    p = tmp_path / "two.yaml"
    p.write_text(
        "name: two\nrepeats: 1\nbootstrap: {resamples: 200}\n"
        "segmentation:\n  data: {adapter: phantom, options: {n: 4, size: 64}}\n"
        "  noise: {gaussian: {sigma: 0.1}}\n  targets: [lungs]\n"
        "classification:\n"
        "  data: {adapter: phantom, options: {n: 6, size: 64, task: classification}}\n"
        "  noise: {gaussian: {sigma: 0.1}}\n",
        encoding="utf-8",
    )
    result = engine.run(models["bands"], p, cache=False, gallery=0, workers=1, device="cpu")
    assert result.provenance["suite"]["definition"]["task"] == "classification"


def test_suite_task_reaches_a_two_task_adapter(models: dict[str, Path], tmp_path: Path) -> None:
    suite = cls_suite(data={"adapter": "phantom", "options": {"n": 12, "size": 64}})
    result = run(models["bands"], suite, tmp_path)
    assert result.cases


# --- (7) classification: AUROC against scikit-learn -----------------------------------------
@pytest.fixture(scope="module")
def cls_run(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(models["bands"], cls_suite(), tmp_path_factory.mktemp("cls"), gallery=1)


@pytest.fixture(scope="module")
def cls_direct(models: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels N×5, clean probabilities N×5 and noisy probabilities N×5×K, computed here."""
    suite = cls_suite()
    runner = load_model(models["bands"], device="cpu")
    samples = samples_of(suite)
    y = np.array([[s.labels[f] for f in FINDINGS] for s in samples])  # type: ignore[index]
    clean = np.stack([probs_of(runner, noisy_image(s, None, 0, 0), False) for s in samples])
    spec = suite.noise[0]
    noisy = np.stack(
        [
            np.stack([probs_of(runner, noisy_image(s, spec, 0, k), False) for k in range(2)], -1)
            for s in samples
        ]
    )
    return y, clean, noisy


def test_scores_equal_a_direct_computation(
    cls_run: RunResult, cls_direct: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    y, clean, noisy = cls_direct
    recs = by_key(cls_run.records)
    ids = sorted({r.image_id for r in cls_run.records})
    for i, image_id in enumerate(ids):
        for j, lab in enumerate(FINDINGS):
            assert recs[(image_id, "clean", 0)].values[f"score/{lab}"] == pytest.approx(
                clean[i, j], abs=1e-6
            )
            assert recs[(image_id, "clean", 0)].targets[lab] == y[i, j]
            for k in range(2):
                got = recs[(image_id, "gaussian-sigma0.2", k)].values[f"score/{lab}"]
                assert got == pytest.approx(noisy[i, j, k], abs=1e-6)


def test_auroc_cases_match_sklearn_on_pooled_repeats(
    cls_run: RunResult, cls_direct: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    y, clean, noisy = cls_direct
    checked = 0
    for j, lab in enumerate(FINDINGS):
        if len(set(y[:, j])) < 2:
            continue
        checked += 1
        auc_clean = roc_auc_score(y[:, j], clean[:, j])
        pooled = roc_auc_score(np.tile(y[:, j], 2), noisy[:, j, :].T.reshape(-1))
        base = cls_run.case(f"{lab}-auroc[clean]")
        c = cls_run.case(f"{lab}-auroc[gaussian-sigma0.2]")
        assert base.clean == pytest.approx(auc_clean, abs=1e-9)
        assert c.clean == pytest.approx(auc_clean, abs=1e-9)
        assert c.noisy == pytest.approx(pooled, abs=1e-9)
        assert c.drop == pytest.approx(auc_clean - pooled, abs=1e-9)
        assert c.test == "delong (repeat 0)" and c.repeats == 2
        p = delong_by_hand(y[:, j], clean[:, j], noisy[:, j, 0])
        if math.isnan(p):
            assert c.p_value is None
        else:
            assert c.p_value == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert checked >= 3


def test_pairwise_case_matches_pairwise_task(
    cls_run: RunResult, cls_direct: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    y, clean, noisy = cls_direct
    jp, je = FINDINGS.index("pneumothorax"), FINDINGS.index("effusion")
    labels = ["pneumothorax", "effusion"]

    def task(scores: np.ndarray) -> M.PairwiseTask:
        return M.pairwise_task(
            scores[:, [jp, je]], y[:, [jp, je]], labels, "pneumothorax", "effusion"
        )

    t_clean = task(clean)
    # the subset: images positive for exactly one of the two
    assert list(t_clean.subset_index) == [i for i in range(len(y)) if y[i, jp] != y[i, je]]
    t_noisy = [task(noisy[:, :, k]) for k in range(2)]
    auc_clean = roc_auc_score(t_clean.targets, t_clean.scores)
    pooled = roc_auc_score(np.tile(t_clean.targets, 2), np.concatenate([t.scores for t in t_noisy]))
    base = cls_run.case("pneumothorax-vs-effusion-auroc[clean]")
    c = cls_run.case("pneumothorax-vs-effusion-auroc[gaussian-sigma0.2]")
    assert base.clean == pytest.approx(auc_clean, abs=1e-9)
    assert c.noisy == pytest.approx(pooled, abs=1e-9)
    assert c.n_patients == len(t_clean.subset_index)
    assert c.target == "pneumothorax-vs-effusion"
    # judged, unless its clean AUROC (5 images here) cannot be told from chance
    at_chance = base.noisy_ci_low <= 0.5 <= base.noisy_ci_high
    assert c.verdict in (("uninformative",) if at_chance else ("pass", "fail"))


def test_auroc_case_n_counts_images_not_pooled_draws(cls_run: RunResult) -> None:
    c = cls_run.case("effusion-auroc[gaussian-sigma0.2]")
    assert c.n == 12 and c.n_patients == 12 and c.repeats == 2
    assert "n=12 images" in c.message


def test_classification_holm(cls_run: RunResult) -> None:
    with_p = [c for c in cls_run.cases if c.p_value is not None]
    assert with_p
    expected = holm_by_hand([c.p_value for c in with_p])  # type: ignore[misc]
    assert [c.p_adjusted for c in with_p] == pytest.approx(expected, abs=1e-15)
    _check_holm_shape(with_p)


def delong_by_hand(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong (1988) with the O(m·n) structural components: p of AUROC(a) = AUROC(b)."""
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    if m < 2 or n < 2:
        return math.nan

    def psi(x: np.ndarray) -> np.ndarray:  # m×n kernel
        d = x[pos][:, None] - x[neg][None, :]
        return (d > 0) + 0.5 * (d == 0)

    ka, kb = psi(a), psi(b)
    v10 = np.stack([ka.mean(1), kb.mean(1)])
    v01 = np.stack([ka.mean(0), kb.mean(0)])
    s = np.cov(v10) / m + np.cov(v01) / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    diff = ka.mean() - kb.mean()
    if var <= 1e-300:
        return 1.0 if diff == 0 else 0.0
    return float(2 * sps.norm.sf(abs(diff) / math.sqrt(var)))


# --- (8) the gallery --------------------------------------------------------------------------
def _png(b64: str) -> Image.Image:
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return im


def test_gallery_samples_and_worst(seg_run: RunResult) -> None:
    g = seg_run.gallery
    samples = [x for x in g if x.kind == "sample"]
    worst = [x for x in g if x.kind == "worst"]
    first_id = min(r.image_id for r in seg_run.records)
    assert {(x.image_id, x.condition) for x in samples} == {
        (first_id, c) for c in ("clean", "gaussian-sigma0.1", "quantum-dose10")
    }
    assert sorted(x.condition for x in worst) == ["gaussian-sigma0.1", "quantum-dose10"]
    recs = by_key(seg_run.records)
    for w in worst:
        vals = {
            r.image_id: r.values["dice/lungs"]
            for r in seg_run.records
            if r.condition == w.condition and r.repeat == 0
        }
        assert w.image_id == min(vals, key=vals.__getitem__)
        assert w.value == pytest.approx(vals[w.image_id])
    for item in g:
        assert item.value == pytest.approx(
            recs[(item.image_id, item.condition, 0)].values["dice/lungs"]
        )
        for b64 in (item.image_png, item.overlay_png):
            im = _png(b64)
            assert im.format == "PNG" and max(im.size) == THUMB  # 96² → 176²
            assert im.size == (THUMB, THUMB)
        assert item.image_id in item.caption and item.condition in item.caption


def test_gallery_noisy_thumbnail_is_the_evaluated_image(seg_run: RunResult) -> None:
    # the gallery re-applies the noise: the thumbnail must show the image that was scored
    from robusttest.engine.gallery import image_png

    suite = seg_suite()
    item = next(x for x in seg_run.gallery if x.condition == "quantum-dose10")
    sample = next(s for s in samples_of(suite) if s.image_id == item.image_id)
    x = noisy_image(sample, suite.noise_spec("quantum-dose10"), suite.seed, 0)
    assert item.image_png == image_png(x[0].numpy())


def test_classification_gallery_has_no_overlay(cls_run: RunResult) -> None:
    assert cls_run.gallery
    for item in cls_run.gallery:
        assert item.overlay_png == "" and item.value is None
        assert _png(item.image_png).size == (THUMB, THUMB)
        assert "effusion" in item.caption


def test_gallery_zero_is_empty(models: dict[str, Path], tmp_path: Path) -> None:
    suite = seg_suite(data={"adapter": "phantom", "options": {"n": 2, "size": 64}})
    assert run(models["dark"], suite, tmp_path, gallery=0).gallery == ()


# --- provenance -----------------------------------------------------------------------------
def test_provenance(seg_run: RunResult, models: dict[str, Path]) -> None:
    from robusttest.models import file_sha256

    p = seg_run.provenance
    assert p["model"]["sha256"] == file_sha256(models["dark"])
    assert p["suite"]["sha256"] == seg_suite().sha256
    assert p["suite"]["definition"] == seg_suite().to_dict()
    assert p["data"]["n_images"] == 6 and p["seed"] == 3 and p["repeats"] == 2
    assert seg_run.completed and seg_run.run["device"] == "cpu"
    assert RunResult.from_json(seg_run.to_json()).to_json() == seg_run.to_json()


# --- mixed image sizes, unreadable images, interrupts --------------------------------------
def _manifest(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = ["image,image_id,patient_id,mask"]
    # shapes alternate, so same-shape batching must split and regroup
    for i, (h, w) in enumerate([(64, 64), (80, 96), (64, 64), (64, 64), (80, 96)]):
        img = rng.uniform(0, 1, (h, w))
        img[:, : w // 2] *= 0.4  # a dark "lung" half
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"im{i}.png")
        m = np.zeros((h, w), bool)
        m[:, : w // 2] = True
        Image.fromarray(m.astype(np.uint8) * 255).save(root / f"m{i}.png")
        rows.append(f"im{i}.png,im{i},p{i // 2},m{i}.png")
    data = (root / "im0.png").read_bytes()
    (root / "bad.png").write_bytes(data[: len(data) // 2])  # truncated
    (root / "mbad.png").write_bytes((root / "m0.png").read_bytes())
    rows.append("bad.png,bad,p9,mbad.png")
    csv = root / "manifest.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv


def test_mixed_sizes_and_skipped_images(models: dict[str, Path], tmp_path: Path) -> None:
    suite = seg_suite(
        data={"adapter": "manifest", "root": str(_manifest(tmp_path)), "on_bad_image": "skip"},
        noise={"gaussian": {"sigma": [0.1]}},
        metrics=["dice"],
        gates={"default": {"min": 0.0}},
    )
    with pytest.warns(UserWarning, match="skipped bad"):
        a = run(models["dark"], suite, tmp_path, batch_size=16, gallery=2)
    with pytest.warns(UserWarning, match="skipped bad"):
        b = run(models["dark"], suite, tmp_path, batch_size=1, gallery=2)
    assert a.to_json(include_run=False) == b.to_json(include_run=False)
    assert len(a.records) == 5 * 3 and "bad" not in {r.image_id for r in a.records}
    assert [s[0] for s in a.provenance["data"]["skipped"]] == ["bad"]
    c = a.case("lungs-dice[gaussian-sigma0.1]")
    assert (c.n, c.n_patients) == (5, 3)  # im0/im1, im2/im3, im4 share patients
    wide = next(g for g in a.gallery if g.image_id == "im1")
    assert _png(wide.image_png).size == (THUMB, round(80 * THUMB / 96))  # (w, h), aspect kept
    assert _png(wide.overlay_png).size == (THUMB, round(80 * THUMB / 96))


class InterruptAt(CountingRunner):
    def __init__(self, inner: ModelRunner, at: int) -> None:
        super().__init__(inner)
        self.at = at

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.calls + 1 == self.at:
            raise KeyboardInterrupt
        return super().__call__(batch)


def _interrupted(models: dict[str, Path], at: int, batch_size: int) -> RunResult:
    suite = seg_suite(
        data={"adapter": "phantom", "options": {"n": 6, "size": 64}},
        noise={"gaussian": {"sigma": [0.1]}},
        metrics=["dice"],
        gates={"default": {"min": 0.0}},
    )
    runner = InterruptAt(load_model(models["dark"], device="cpu"), at)
    options = engine.EngineOptions(batch_size=batch_size, workers=1, cache=False, gallery=1)
    ds = engine.open_suite_data(suite, None)
    return engine.evaluate(runner, suite, ds, options)


def test_interrupt_keeps_the_images_that_finished(models: dict[str, Path]) -> None:
    # batches of 2 images × (clean + 2 repeats): call 5 is the 2nd batch's first repeat
    r = _interrupted(models, at=5, batch_size=2)
    assert not r.completed and not r.passed and r.run["error"] == "interrupted"
    assert sorted({x.image_id for x in r.records}) == ["phantom-0-00000", "phantom-0-00001"]
    assert len(r.records) == 2 * 3 and r.gallery == ()
    assert r.case("lungs-dice[gaussian-sigma0.1]").n == 2


def test_interrupt_before_any_record_is_an_incomplete_empty_result(
    models: dict[str, Path],
) -> None:
    r = _interrupted(models, at=1, batch_size=16)
    assert not r.completed and r.run["error"] == "interrupted"
    assert r.records == () and r.cases == () and not r.passed


def test_interrupt_before_any_image_finished_fails_no_gate(models: dict[str, Path]) -> None:
    r = _interrupted(models, at=2, batch_size=16)
    assert not r.completed
    assert all(c.verdict != "fail" for c in r.cases), [(c.case_id, c.n) for c in r.cases]


def test_noise_at_model_resolution_matches_a_direct_computation(models: dict[str, Path]) -> None:
    """`at: model`: resize to the model's input, add noise there (spacing scaled), score
    at the mask's native size; checked against the same steps done by hand."""
    from robusttest.models import postprocess, preprocess, resize
    from robusttest.noise import NoiseSpec

    suite = seg_suite(
        data={"adapter": "phantom", "options": {"n": 4, "size": 96}},
        noise={"gaussian": {"sigma": [0.2], "at": "model"}},
        metrics=["dice"],
        gates={"default": {"min": 0.0}},
    )
    assert suite.noise_at == {"gaussian": "model"}
    assert suite.to_dict()["noise"][0]["at"] == "model"
    runner = load_model(models["dark"], device="cpu")
    ds = engine.open_suite_data(suite, None)
    r = engine.evaluate(runner, suite, ds, engine.EngineOptions(cache=False, gallery=0))
    spec = NoiseSpec("gaussian", 0.2)
    for s in ds.iter_samples(workers=0):
        x = torch.from_numpy(s.image)[None]
        small = resize(x[:, None], runner.card.input_size)[:, 0].clamp(0, 1)
        noisy = spec.apply(small, seed=suite.seed, image_ids=[s.image_id], repeat=0)
        raw = runner(preprocess(noisy[:, None], runner.card))
        probs = postprocess(raw, runner.card, s.image.shape)
        truth = np.asarray((s.masks or {})["lungs"])
        want = float(M.dice(M.binarize(probs[0, 0].numpy()), truth))
        got = next(
            rec.values["dice/lungs"]
            for rec in r.records
            if rec.image_id == s.image_id and rec.condition == "gaussian-sigma0.2"
        )
        assert got == pytest.approx(want, abs=1e-12)

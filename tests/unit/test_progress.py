"""Issue 16, points 1 and 8 in the engine: progress reports, and each case's share of time.

The engine reports a ``Progress`` after every batch × condition (and through the
statistics and the gallery), so a front end can show images done, the conditions and an
ETA while it runs; and it books its wall time on the cases by a documented rule
(``case_seconds``: each condition's compute time split between its cases, plus each
case's statistics, scaled to the wall time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from robusttest import engine
from robusttest.engine.pipeline import case_seconds
from robusttest.models import ModelCard, export_onnx
from robusttest.progress import Progress, clock
from robusttest.suite import Suite, parse_suite
from robusttest.zoo.nets import TinyUNet

CARD = ModelCard(
    task="segmentation",
    input_size=(64, 64),
    channels=1,
    mean=(0.5,),
    std=(0.25,),
    structures=("lungs",),
    output_activation="sigmoid",
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return export_onnx(TinyUNet(base=4, depth=2), tmp_path_factory.mktemp("m") / "u.onnx", CARD)


def suite(n: int = 6, repeats: int = 2) -> Suite:
    return parse_suite(
        {
            "name": "tiny",
            "task": "segmentation",
            "data": {"adapter": "phantom", "options": {"n": n, "size": 64}},
            "noise": {"gaussian": {"sigma": [0.05, 0.1]}, "quantum": {"dose": [0.1]}},
            "repeats": repeats,
            "metrics": ["dice", "hd95"],
            "targets": ["lungs"],
            "bootstrap": {"resamples": 100},
        }
    )


# --- the Progress line -----------------------------------------------------------------
def test_clock_reads_like_a_clock() -> None:
    assert [clock(s) for s in (0, 7.4, 59.6, 754, 3723)] == [
        "0:00",
        "0:07",
        "1:00",
        "12:34",
        "1:02:03",
    ]


def test_progress_line_and_eta_by_hand() -> None:
    p = Progress("m.onnx × s", 6, 24, 19, 2, elapsed=30.0, fraction=0.25)
    # 30 s for a quarter of the work: 90 s for the other three quarters
    assert p.eta == pytest.approx(90.0)
    assert p.line() == "m.onnx × s: 6/24 images × 19 conditions × 2 repeats (25%), 0:30, ETA 1:30"
    start = Progress("m.onnx × s", 0, 24, 1, 1, elapsed=0.0)
    assert start.eta is None
    assert start.line() == "m.onnx × s: 0/24 images × 1 condition (0%), 0:00, ETA ?"
    stats = Progress("m × s", 24, 24, 4, 1, elapsed=61.0, fraction=1.0, cases_done=3, cases_total=8)
    assert stats.eta is None
    assert stats.line() == "m × s: 24/24 images × 4 conditions; statistics 3/8 cases, 1:01"
    gallery = Progress("m × s", 24, 24, 4, 1, 62.0, 1.0, cases_done=8, cases_total=8, gallery=True)
    assert gallery.line() == "m × s: 24/24 images × 4 conditions, 8 cases; gallery, 1:02"
    done = Progress("m × s", 24, 24, 4, 1, 75.0, 1.0, cases_done=8, cases_total=8, finished=True)
    assert done.line() == "m × s: 24/24 images × 4 conditions, 8 cases in 1:15"


# --- what the engine reports -----------------------------------------------------------
def test_engine_reports_every_batch_condition_then_statistics_and_gallery(model: Path) -> None:
    seen: list[Progress] = []
    s = suite(n=6, repeats=2)
    result = engine.run(
        model, s, cache=False, batch_size=4, workers=1, lanes=1, gallery=1, progress=seen.append
    )
    n_cases = len(result.cases)
    passes = 1 + 3 * 2  # clean, then 3 noise levels × 2 repeats
    images = [p for p in seen if not p.cases_total and not p.gallery and not p.finished]
    # one report at the start, then one per batch × condition × repeat: 2 batches (4 + 2)
    assert len(images) == 1 + 2 * passes
    assert images[0].images_done == 0 and images[0].fraction == 0.0
    assert all(p.images_total == 6 and p.conditions == 4 and p.repeats == 2 for p in seen)
    assert all(p.label == "u.onnx × tiny" for p in seen)
    fractions = [p.fraction for p in images]
    assert fractions == sorted(fractions)
    # the first batch (4 images) counts as done when its last condition is
    assert [p.images_done for p in images].count(4) == passes
    assert images[-1].fraction == pytest.approx(1.0) and images[-1].images_done == 6
    stats = [p for p in seen if p.cases_total and not p.gallery and not p.finished]
    assert [p.cases_done for p in stats] == list(range(1, n_cases + 1))
    assert [p for p in seen if p.gallery]
    assert seen[-1].finished and seen[-1].cases_done == n_cases
    assert sum(p.finished for p in seen) == 1
    elapsed = [p.elapsed for p in seen]
    assert elapsed == sorted(elapsed)


def test_no_listener_no_reports(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine.run(model, suite(n=2, repeats=1), cache=False, gallery=0, progress=False)
    assert capsys.readouterr().err == ""


# --- each case's share of the time -----------------------------------------------------
def _case(case_id: str, condition: str) -> Any:
    class C:
        pass

    c = C()
    c.case_id, c.condition = case_id, condition  # type: ignore[attr-defined]
    return c


def test_case_seconds_by_hand() -> None:
    cases = [_case("a", "clean"), _case("b", "clean"), _case("c", "g1"), _case("d", "g1")]
    cond = {"clean": 2.0, "g1": 6.0}
    stats = dict.fromkeys("abcd", 0.5)
    # clean: 2 s split between a and b (1 each) + 0.5; g1: 6 s between c and d + 0.5
    assert case_seconds(cases, cond, stats, 10.0) == {"a": 1.5, "b": 1.5, "c": 3.5, "d": 3.5}
    # scaled to the wall time (decoding, the gallery and the lanes' overlap in proportion)
    assert case_seconds(cases, cond, stats, 20.0) == {"a": 3.0, "b": 3.0, "c": 7.0, "d": 7.0}
    # nothing timed (every output from the cache): evenly
    assert case_seconds(cases, {}, {}, 2.0) == dict.fromkeys("abcd", 0.5)
    assert case_seconds([], cond, stats, 5.0) == {}


def test_run_books_its_time_on_the_cases(model: Path) -> None:
    result = engine.run(model, suite(n=6, repeats=2), cache=False, gallery=1, workers=1)
    shares = result.run["case_seconds"]
    assert list(shares) == [c.case_id for c in result.cases]
    total = result.run["seconds_total"]
    assert sum(shares.values()) == pytest.approx(total, abs=1e-3)
    assert max(shares.values()) < 0.5 * total  # no single case holds it all
    assert min(shares.values()) > 0.0

"""The classification gallery (issue 16, point 5): ground truth, every label, worst cases.

The fixture findings model on a few phantoms: every thumbnail's caption gives the truth and
the score of every label (it showed four of five, and no truth); each noisy condition has a
worst case, the image whose score moved furthest toward the wrong answer, checked against
the records here.
"""

from __future__ import annotations

import re

import pytest
from report_factory import make_classification_result

import robusttest
from robusttest.engine.gallery import Shift, worst_shift
from robusttest.report import render_html
from robusttest.resources import fixture_models
from robusttest.results import ImageRecord, RunResult
from robusttest.suite import parse_suite

LABELS = ("effusion", "pneumothorax", "nodule", "cardiomegaly", "consolidation")


@pytest.fixture(scope="module")
def cls_run() -> RunResult:
    suite = parse_suite(
        {
            "name": "findings-gallery",
            "task": "classification",
            "data": {
                "adapter": "phantom",
                "options": {"n": 16, "size": 128, "seed": 2, "finding_prob": 0.5},
            },
            "noise": {"gaussian": {"sigma": [0.1, 0.3]}},
            "repeats": 1,
            "metrics": ["auroc"],
            "bootstrap": {"resamples": 100},
        }
    )
    return robusttest.run(
        fixture_models()["findings"], suite, cache=False, gallery=2, workers=0, device="cpu"
    )


def _score_line(caption: str) -> dict[str, tuple[bool, str]]:
    """label → (marked true, score text) from the caption's last line."""
    last = caption.splitlines()[-1]
    out = {}
    for part in last.split(", "):
        m = re.fullmatch(r"(●?)(\S+) (\d\.\d\d)", part)
        assert m is not None, part
        out[m.group(2)] = (m.group(1) == "●", m.group(3))
    return out


def test_captions_give_truth_and_every_label(cls_run: RunResult) -> None:
    recs = {(r.image_id, r.condition): r for r in cls_run.records if r.repeat == 0}
    assert cls_run.gallery
    for item in cls_run.gallery:
        r = recs[(item.image_id, item.condition)]
        truth = [t for t in LABELS if r.targets[t]]
        head = item.caption.splitlines()[0]
        assert head == (
            f"{item.image_id} · {item.condition} · truth: "
            + (", ".join(truth) or "none of the labels")
        )
        scores = _score_line(item.caption)
        assert list(scores) == list(LABELS)  # all five, in the model's order
        for t in LABELS:
            marked, text = scores[t]
            assert marked == bool(r.targets[t])
            assert text == f"{r.values[f'score/{t}']:.2f}"  # the scored image's score


def _independent_worst(records: tuple[ImageRecord, ...], cond: str) -> tuple[str, str, float]:
    clean = {r.image_id: r for r in records if r.condition == "clean"}
    best: tuple[float, str, str] | None = None
    for r in sorted(records, key=lambda r: r.image_id):
        if r.condition != cond or r.repeat:
            continue
        for t in LABELS:
            c, n = clean[r.image_id].values[f"score/{t}"], r.values[f"score/{t}"]
            move = (c - n) if r.targets[t] else (n - c)
            if best is None or move > best[0]:
                best = (move, r.image_id, t)
    assert best is not None
    return best[1], best[2], best[0]


def test_worst_case_per_condition_moved_furthest_toward_wrong(cls_run: RunResult) -> None:
    worst = {g.condition: g for g in cls_run.gallery if g.kind == "worst"}
    assert sorted(worst) == ["gaussian-sigma0.1", "gaussian-sigma0.3"]
    for cond, item in worst.items():
        image, label, move = _independent_worst(cls_run.records, cond)
        assert item.image_id == image
        lines = item.caption.splitlines()
        assert lines[1].startswith(f"{label} ") and f"{move:+.2f} toward wrong" in lines[1]
    page = render_html(cls_run, rendered_at="t")
    assert "moved furthest toward the wrong answer" in page
    assert "truth: " in page and "●" in page


def test_worst_shift_direction() -> None:
    def rec(cond: str, image: str, score: float, truth: int) -> ImageRecord:
        return ImageRecord("s", image, image, cond, 0, {"score/a": score}, {"a": truth})

    records = [
        rec("clean", "pos", 0.9, 1),
        rec("clean", "neg", 0.1, 0),
        rec("n", "pos", 0.7, 1),  # a positive's score down by 0.2: toward wrong
        rec("n", "neg", 0.4, 0),  # a negative's score up by 0.3: further toward wrong
    ]
    got = worst_shift(records, "n", ["a"])
    assert got == Shift("neg", "a", 0, 0.1, 0.4)
    assert got is not None and got.toward_wrong == pytest.approx(0.3)
    # improvements are moves away from wrong (negative)
    assert Shift("x", "a", 1, 0.5, 0.8).toward_wrong == pytest.approx(-0.3)


def test_html_shows_multi_line_captions() -> None:
    page = render_html(make_classification_result(), rendered_at="t")
    assert "figcaption{white-space:pre-line}" in page

"""torchmetrics as an independent oracle for Dice and AUROC.

The library computes both itself (numpy, midranks); torchmetrics (a dev dependency only)
computes them its own way. They must agree wherever torchmetrics defines a value; where it
does not (both masks empty, a single class), the library's documented convention holds.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_f1_score
from torchmetrics.functional.segmentation import dice_score

from robusttest import metrics as M


def _tm_dice(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """torchmetrics' per-image Dice of N×H×W binary masks (NaN when both are empty)."""
    p = torch.from_numpy(pred.astype(np.int64))[:, None]
    t = torch.from_numpy(target.astype(np.int64))[:, None]
    out = dice_score(
        p,
        t,
        num_classes=1,
        include_background=True,
        average="none",
        input_format="one-hot",
        aggregation_level="samplewise",
    )
    return out[:, 0].double().numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("density", [0.02, 0.3, 0.7])
def test_dice_equals_torchmetrics_on_random_masks(seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    target = rng.random((12, 24, 31)) < density
    # predictions that overlap the target partly: flip a seed-dependent share of pixels
    flip = rng.random(target.shape) < rng.uniform(0.05, 0.5)
    pred = target ^ flip
    ours = M.dice(pred, target)
    assert ours.shape == (12,)
    np.testing.assert_allclose(ours, _tm_dice(pred, target), rtol=0, atol=1e-6)


def test_dice_edge_cases_against_torchmetrics() -> None:
    full = np.ones((1, 8, 8), dtype=bool)
    empty = np.zeros((1, 8, 8), dtype=bool)
    one = empty.copy()
    one[0, 3, 4] = True
    cases = [
        (full, full, 1.0),  # identical
        (one, one, 1.0),  # a single pixel, identical
        (empty, full, 0.0),  # nothing predicted
        (full, empty, 0.0),  # everything predicted, nothing there
        (one, full, 2 / 65),  # 2·1 / (1 + 64)
    ]
    for pred, target, want in cases:
        tm = _tm_dice(pred, target)[0]
        assert float(M.dice(pred, target)[0]) == pytest.approx(tm, abs=1e-7)
        assert tm == pytest.approx(want, abs=1e-7)
    # both empty: torchmetrics has no value; the library's convention is a perfect 1
    assert math.isnan(_tm_dice(empty, empty)[0])
    assert float(M.dice(empty, empty)[0]) == 1.0


def test_binarize_then_dice_equals_torchmetrics_f1_at_the_threshold() -> None:
    """F1 of thresholded probabilities is Dice; torchmetrics thresholds strictly (p > 0.5),
    and so must ``binarize``: probabilities exactly at 0.5 are background."""
    rng = np.random.default_rng(7)
    prob = rng.random((10, 16, 16)).astype(np.float32)
    prob[:, :4, :4] = 0.5  # on the threshold
    target = rng.random((10, 16, 16)) < 0.4
    ours = M.dice(M.binarize(prob), target)
    theirs = binary_f1_score(
        torch.from_numpy(prob),
        torch.from_numpy(target.astype(np.int64)),
        threshold=0.5,
        multidim_average="samplewise",
    )
    np.testing.assert_allclose(ours, theirs.double().numpy(), rtol=0, atol=1e-6)


def _tm_auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its single-class warning; checked below
        return float(binary_auroc(torch.from_numpy(scores), torch.from_numpy(targets)))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_torchmetrics_on_random_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    targets = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.int64)
    targets[:2] = [0, 1]  # both classes present
    # informative but noisy scores, in float64
    scores = targets * rng.uniform(0.0, 2.0) + rng.normal(size=n)
    ours = M.auroc(scores, targets)
    assert ours.reason is None and ours.n == n
    assert ours.value == pytest.approx(_tm_auroc(scores, targets), abs=1e-6)


def test_auroc_with_ties_equals_torchmetrics() -> None:
    """Heavily tied scores (five distinct values): ties count ½ in both."""
    rng = np.random.default_rng(3)
    targets = (rng.random(300) < 0.3).astype(np.int64)
    scores = np.round(rng.random(300) * 4 + targets, 0) / 4
    assert len(np.unique(scores)) <= 6
    ours = M.auroc(scores, targets).value
    assert ours == pytest.approx(_tm_auroc(scores, targets), abs=1e-6)


@pytest.mark.parametrize(
    ("scores", "targets", "want"),
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),  # perfect separation
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),  # perfectly reversed
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # all tied
        ([0.3, 0.7], [0, 1], 1.0),  # the smallest defined case
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # one discordant pair of four
    ],
)
def test_auroc_edge_cases_against_torchmetrics(
    scores: list[float], targets: list[int], want: float
) -> None:
    s = np.array(scores, dtype=np.float64)
    t = np.array(targets, dtype=np.int64)
    assert M.auroc(s, t).value == pytest.approx(want, abs=1e-9)
    assert _tm_auroc(s, t) == pytest.approx(want, abs=1e-6)


def test_auroc_single_class_is_nan_with_a_reason_where_torchmetrics_says_zero() -> None:
    s = np.array([0.2, 0.4, 0.9])
    t = np.array([1, 1, 1])
    assert _tm_auroc(s, t) == 0.0  # torchmetrics: a silent (warned) 0.0
    ours = M.auroc(s, t, label="Effusion")
    assert math.isnan(ours.value) and ours.reason is not None and "Effusion" in ours.reason

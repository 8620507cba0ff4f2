"""robusttest.metrics against independent references (sklearn, scipy, hand cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import directed_hausdorff
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from robusttest import metrics as M
from robusttest.errors import ConfigError, InputError, UnknownNameError


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int, p: float) -> np.ndarray:
    return rng.random((n, h, w)) < p


# ----------------------------------------------------------------------- Dice / IoU


def test_dice_iou_match_sklearn_per_image() -> None:
    rng = np.random.default_rng(1)
    pred = _random_masks(rng, 6, 17, 23, 0.4)
    target = _random_masks(rng, 6, 17, 23, 0.5)
    d, j = M.dice(pred, target), M.iou(pred, target)
    assert d.shape == j.shape == (6,)
    for i in range(6):
        assert d[i] == pytest.approx(f1_score(target[i].ravel(), pred[i].ravel()))
        assert j[i] == pytest.approx(jaccard_score(target[i].ravel(), pred[i].ravel()))


def test_single_mask_gives_0d_array_and_float_works() -> None:
    a = np.zeros((5, 5), bool)
    a[1:3, 1:3] = True
    b = np.zeros((5, 5), bool)
    b[1:3, 1:4] = True
    d = M.dice(a, b)
    assert d.shape == ()
    assert float(d) == pytest.approx(2 * 4 / (4 + 6))
    assert float(M.iou(a, b)) == pytest.approx(4 / 6)


def test_empty_mask_conventions() -> None:
    empty = np.zeros((2, 8, 8), bool)
    full = np.zeros((2, 8, 8), bool)
    full[:, 2:5, 2:5] = True
    assert M.dice(empty, empty).tolist() == [1.0, 1.0]
    assert M.iou(empty, empty).tolist() == [1.0, 1.0]
    assert M.dice(empty, full).tolist() == [0.0, 0.0]
    assert M.iou(full, empty).tolist() == [0.0, 0.0]
    assert M.hd95(empty, empty).tolist() == [0.0, 0.0]
    values, reasons = M.hausdorff_with_reasons(empty[0], full[0])
    assert math.isnan(float(values))
    assert reasons[0] is not None and "prediction mask is empty" in reasons[0]
    values, reasons = M.hausdorff_with_reasons(full, empty)
    assert np.isnan(values).all()
    assert all(r is not None and "target mask is empty" in r for r in reasons)
    assert M.hd95(full, empty, one_empty_mm=300.0).tolist() == [300.0, 300.0]


def test_torch_and_integer_masks_equal_numpy() -> None:
    rng = np.random.default_rng(2)
    pred = _random_masks(rng, 3, 12, 12, 0.5)
    target = _random_masks(rng, 3, 12, 12, 0.5)
    ref = M.dice(pred, target)
    np.testing.assert_array_equal(M.dice(torch.from_numpy(pred), torch.from_numpy(target)), ref)
    np.testing.assert_array_equal(M.dice(pred.astype(np.uint8), target.astype(np.float32)), ref)
    np.testing.assert_array_equal(
        M.hd95(torch.from_numpy(pred), torch.from_numpy(target)), M.hd95(pred, target)
    )


def test_mask_input_errors_name_the_problem() -> None:
    with pytest.raises(InputError, match="binarize"):
        M.dice(np.full((4, 4), 0.7), np.ones((4, 4), bool))
    with pytest.raises(InputError, match="differs from target shape"):
        M.iou(np.ones((4, 4), bool), np.ones((4, 5), bool))
    with pytest.raises(InputError, match="H×W or N×H×W"):
        M.dice(np.ones((1, 1, 4, 4), bool), np.ones((1, 1, 4, 4), bool))


def test_binarize_numpy_and_torch() -> None:
    p = np.array([0.2, 0.5, 0.51, 0.9])
    assert M.binarize(p).tolist() == [False, False, True, True]  # strict >, as torchmetrics
    assert M.binarize(p, 0.1).tolist() == [True, True, True, True]
    t = M.binarize(torch.tensor(p))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.bool
    assert t.tolist() == [False, False, True, True]
    with pytest.raises(InputError, match="NaN"):
        M.binarize(np.array([0.1, np.nan]))
    with pytest.raises(InputError, match="NaN"):
        M.binarize(torch.tensor([0.1, float("nan")]))
    with pytest.raises(ConfigError, match="threshold"):
        M.binarize(p, 1.5)


# ----------------------------------------------------------------------- Hausdorff


def _square(size: int, r0: int, c0: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[r0 : r0 + side, c0 : c0 + side] = True
    return m


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("spacing", [1.0, 0.143])
def test_hd95_concentric_squares_is_k_times_spacing(k: int, spacing: float) -> None:
    # Boundaries k pixels apart everywhere except the corner regions of the outer square,
    # which are < 5 % of its boundary, so the 95th percentile is exactly k pixels.
    inner = _square(160, 20 + k, 20 + k, 100)
    outer = _square(160, 20, 20, 100 + 2 * k)
    assert float(M.hd95(inner, outer, spacing)) == pytest.approx(k * spacing)
    assert float(M.hd95(outer, inner, spacing)) == pytest.approx(k * spacing)
    # The classical (100th percentile) distance reaches the outer corners diagonally.
    assert float(M.hausdorff(inner, outer, spacing)) == pytest.approx(k * math.sqrt(2) * spacing)


def test_hd95_single_pixels_anisotropic_spacing() -> None:
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[5, 5] = True
    b[8, 9] = True  # 3 rows, 4 columns apart
    assert float(M.hd95(a, b, (2.0, 0.5))) == pytest.approx(math.hypot(3 * 2.0, 4 * 0.5))
    assert float(M.hd95(a, b)) == pytest.approx(5.0)


def test_hd95_per_image_spacing_and_bad_spacing() -> None:
    a = np.zeros((2, 20, 20), bool)
    b = np.zeros((2, 20, 20), bool)
    a[:, 5, 5] = True
    b[:, 5, 9] = True
    out = M.hd95(a, b, np.array([[1.0, 1.0], [0.5, 0.25]]))
    np.testing.assert_allclose(out, [4.0, 1.0])
    with pytest.raises(ConfigError, match="spacing_mm"):
        M.hd95(a, b, [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="spacing_mm"):
        M.hd95(a, b, -1.0)


def _boundary_points(m: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    border = m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(2, 1))
    return np.argwhere(border).astype(float)


def test_max_hausdorff_matches_scipy_directed_hausdorff() -> None:
    rng = np.random.default_rng(3)
    from scipy import ndimage

    for _ in range(5):
        a = ndimage.binary_opening(rng.random((48, 40)) < 0.55)
        b = ndimage.binary_opening(rng.random((48, 40)) < 0.55)
        if not a.any() or not b.any():
            continue
        pa, pb = _boundary_points(a), _boundary_points(b)
        ref = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
        assert float(M.hausdorff(a, b)) == pytest.approx(ref)
        # Anisotropic spacing: scale the point coordinates the same way.
        s = np.array([0.7, 0.2])
        ref_s = max(directed_hausdorff(pa * s, pb * s)[0], directed_hausdorff(pb * s, pa * s)[0])
        assert float(M.hausdorff(a, b, (0.7, 0.2))) == pytest.approx(ref_s)


def test_hd95_is_max_of_directed_percentiles() -> None:
    rng = np.random.default_rng(4)
    a = rng.random((30, 30)) < 0.3
    b = rng.random((30, 30)) < 0.3
    pa, pb = _boundary_points(a), _boundary_points(b)
    d_ab = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min(axis=1)
    d_ba = np.sqrt(((pb[:, None, :] - pa[None, :, :]) ** 2).sum(-1)).min(axis=1)
    ref = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert float(M.hd95(a, b)) == pytest.approx(ref)


# --------------------------------------------------------------------------- AUROC


def test_auroc_matches_sklearn_random_and_ties() -> None:
    rng = np.random.default_rng(5)
    for rounding in (None, 1):
        y = rng.random(300) < 0.3
        s = rng.normal(size=300) + y
        if rounding is not None:
            s = np.round(s, rounding)  # many ties
        mv = M.auroc(s, y)
        assert mv.reason is None and mv.n == 300
        assert mv.value == pytest.approx(roc_auc_score(y, s))
        assert float(M.auroc(torch.from_numpy(s), torch.from_numpy(y))) == pytest.approx(mv.value)


def test_auroc_one_class_is_nan_with_reason_not_zero() -> None:
    s = np.array([0.1, 0.4, 0.8])
    mv = M.auroc(s, np.ones(3), label="Hernia")
    assert math.isnan(mv.value) and not mv.defined
    assert mv.reason == "label 'Hernia' has only positive cases among 3 images; AUROC is undefined"
    neg = M.auroc(s, np.zeros(3, int), label="Hernia")
    assert neg.reason is not None and "only negative cases among 3 images" in neg.reason
    assert M.auroc([], []).reason is not None


def test_auroc_input_errors() -> None:
    with pytest.raises(InputError, match="finite"):
        M.auroc([0.1, np.nan], [0, 1])
    with pytest.raises(InputError, match="0/1"):
        M.auroc([0.1, 0.2], [0, 2])
    with pytest.raises(InputError, match="scores has 2 values but targets has 3"):
        M.auroc([0.1, 0.2], [0, 1, 1])


def test_auroc_per_label_and_macro() -> None:
    rng = np.random.default_rng(6)
    y = (rng.random((50, 3)) < 0.4).astype(int)
    y[:, 2] = 0  # "C" has no positives
    s = rng.random((50, 3)) + y
    per = M.auroc_per_label(s, y, ["A", "B", "C"])
    assert per["A"].value == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert not per["C"].defined
    macro = M.macro_auroc(per)
    assert macro.value == pytest.approx((per["A"].value + per["B"].value) / 2)
    assert macro.used == ("A", "B")
    assert set(macro.ignored) == {"C"}
    assert macro.reason is not None and "ignored 1" in macro.reason and "'C'" in macro.reason
    none = M.macro_auroc({"C": per["C"]})
    assert math.isnan(none.value) and none.reason is not None
    with pytest.raises(ConfigError, match="2 names given for 3"):
        M.auroc_per_label(s, y, ["A", "B"])
    with pytest.raises(ConfigError, match="duplicate"):
        M.auroc_per_label(s, y, ["A", "A", "B"])


# ---------------------------------------------------------------------- pairwise task


def test_pairwise_task_hand_case() -> None:
    labels = ["Atelectasis", "Effusion", "Pneumothorax"]
    targets = np.array(
        [
            [0, 0, 1],  # PTX only -> kept, target 1
            [1, 0, 0],  # ATL only -> kept, target 0
            [1, 0, 1],  # both -> dropped
            [0, 1, 0],  # neither -> dropped
            [1, 1, 0],  # ATL (+ effusion) -> kept, target 0
        ]
    )
    scores = np.array(
        [
            [0.2, 0.5, 0.8],
            [0.7, 0.1, 0.4],
            [0.5, 0.5, 0.5],
            [0.5, 0.5, 0.5],
            [0.5, 0.9, 0.5],
        ]
    )
    task = M.pairwise_task(scores, targets, labels)
    idx, s, t = task  # unpacks like a tuple
    assert idx.tolist() == [0, 1, 4]
    assert t.tolist() == [1, 0, 0]

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    np.testing.assert_allclose(
        s, [logit(0.8) - logit(0.2), logit(0.4) - logit(0.7), 0.0], atol=1e-12
    )
    # The sigmoid of the score is P(PTX | exactly one of PTX, ATL) for independent outputs.
    p, q = 0.8, 0.2
    assert 1 / (1 + math.exp(-s[0])) == pytest.approx(p * (1 - q) / (p * (1 - q) + q * (1 - p)))
    # Logits in: plain difference, no clipping.
    lg = M.pairwise_task(np.log(scores / (1 - scores)), targets, labels, scores_are_logits=True)
    np.testing.assert_allclose(lg.scores, s, atol=1e-12)
    # Saturated probabilities stay finite.
    sat = scores.copy()
    sat[0] = [0.0, 0.5, 1.0]
    assert np.isfinite(M.pairwise_task(sat, targets, labels).scores).all()


def test_pairwise_task_errors() -> None:
    y = np.zeros((2, 2), int)
    s = np.full((2, 2), 0.5)
    with pytest.raises(UnknownNameError, match="unknown label 'Nodule'; known labels: A, B"):
        M.pairwise_task(s, y, ["A", "B"], positive="Nodule", negative="A")
    with pytest.raises(ConfigError, match="both 'A'"):
        M.pairwise_task(s, y, ["A", "B"], positive="A", negative="A")
    with pytest.raises(InputError, match="scores_are_logits"):
        M.pairwise_task(np.full((2, 2), 3.0), y, ["A", "B"], positive="A", negative="B")


# ------------------------------------------------------------------------- registry


def test_registry() -> None:
    assert set(M.METRICS.names()) >= {"dice", "iou", "hd95", "auroc"}
    hd = M.get_metric("hd95")
    assert not hd.higher_is_better and hd.unit == "mm" and hd.per_image
    assert hd.unit_for(True) == "mm" and hd.unit_for(False) == "px"
    assert M.available_metrics("segmentation") == ("dice", "hd95", "iou")
    assert M.default_metrics("segmentation") == ("dice",)
    assert M.default_metrics("classification") == ("auroc",)
    assert M.get_metric("auroc").task == "classification" and not M.get_metric("auroc").per_image
    with pytest.raises(UnknownNameError) as err:
        M.get_metric("f1")
    assert str(err.value) == "unknown metric 'f1'; known metrics: auroc, dice, hd95, iou"


def test_segmentation_metrics_compute_from_a_batch() -> None:
    rng = np.random.default_rng(3)
    pred = rng.random((4, 9, 11)) > 0.5
    truth = rng.random((4, 9, 11)) > 0.4
    flat_p, flat_t = pred.reshape(4, -1), truth.reshape(4, -1)
    spacing = np.array([[0.5, 0.5], [1.0, 1.0], [2.0, 2.0], [0.143, 0.143]])
    batch = M.SegmentationBatch(
        pred=flat_p,
        truth=flat_t,
        n_pred=flat_p.sum(1),
        n_true=flat_t.sum(1),
        inter=(flat_p & flat_t).sum(1),
        shape=(9, 11),
        spacing_mm=spacing,
    )
    np.testing.assert_allclose(M.get_metric("dice").values(batch), M.dice(pred, truth))
    np.testing.assert_allclose(M.get_metric("iou").values(batch), M.iou(pred, truth))
    np.testing.assert_allclose(
        M.get_metric("hd95").values(batch), M.hd95(pred, truth, spacing_mm=spacing)
    )


def test_auroc_weighted_value_equals_sklearn_with_weights() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.random(60) > 0.6
    s = np.round(rng.random(60), 1)  # ties
    w = rng.integers(0, 4, 60).astype(float)
    got = M.get_metric("auroc").weighted_value(y, s, w)  # type: ignore[attr-defined]
    assert got == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)


def test_generic_set_bootstrap_equals_the_vectorised_auroc_one() -> None:
    # the generic per-resample path (extension metrics) draws the same patients with the
    # same seed as the vectorised AUROC bootstrap: same numbers
    from robusttest import stats as S

    rng = np.random.default_rng(5)
    y = rng.random(80) > 0.5
    clean = rng.random(80) + y * 0.8
    noisy = clean + rng.normal(0, 0.5, 80)
    groups = np.repeat(np.arange(40), 2)
    auc = M.get_metric("auroc")
    generic = S.paired_bootstrap_statistic(
        auc.weighted_value,  # type: ignore[attr-defined]
        y, clean, noisy, groups, n_resamples=300, seed=2, ci=0.9,
    )  # fmt: skip
    fast = S.paired_bootstrap_auroc(y, clean, noisy, groups, n_resamples=300, seed=2, ci=0.9)
    for f in ("estimate", "ci_low", "ci_high", "noisy_ci_low", "noisy_ci_high", "n_skipped"):
        assert getattr(generic, f) == pytest.approx(getattr(fast, f), abs=1e-12), f


# ------------------------------------------------------------------------ properties

mask_pairs = st.integers(1, 3).flatmap(
    lambda n: st.tuples(
        arrays(np.bool_, (n, 6, 7)),
        arrays(np.bool_, (n, 6, 7)),
    )
)


@settings(max_examples=60, deadline=None)
@given(mask_pairs)
def test_dice_properties(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    d, j = M.dice(a, b), M.iou(a, b)
    assert ((d >= 0) & (d <= 1)).all()
    np.testing.assert_array_equal(d, M.dice(b, a))
    np.testing.assert_allclose(d, 2 * j / (1 + j))
    np.testing.assert_array_equal(M.dice(a, a), np.ones(a.shape[0]))


@settings(max_examples=30, deadline=None)
@given(mask_pairs)
def test_hd95_properties(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    h = M.hd95(a, b)
    np.testing.assert_array_equal(np.isnan(h), a.any(axis=(1, 2)) != b.any(axis=(1, 2)))
    np.testing.assert_array_equal(h, M.hd95(b, a))  # max of both directions is symmetric
    assert (M.hd95(a, a) == 0).all()
    full = M.hausdorff(a, b)
    ok = ~np.isnan(h)
    assert (h[ok] <= full[ok] + 1e-12).all()

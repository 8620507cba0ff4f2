"""The procedural chest radiograph: determinism, physics, masks, findings, arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robusttest.errors import ConfigError, UnknownNameError
from robusttest.phantom import (
    FIELD_MM,
    FINDINGS,
    STRUCTURES,
    PhantomCase,
    cardiothoracic_ratio,
    ellipsoid_thickness,
    generate_case,
)


def _same(a: PhantomCase, b: PhantomCase) -> bool:
    return (
        a.image.tobytes() == b.image.tobytes()
        and a.labels == b.labels
        and a.masks.keys() == b.masks.keys()
        and all(a.masks[k].tobytes() == b.masks[k].tobytes() for k in a.masks)
        and (a.image_id, a.patient_id, a.pixel_spacing_mm)
        == (b.image_id, b.patient_id, b.pixel_spacing_mm)
    )


def _pair(finding: str, index: int, size: int = 256) -> tuple[PhantomCase, PhantomCase]:
    """The same patient without and with ``finding`` forced on."""
    clean = generate_case(5, index, size=size, finding_prob=0.0)
    sick = generate_case(5, index, size=size, finding_prob=1.0, findings=(finding,))
    return clean, sick


# --- Determinism -------------------------------------------------------------------------


def test_same_arguments_give_identical_bytes() -> None:
    a = generate_case(11, 7, size=128, finding_prob=0.6)
    b = generate_case(11, 7, size=128, finding_prob=0.6)
    assert _same(a, b)


def test_independent_of_call_order() -> None:
    forward = [generate_case(3, i, size=96, finding_prob=0.5) for i in range(4)]
    backward = [generate_case(3, i, size=96, finding_prob=0.5) for i in reversed(range(4))][::-1]
    assert all(_same(f, b) for f, b in zip(forward, backward, strict=True))


def test_cases_differ_between_indices_and_seeds() -> None:
    a = generate_case(0, 0, size=96)
    assert not np.array_equal(a.image, generate_case(0, 1, size=96).image)
    assert not np.array_equal(a.image, generate_case(1, 0, size=96).image)


def test_same_patient_at_every_size() -> None:
    small = generate_case(2, 4, size=128, finding_prob=0.0).image
    big = generate_case(2, 4, size=256, finding_prob=0.0).image
    pooled = big.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    assert np.corrcoef(small.ravel(), pooled.ravel())[0, 1] > 0.97


def test_ids_and_spacing() -> None:
    case = generate_case(42, 17, size=200)
    assert case.image_id == "phantom-42-00017"
    assert case.patient_id == "phantom-42-p00017"
    assert case.pixel_spacing_mm == pytest.approx(FIELD_MM / 200)


# --- Image and masks ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 100, 256])
def test_range_dtype_shape(size: int) -> None:
    case = generate_case(1, 3, size=size, finding_prob=1.0)
    assert case.image.shape == (size, size)
    assert case.image.dtype == np.float32
    assert np.isfinite(case.image).all()
    assert case.image.min() >= 0.0 and case.image.max() <= 1.0
    assert set(case.masks) == set(STRUCTURES)
    for m in case.masks.values():
        assert m.shape == (size, size) and m.dtype == np.bool_
    assert set(case.labels) == set(FINDINGS)
    assert all(v in (0, 1) for v in case.labels.values())


def test_monochrome2_air_black_and_anatomy_contrast() -> None:
    for i in range(6):
        case = generate_case(9, i, finding_prob=0.0)
        img, m = case.image, case.masks
        # Air beside the lower trunk is black; soft tissue and bone are bright.
        assert img[-1, 0] == 0.0 and img[-1, -1] == 0.0
        assert img[m["lungs"]].mean() < img[m["heart"]].mean() - 0.15
        # The abdomen under the diaphragm is brighter than the lungs.
        assert img[-20:, 100:156].mean() > img[m["lungs"]].mean() + 0.2


def test_masks_sane() -> None:
    for i in range(8):
        case = generate_case(4, i, finding_prob=0.5)
        m = case.masks
        size = case.image.shape[0]
        for name in ("lungs", "heart", "right_lung", "left_lung", "clavicles"):
            assert m[name].sum() > 0.005 * size * size, name
        assert np.array_equal(m["lungs"], m["right_lung"] | m["left_lung"])
        assert not (m["right_lung"] & m["left_lung"]).any()
        assert (m["lungs"] & m["heart"]).sum() < 0.02 * m["lungs"].sum()
        # PA film: the patient's right lung is on the image left, the heart right of centre.
        cols = np.arange(size)
        assert (m["right_lung"].sum(axis=0) * cols).sum() / m["right_lung"].sum() < size / 2
        assert (m["left_lung"].sum(axis=0) * cols).sum() / m["left_lung"].sum() > size / 2
        assert (m["heart"].sum(axis=0) * cols).sum() / m["heart"].sum() > size / 2
        # Lungs take a plausible share of the field (real films: roughly 15–35 %).
        assert 0.10 < m["lungs"].mean() < 0.40


def test_cardiothoracic_ratio_normal_without_cardiomegaly() -> None:
    allowed = tuple(f for f in FINDINGS if f != "cardiomegaly")
    for i in range(30):
        case = generate_case(8, i, size=128, finding_prob=0.5, findings=allowed)
        assert case.labels["cardiomegaly"] == 0
        assert 0.3 < cardiothoracic_ratio(case.masks) < 0.5


# --- Findings ----------------------------------------------------------------------------


def test_labels_follow_findings_and_probability() -> None:
    none = generate_case(0, 1, finding_prob=1.0, findings=())
    assert sum(none.labels.values()) == 0
    assert sum(generate_case(0, 1, finding_prob=0.0).labels.values()) == 0
    every = generate_case(0, 1, size=96, finding_prob=1.0)
    assert all(every.labels[f] == 1 for f in FINDINGS)
    two = generate_case(0, 1, size=96, finding_prob=1.0, findings=("nodule", "effusion"))
    assert {f for f in FINDINGS if two.labels[f]} == {"nodule", "effusion"}
    single = generate_case(0, 1, size=96, finding_prob=1.0, findings="nodule")
    assert {f for f in FINDINGS if single.labels[f]} == {"nodule"}
    rate = np.mean(
        [generate_case(1, i, size=64, finding_prob=0.3).labels["nodule"] for i in range(120)]
    )
    assert 0.15 < rate < 0.45


def test_effusion_opacifies_the_lung_base() -> None:
    for i in range(4):
        clean, sick = _pair("effusion", i)
        lungs = clean.masks["lungs"]
        rows = np.flatnonzero(lungs.any(axis=1))
        base = lungs.copy()
        base[: rows[0] + int(0.7 * (rows[-1] - rows[0]))] = False  # lowest 30 % of the lungs
        top = lungs & ~base
        assert sick.image[base].mean() > clean.image[base].mean() + 0.03
        assert abs(sick.image[top].mean() - clean.image[top].mean()) < 0.01
        # The fluid is not lung field: the mask follows the meniscus.
        assert sick.masks["lungs"].sum() < lungs.sum()


def test_cardiomegaly_enlarges_the_heart() -> None:
    for i in range(4):
        clean, sick = _pair("cardiomegaly", i)
        assert sick.labels["cardiomegaly"] == 1
        assert cardiothoracic_ratio(clean.masks) < 0.5 < cardiothoracic_ratio(sick.masks)
        assert sick.masks["heart"].sum() > 1.3 * clean.masks["heart"].sum()


def test_nodule_is_a_local_bright_blob_in_the_lung() -> None:
    for i in range(4):
        clean, sick = _pair("nodule", i)
        diff = sick.image.astype(np.float64) - clean.image
        changed = np.abs(diff) > 1e-6
        assert diff.min() >= -1e-6  # it only adds density
        ys, xs = np.nonzero(changed)
        # Diameter ≤ 30 mm (+ a pixel each side) at 1.5625 mm per pixel.
        extent_mm = (max(np.ptp(ys), np.ptp(xs)) + 1) * clean.pixel_spacing_mm
        assert 2.0 <= extent_mm <= 30.0 + 2 * clean.pixel_spacing_mm
        peak = np.unravel_index(np.argmax(diff), diff.shape)
        assert clean.masks["lungs"][peak]
        assert diff.max() > 0.005


def test_pneumothorax_darkens_a_rim_and_collapses_the_lung() -> None:
    for i in range(4):
        clean, sick = _pair("pneumothorax", i)
        diff = sick.image.astype(np.float64) - clean.image
        lungs = clean.masks["lungs"]
        # Pleural air: a lucent rim without lung markings …
        dark = diff < -0.02
        assert dark.sum() > 0.01 * lungs.sum()
        assert (dark & lungs).sum() > 0.9 * dark.sum()
        # … on one side only, and more of it at the apex than at the base.
        side = "right_lung" if (dark & clean.masks["right_lung"]).any() else "left_lung"
        other = "left_lung" if side == "right_lung" else "right_lung"
        assert not (np.abs(diff) > 1e-6)[clean.masks[other]].any()
        rows = np.flatnonzero(clean.masks[side].any(axis=1))
        mid = (rows[0] + rows[-1]) // 2
        assert dark[:mid].sum() > dark[mid:].sum()
        # The pleural air space still counts as lung field (see the module docstring).
        assert np.array_equal(sick.masks["lungs"], lungs)


def test_consolidation_is_a_patchy_opacity_in_one_lung() -> None:
    for i in range(4):
        clean, sick = _pair("consolidation", i)
        diff = sick.image.astype(np.float64) - clean.image
        changed = np.abs(diff) > 1e-6
        assert diff.min() >= -1e-6
        assert changed.sum() > 50
        assert (changed & ~clean.masks["lungs"]).sum() < 0.1 * changed.sum()
        # Ill-defined: a range of opacities, not a flat plateau.
        vals = diff[changed]
        assert np.percentile(vals, 90) > 2 * np.percentile(vals, 30)


def test_one_finding_leaves_the_rest_of_the_anatomy_alone() -> None:
    clean, sick = _pair("nodule", 6)
    assert (np.abs(sick.image - clean.image) > 0).mean() < 0.01
    for name in ("heart", "clavicles"):
        assert np.array_equal(sick.masks[name], clean.masks[name])


# --- Beer–Lambert building block ---------------------------------------------------------


def test_ellipsoid_thickness_is_the_analytic_chord() -> None:
    a, b, c = 30.0, 20.0, 12.5
    assert ellipsoid_thickness(5.0, -3.0, 5.0, -3.0, a, b, c)[()] == pytest.approx(2 * c)
    # Half-way along the a axis: 2c·sqrt(1 − 1/4).
    assert ellipsoid_thickness(5.0 + a / 2, -3.0, 5.0, -3.0, a, b, c)[()] == pytest.approx(
        2 * c * math.sqrt(0.75), rel=1e-6
    )
    assert ellipsoid_thickness(5.0 + a + 0.1, -3.0, 5.0, -3.0, a, b, c)[()] == 0.0
    # Rotation by 90° swaps the in-plane axes.
    rot = ellipsoid_thickness(5.0, -3.0 + a / 2, 5.0, -3.0, a, b, c, angle=math.pi / 2)
    assert rot[()] == pytest.approx(2 * c * math.sqrt(0.75), rel=1e-5)
    # Volume: the integral of the chord over the plane is 4/3·π·a·b·c.
    g = np.linspace(-40.0, 40.0, 801)
    t = ellipsoid_thickness(g[None, :], g[:, None], 0.0, 0.0, a, b, c, angle=0.3)
    assert t.sum() * (g[1] - g[0]) ** 2 == pytest.approx(4 / 3 * math.pi * a * b * c, rel=2e-3)


# --- Arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 63},
        {"size": 2049},
        {"size": 256.0},
        {"finding_prob": -0.1},
        {"finding_prob": 1.5},
        {"finding_prob": float("nan")},
        {"seed": -1},
        {"index": -2},
        {"seed": "1"},
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"seed": 0, "index": 0, **kwargs}
    with pytest.raises(ConfigError):
        generate_case(**args)  # type: ignore[arg-type]


def test_unknown_finding_name() -> None:
    with pytest.raises(UnknownNameError) as err:
        generate_case(0, 0, findings=("nodule", "pneumonia"))
    assert err.value.kind == "finding" and err.value.name == "pneumonia"
    assert "nodule" in str(err.value)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ConfigError)


def test_case_labels_match_the_rendered_case_without_rendering() -> None:
    from robusttest.phantom import case_labels, generate_case

    for index in range(12):
        for findings in (None, ("nodule", "effusion")):
            want = generate_case(3, index, size=64, finding_prob=0.5, findings=findings).labels
            assert case_labels(3, index, finding_prob=0.5, findings=findings) == want

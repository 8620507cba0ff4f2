"""robusttest.data on the public corpus (../shared/data or $ROBUSTTEST_DATA); skipped without it."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from robusttest.data import NIH_LABELS, open_dataset

pytestmark = pytest.mark.realdata


def _edge_contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean of a ring just outside the mask minus the mean inside.

    Around the lung field lie chest wall, mediastinum and diaphragm, all brighter than
    aerated lung, so an aligned mask gives a clearly positive value (>= 0.09 on every
    image of the corpus) and a misplaced one does not.
    """
    ring = ndi.binary_dilation(mask, iterations=max(4, image.shape[0] // 50)) & ~mask
    return float(image[ring].mean() - image[mask].mean())


def test_nih_partial_download_counts(shared_data: Path) -> None:
    t0 = time.perf_counter()
    ds = open_dataset("nih-cxr14", shared_data / "nih-cxr14")
    elapsed = time.perf_counter() - t0
    d = ds.describe()
    assert d["counts"]["summary"] == "621 of 112,120 rows have images"
    assert len(ds) == 621 and ds.labels == NIH_LABELS
    # positives per finding as the corpus README lists them
    assert d["positives"]["Pneumothorax"] == 44 and d["positives"]["Effusion"] == 82
    assert d["positives"]["Infiltration"] == 123 and d["positives"]["Edema"] == 18
    assert sum(1 for r in ds.records if r.labels and not any(r.labels.values())) == 100
    assert elapsed < 5.0  # ~0.15 s here; generous for slow CI disks


def test_nih_spacing_of_the_stored_images(shared_data: Path) -> None:
    ds = open_dataset("nih-cxr14", shared_data, limit=5)
    for rec in ds.records:
        sx0, w0 = float(rec.meta["original_spacing_x_mm"]), float(rec.meta["original_width"])
        # the table's spacing is of the original (~2500 px wide) film; the stored PNG is 512 wide
        assert rec.pixel_spacing_mm == pytest.approx(sx0 * w0 / 512)
        # i.e. twice the spacing of the official 1024-px release
        assert rec.pixel_spacing_mm == pytest.approx(2 * sx0 * w0 / 1024)
        assert rec.pixel_spacing_mm is not None and 0.5 < rec.pixel_spacing_mm < 1.0
    samples = list(ds.iter_samples(workers=2))
    assert [s.image_id for s in samples] == [r.image_id for r in ds.records]
    for s, rec in zip(samples, ds.records, strict=True):
        assert s.image.shape == (512, 512) and s.image.dtype == np.float32
        assert float(s.image.min()) >= 0.0 and float(s.image.max()) <= 1.0
        assert s.pixel_spacing_mm == pytest.approx(rec.pixel_spacing_mm)
        assert s.labels == rec.labels and s.masks is None


def test_nih_pairwise_task(shared_data: Path) -> None:
    ds = open_dataset("nih-cxr14", shared_data, pairwise="Pneumothorax-vs-Atelectasis")
    assert ds.labels == ("Pneumothorax", "Atelectasis")
    assert all(
        r.labels and r.labels["Pneumothorax"] + r.labels["Atelectasis"] == 1 for r in ds.records
    )
    pos = ds.describe()["positives"]
    assert 0 < pos["Pneumothorax"] <= 44 and 0 < pos["Atelectasis"] <= 92


def test_nih_table_read_matches_gzip_row_count(shared_data: Path) -> None:
    table = shared_data / "nih-cxr14" / "Data_Entry_2017_v2020.csv.gz"
    with gzip.open(table, "rt") as fh:
        rows = sum(1 for _ in fh) - 1
    assert open_dataset("nih-cxr14", shared_data).describe()["counts"]["rows_in_table"] == rows


@pytest.mark.parametrize(("name", "n", "tb"), [("montgomery", 138, 58), ("shenzhen", 300, 150)])
def test_tb_sets_masks_aligned(shared_data: Path, name: str, n: int, tb: int) -> None:
    full = open_dataset(name, shared_data)
    assert len(full) == n and full.describe()["counts"]["tuberculosis"] == tb
    ds = open_dataset(name, shared_data, limit=6)
    for s in ds.iter_samples(workers=2):
        assert s.masks is not None
        lungs = s.masks["lungs"]
        assert lungs.shape == s.image.shape == (512, 512)
        assert 0.08 < lungs.mean() < 0.5  # lungs cover a plausible part of the film
        assert _edge_contrast(s.image, lungs) > 0.05  # aligned with the image
        assert s.labels is not None and s.labels["Tuberculosis"] == int(s.image_id[-1])


def test_landmark_real_subset(shared_data: Path) -> None:
    ds = open_dataset("landmark", shared_data)
    assert len(ds) == 54 and ds.structures == ("lungs", "right_lung", "left_lung")
    for s in open_dataset("landmark", shared_data, limit=4).iter_samples(workers=2):
        assert s.image.shape == (1024, 1024) and s.masks is not None
        right, left = s.masks["right_lung"], s.masks["left_lung"]
        assert 0.1 < s.masks["lungs"].mean() < 0.5
        # PA view: the patient's right lung is on the image left
        assert np.nonzero(right)[1].mean() < 512 < np.nonzero(left)[1].mean()
        assert (right & left).sum() < 0.01 * right.sum()
        assert _edge_contrast(s.image, s.masks["lungs"]) > 0.05
        shifted = np.roll(s.masks["lungs"], 150, axis=1)
        assert _edge_contrast(s.image, shifted) < _edge_contrast(s.image, s.masks["lungs"])
        assert s.meta["dataset"] in ("Montgomery", "Shenzhen")


def test_shared_segmentation_manifest(shared_data: Path) -> None:
    csv_path = shared_data / "manifests" / "segmentation.csv"
    ds = open_dataset("manifest", csv_path, base=shared_data, limit=3)
    assert ds.task == "segmentation" and ds.structures == ("lungs",)
    for s in ds.iter_samples():
        assert s.masks is not None and s.masks["lungs"].shape == s.image.shape
        assert s.masks["lungs"].any()


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_montgomery_shenzhen_is_the_union_of_the_two_splits(shared_data: Path, task: str) -> None:
    """The combined adapter's held-out split is each set's own, with patients kept apart."""
    both = open_dataset("montgomery-shenzhen", shared_data, task=task, split="test")
    parts = {
        n: open_dataset(n, shared_data / n, task=task, split="test")
        for n in ("montgomery", "shenzhen")
    }
    assert len(both) == 80 == sum(len(p) for p in parts.values())
    expect = {(f"{n}:{r.patient_id}", r.image_id) for n, p in parts.items() for r in p.records}
    assert {(r.patient_id, r.image_id) for r in both.records} == expect
    assert len({r.patient_id for r in both.records}) == 80  # 0001 of each set stays two
    assert both.describe()["positives"] == {"Tuberculosis": 36}
    train = open_dataset("montgomery-shenzhen", shared_data, task=task, split="train")
    assert len(train) == 358 and not {r.image_id for r in train.records} & {
        r.image_id for r in both.records
    }
    sample = next(both.iter_samples(workers=0))
    assert (sample.masks is not None) == (task == "segmentation")

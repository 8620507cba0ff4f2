"""Pixel spacing from the data: the NIH table (and its fallback), manifests, DICOM."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_base import make_nih

from robusttest.data import open_dataset
from robusttest.data.nih import NIH_FIELD_MM


def test_nih_stored_spacing_from_the_table(tmp_path: Path) -> None:
    ds = open_dataset("nih-cxr14", make_nih(tmp_path / "nih"))
    # 0.143 mm on the original 2,500-pixel-wide film, stored 64 wide
    assert ds.records[1].pixel_spacing_mm == pytest.approx(0.143 * 2500 / 64)


def test_nih_without_spacing_columns_takes_the_median_field(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"
    )
    with gzip.open(root / "Data_Entry_2017.csv.gz", "wt") as fh:
        fh.write(header + "\n00000009_000.png,Effusion,0,9,40,F,PA\n")
    Image.fromarray(np.full((48, 64), 128, np.uint8)).save(root / "images" / "00000009_000.png")
    ds = open_dataset("nih-cxr14", root)
    (rec,) = ds.records
    assert rec.pixel_spacing_mm == pytest.approx(NIH_FIELD_MM[0] / 64)
    assert float(rec.meta["pixel_spacing_y_mm"]) == pytest.approx(NIH_FIELD_MM[1] / 48, rel=1e-5)
    assert ds.load(rec).pixel_spacing_mm == pytest.approx(NIH_FIELD_MM[0] / 64)


@pytest.mark.realdata
def test_nih_median_field_is_the_tables(shared_data: Path) -> None:
    """NIH_FIELD_MM is what the real table says."""
    with gzip.open(shared_data / "nih-cxr14" / "Data_Entry_2017_v2020.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))[1:]
    fx = np.median([float(r[7]) * float(r[9]) for r in rows])
    fy = np.median([float(r[8]) * float(r[10]) for r in rows])
    assert (fx, fy) == pytest.approx(NIH_FIELD_MM, abs=0.05)


def test_manifest_spacing_column(tmp_path: Path) -> None:
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text("image,pixel_spacing_mm,Effusion\na.png,0.2,1\nb.png,,0\n")
    ds = open_dataset("manifest", tmp_path / "m.csv")
    assert [r.pixel_spacing_mm for r in ds.records] == [0.2, None]

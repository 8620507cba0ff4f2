"""DICOM through its modality and VOI LUTs, against the standard's formulas (PS3.3 C.11).

The files are written here with pydicom, with known rescale, window, modality LUT and VOI
LUT parameters; the expected display values are computed from the standard's definitions
directly (not through pydicom), and scaled by the output range of the transform, so the
same stored value gives the same display value whatever else the image holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robusttest.imageio import read_image

pydicom = pytest.importorskip("pydicom")


def write(path: Path, arr: np.ndarray, **tags: Any) -> Path:
    """A 12-bit unsigned MONOCHROME2 DX image with ``tags`` set (sequences as lists of dicts)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "P"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    for key, value in tags.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = []
            for d in value:
                item = Dataset()
                for k, v in d.items():
                    if k == "LUTData":  # VR US or OW: a list of values is US
                        item.add_new(0x00283006, "US", v)
                    else:
                        setattr(item, k, v)
                items.append(item)
            setattr(ds, key, items)
        else:
            setattr(ds, key, value)
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def raw() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 4096, (16, 24)).astype(np.uint16)


def window_linear(x: np.ndarray, c: float, w: float, ymin: float, ymax: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, the LINEAR function, as written in the standard."""
    x = x.astype(np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin
    y = np.where(x <= c - 0.5 - (w - 1) / 2, ymin, y)
    return np.where(x > c - 0.5 + (w - 1) / 2, ymax, y)


def test_window_centre_and_width(tmp_path: Path, raw: np.ndarray) -> None:
    img = read_image(write(tmp_path / "w.dcm", raw, WindowCenter=1500, WindowWidth=2000))
    want = window_linear(raw, 1500, 2000, 0, 4095) / 4095
    np.testing.assert_allclose(img.pixels, want, atol=1e-6)
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0  # clipped outside the window
    assert img.depth_label == "12-bit (DICOM BitsStored; VOI window)"


def test_rescale_then_window_in_modality_units(tmp_path: Path, raw: np.ndarray) -> None:
    tags = {
        "RescaleSlope": 0.5,
        "RescaleIntercept": -1024,
        "WindowCenter": -300,
        "WindowWidth": 1200,
    }
    img = read_image(write(tmp_path / "rw.dcm", raw, **tags))
    hu = raw * 0.5 - 1024
    ymin, ymax = -1024.0, 4095 * 0.5 - 1024
    want = (window_linear(hu, -300, 1200, ymin, ymax) - ymin) / (ymax - ymin)
    np.testing.assert_allclose(img.pixels, want, atol=1e-6)


def test_rescale_alone_keeps_the_stored_range(tmp_path: Path, raw: np.ndarray) -> None:
    dim = raw // 4  # the same stored values in a darker image: no per-image stretch
    a = read_image(write(tmp_path / "a.dcm", raw, RescaleSlope=2.0, RescaleIntercept=10.0))
    b = read_image(write(tmp_path / "b.dcm", dim, RescaleSlope=2.0, RescaleIntercept=10.0))
    np.testing.assert_allclose(a.pixels, raw / 4095, atol=1e-6)
    np.testing.assert_allclose(b.pixels, dim / 4095, atol=1e-6)


def test_voi_lut_sequence(tmp_path: Path, raw: np.ndarray) -> None:
    # 4096 entries of 10 bits: a square-root curve, first mapped value 0
    lut = np.round(np.sqrt(np.arange(4096) / 4095) * 1023).astype(np.uint16)
    voi = [{"LUTDescriptor": [4096, 0, 10], "LUTData": lut.tolist()}]
    img = read_image(write(tmp_path / "v.dcm", raw, VOILUTSequence=voi))
    np.testing.assert_allclose(img.pixels, lut[raw] / 1023, atol=1e-6)
    assert "VOI LUT" in img.depth_label


def test_modality_lut_sequence_and_monochrome1(tmp_path: Path, raw: np.ndarray) -> None:
    # 2048 entries of 16 bits from stored value 1024 on: below it the first entry, above
    # the last (PS3.3 C.11.1.1)
    lut = (np.arange(2048) * 30).astype(np.uint16)
    mod = [{"LUTDescriptor": [2048, 1024, 16], "LUTData": lut.tolist(), "ModalityLUTType": "US"}]
    img = read_image(
        write(
            tmp_path / "m.dcm",
            raw,
            ModalityLUTSequence=mod,
            PhotometricInterpretation="MONOCHROME1",
        )
    )
    idx = np.clip(raw.astype(np.int64) - 1024, 0, 2047)
    want = 1.0 - lut[idx] / 65535  # the LUT's 16-bit range, then MONOCHROME1 inverted
    np.testing.assert_allclose(img.pixels, want, atol=1e-6)
    assert img.depth_label.endswith("modality LUT, MONOCHROME1 inverted)")


def test_spacing_from_pixel_spacing_else_imager_spacing(tmp_path: Path, raw: np.ndarray) -> None:
    both = write(tmp_path / "s.dcm", raw, PixelSpacing=[0.2, 0.2], ImagerPixelSpacing=[0.15, 0.15])
    imager = write(tmp_path / "i.dcm", raw, ImagerPixelSpacing=[0.143, 0.143])
    assert read_image(both).pixel_spacing_mm == pytest.approx(0.2)
    assert read_image(imager).pixel_spacing_mm == pytest.approx(0.143)
    assert read_image(write(tmp_path / "n.dcm", raw)).pixel_spacing_mm is None

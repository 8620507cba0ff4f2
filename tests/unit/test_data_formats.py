"""robusttest.data adapters for DICOM, JSRT, Landmark polygons, manifest CSVs and the phantom."""

from __future__ import annotations

import csv
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robusttest.data import BadImageWarning, open_dataset, rasterise_polygon
from robusttest.errors import ConfigError, DataError, UnknownNameError

# ----------------------------------------------------------------------------- DICOM


def write_dicom(
    path: Path,
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits: int = 12,
    slope: float | None = None,
    intercept: float | None = None,
    spacing: float | None = None,
    imager_spacing: float | None = None,
    patient: str = "P1",
    signed: bool = False,
) -> str:
    """A minimal DX image written with pydicom 3; returns its SOPInstanceUID."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    uid = generate_uid()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid
    ds.PatientID = patient
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if spacing is not None:
        ds.PixelSpacing = [spacing, spacing]
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = [imager_spacing, imager_spacing]
    ds.PixelData = arr.astype(np.int16 if signed else np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return str(uid)


@pytest.fixture
def raw12() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 4096, (24, 32)).astype(np.uint16)


def test_dicom_folder(tmp_path: Path, raw12: np.ndarray) -> None:
    pytest.importorskip("pydicom")
    root = tmp_path / "dcm"
    uid2 = write_dicom(root / "a" / "m2.dcm", raw12, patient="PA")
    uid1 = write_dicom(root / "a" / "m1.dcm", raw12, photometric="MONOCHROME1", patient="PB")
    uid_r = write_dicom(root / "b" / "IM0003", raw12, slope=2.0, intercept=-100.0, spacing=0.2)
    uid_i = write_dicom(root / "b" / "IM0004", raw12, imager_spacing=0.139)
    (root / "b" / "notes.txt").write_text("not an image")
    ds = open_dataset("dicom", root)
    assert ds.task == "classification" and len(ds) == 4  # suffix-less files found by preamble
    by_id = {r.image_id: r for r in ds.records}
    assert set(by_id) == {uid1, uid2, uid_r, uid_i}
    assert by_id[uid2].patient_id == "PA" and by_id[uid1].patient_id == "PB"
    assert by_id[uid_r].pixel_spacing_mm == pytest.approx(0.2)
    assert by_id[uid_i].pixel_spacing_mm == pytest.approx(0.139)
    assert by_id[uid2].pixel_spacing_mm is None
    m2, m1 = ds.load(by_id[uid2]), ds.load(by_id[uid1])
    np.testing.assert_allclose(m2.image, raw12 / 4095.0, atol=1e-6)
    np.testing.assert_allclose(m1.image, 1.0 - m2.image, atol=1e-6)  # MONOCHROME1 is inverted
    rs = ds.load(by_id[uid_r])
    # the rescale maps the stored range [0, 4095] to [-100, 8090], and that whole range to
    # [0, 1] (never the image's own min–max): 2·raw − 100 comes back as raw / 4095
    np.testing.assert_allclose(rs.image, raw12 / 4095.0, atol=1e-6)
    assert rs.pixel_spacing_mm == pytest.approx(0.2) and rs.labels is None


def test_dicom_signed_pixels_keep_their_range(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    signed = np.random.default_rng(5).integers(-2048, 2048, (16, 16))
    write_dicom(tmp_path / "s.dcm", signed, signed=True)
    ds = open_dataset("dicom", tmp_path)
    img = ds.load(ds.records[0]).image
    # two's complement 12-bit: -2048 -> 0, 2047 -> 1, nothing clipped
    np.testing.assert_allclose(img, (signed + 2048) / 4095.0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Expected explicit VR", "ignore:Invalid value for VR")
def test_dicom_labels_sidecar_and_corrupt_file(tmp_path: Path, raw12: np.ndarray) -> None:
    pytest.importorskip("pydicom")
    root = tmp_path / "dcm"
    write_dicom(root / "one.dcm", raw12)
    write_dicom(root / "two.dcm", raw12)
    (root / "three.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    side = tmp_path / "labels.csv"
    side.write_text("file,Pneumothorax\none.dcm,1\ntwo.dcm,0\nthree.dcm,1\n")
    ds = open_dataset("dicom", root, labels_csv=side)
    assert ds.labels == ("Pneumothorax",) and len(ds) == 3
    with pytest.raises(DataError, match=r"three.dcm"):
        list(ds.iter_samples())
    with pytest.warns(BadImageWarning):
        got = list(ds.iter_samples(on_bad_image="skip"))
    assert len(got) == 2 and ds.skipped[0][0] == "three" and "three.dcm" in ds.skipped[0][1]
    assert sorted(s.labels["Pneumothorax"] for s in got if s.labels) == [0, 1]
    side.write_text("file,Pneumothorax\none.dcm,maybe\n")
    with pytest.raises(DataError, match=r"row 1, column 'Pneumothorax'"):
        open_dataset("dicom", root, labels_csv=side)


# ----------------------------------------------------------------------------- JSRT


def _jsrt_raw(path: Path, bone_value: int, lung_value: int) -> np.ndarray:
    """A 2048² JSRT-like file: a 'lung' square of high (dark) values in a low-value body."""
    raw = np.full((2048, 2048), bone_value, dtype=np.uint16)
    raw[512:1536, 256:1024] = lung_value
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.astype(">u2").tofile(path)
    return raw


def _gif(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).convert("P").save(path)


def test_jsrt_polarity_masks_and_labels(tmp_path: Path) -> None:
    root = tmp_path / "jsrt"
    _jsrt_raw(root / "All247images" / "JPCLN001.IMG", bone_value=500, lung_value=3500)
    _jsrt_raw(root / "All247images" / "JPCNN001.IMG", bone_value=400, lung_value=3000)
    for stem in ("JPCLN001", "JPCNN001"):
        left = np.zeros((1024, 1024), bool)
        left[256:768, 128:512] = True
        right = np.zeros((1024, 1024), bool)
        right[256:768, 600:900] = True
        _gif(root / "scr" / "masks" / "left lung" / f"{stem}.gif", left)
        _gif(root / "scr" / "masks" / "right lung" / f"{stem}.gif", right)
    ds = open_dataset("jsrt", root)
    assert ds.structures == ("lungs",) and len(ds) == 2  # only the lung folders exist
    rec = ds.records[0]
    assert rec.image_id == "JPCLN001" and rec.labels == {"Nodule": 1}
    assert rec.pixel_spacing_mm == pytest.approx(0.175)
    s = ds.load(rec)
    assert s.image.shape == (2048, 2048) and s.image.dtype == np.float32
    # high stored values (lung, film dark) become dark; low ones (bone/body) bright
    assert s.image[1000, 500] == pytest.approx(1 - 3500 / 4095, abs=1e-6)
    assert s.image[100, 100] == pytest.approx(1 - 500 / 4095, abs=1e-6)
    assert s.image[100, 100] > s.image[1000, 500]
    assert s.masks is not None and s.masks["lungs"].shape == (2048, 2048)
    assert int(s.masks["lungs"].sum()) == 4 * (512 * 384 + 512 * 300)  # nearest ×2
    assert ds.records[1].labels == {"Nodule": 0}
    raw_ds = open_dataset("jsrt", root, invert=False, task="classification")
    assert raw_ds.load(raw_ds.records[0]).image[1000, 500] == pytest.approx(3500 / 4095, abs=1e-6)


def test_jsrt_truncated_file(tmp_path: Path) -> None:
    root = tmp_path / "jsrt"
    root.mkdir()
    (root / "JPCLN002.IMG").write_bytes(b"\0" * 1000)
    ds = open_dataset("jsrt", root, task="classification")
    with pytest.raises(DataError, match=r"JPCLN002.IMG has 1,000 bytes"):
        ds.load(ds.records[0])
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=r"expected JSRT \*.IMG files under .*other"):
        open_dataset("jsrt", tmp_path / "other")


# ----------------------------------------------------------------------------- landmark


def test_polygon_area_matches_analytic() -> None:
    square = np.array([[100.0, 100.0], [300.0, 100.0], [300.0, 250.0], [100.0, 250.0]])
    m = rasterise_polygon(square, (512, 512))
    area, perimeter = 200 * 150, 2 * (200 + 150)
    assert abs(int(m.sum()) - area) <= perimeter  # boundary pixels only
    tri = np.array([[50.0, 400.0], [450.0, 400.0], [250.0, 100.0]])
    t = rasterise_polygon(tri, (512, 512))
    tri_area = 0.5 * 400 * 300
    tri_perim = 400 + 2 * float(np.hypot(200, 300))
    assert abs(int(t.sum()) - tri_area) <= tri_perim / 2 + 2
    # the frame scales: the same square on a half-size image has a quarter of the area
    half = rasterise_polygon(square, (256, 256), scale=(0.5, 0.5))
    assert abs(int(half.sum()) - area / 4) <= perimeter / 2


def test_landmark_synthetic_heart_and_clavicles(tmp_path: Path) -> None:
    root = tmp_path / "landmark"
    (root / "Images").mkdir(parents=True)
    Image.fromarray(np.zeros((1024, 1024), np.uint8)).save(root / "Images" / "JPCLN001.png")
    Image.fromarray(np.zeros((1024, 1024), np.uint8)).save(root / "Images" / "CHNCXR_0001_0.png")
    shapes = {
        "RL": [[100, 100], [400, 100], [400, 700], [100, 700]],
        "LL": [[600, 100], [900, 100], [900, 700], [600, 700]],
        "H": [[400, 500], [600, 500], [600, 800], [400, 800]],
        "RCLA": [[100, 50], [400, 50], [400, 80], [100, 80]],
        "LCLA": [[600, 50], [900, 50], [900, 80], [600, 80]],
    }
    for part, pts in shapes.items():
        (root / "landmarks" / part).mkdir(parents=True)
        np.save(root / "landmarks" / part / "JPCLN001.npy", np.array(pts, float))
    for part in ("RL", "LL"):
        np.save(root / "landmarks" / part / "CHNCXR_0001_0.npy", np.array(shapes[part], float))
    ds = open_dataset("landmark", root)
    assert set(ds.structures) == {"lungs", "right_lung", "left_lung", "heart", "clavicles"}
    by_id = {r.image_id: r for r in ds.records}
    s = ds.load(by_id["JPCLN001"])
    assert s.masks is not None
    np.testing.assert_array_equal(s.masks["lungs"], s.masks["right_lung"] | s.masks["left_lung"])
    assert abs(int(s.masks["heart"].sum()) - 200 * 300) <= 1000
    assert s.masks["clavicles"].sum() > 0
    other = ds.load(by_id["CHNCXR_0001_0"])  # no heart/clavicle landmarks: no such masks
    assert other.masks is not None and set(other.masks) == {"lungs", "right_lung", "left_lung"}
    np.save(root / "landmarks" / "H" / "JPCLN001.npy", np.zeros((5, 3)))
    with pytest.raises(DataError, match=r"H/JPCLN001.npy holds an array of shape \(5, 3\)"):
        ds.load(by_id["JPCLN001"])


# ----------------------------------------------------------------------------- manifest


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def man_root(tmp_path: Path) -> Path:
    for i in range(3):
        Image.fromarray(np.full((16, 20), 40 * i, np.uint8)).save(tmp_path / f"im{i}.png")
        m = np.zeros((16, 20), np.uint8)
        m[4:8, 4 + i : 10] = 255
        Image.fromarray(m).save(tmp_path / f"mask{i}.png")
    return tmp_path


def test_manifest_segmentation_and_labels(man_root: Path) -> None:
    path = _csv(
        man_root / "set.csv",
        ["image", "patient_id", "mask_lungs", "Effusion", "site", "pixel_spacing_mm"],
        [[f"im{i}.png", f"p{i // 2}", f"mask{i}.png", str(i % 2), "A", "0.5"] for i in range(3)],
    )
    ds = open_dataset("manifest", path)
    assert ds.task == "segmentation" and ds.structures == ("lungs",) and ds.labels == ("Effusion",)
    s = ds.load(ds.records[1])
    assert s.image_id == "im1" and s.patient_id == "p0" and s.labels == {"Effusion": 1}
    assert s.pixel_spacing_mm == 0.5 and s.meta["site"] == "A"
    assert s.masks is not None and int(s.masks["lungs"].sum()) == 4 * 5
    cls = open_dataset("manifest", man_root / "set.csv", task="classification")
    assert cls.load(cls.records[0]).masks is None
    # the folder works when it holds one CSV
    assert len(open_dataset("manifest", man_root)) == 3


@pytest.mark.parametrize(
    ("header", "row", "pattern"),
    [
        (["image", "Effusion"], ["im0.png", "2"], r"row 2, column 'Effusion': '2' is not a 0/1"),
        (["image", "Effusion"], ["gone.png", "1"], r"row 2, column 'image': file not found"),
        (
            ["image", "mask"],
            ["im0.png", "nomask.png"],
            r"row 2, column 'mask': mask file not found",
        ),
        (["image", "pixel_spacing_mm"], ["im0.png", "-1"], r"row 2, column 'pixel_spacing_mm'"),
        (["image", "Effusion"], ["", "1"], r"row 2, column 'image': empty"),
    ],
)
def test_manifest_errors_name_csv_row_column(
    man_root: Path, header: list[str], row: list[str], pattern: str
) -> None:
    good = ["im1.png"] + [
        "0.5" if h == "pixel_spacing_mm" else "mask1.png" if h == "mask" else "1"
        for h in header[1:]
    ]
    path = _csv(man_root / "bad.csv", header, [good, row])
    labels = ["Effusion"] if "Effusion" in header else None  # else '2' makes it a meta column
    with pytest.raises(DataError, match=pattern) as exc:
        open_dataset("manifest", path, labels=labels)
    assert str(path) in str(exc.value)


def test_manifest_missing_image_column_and_skip(man_root: Path) -> None:
    path = _csv(man_root / "x.csv", ["picture"], [["im0.png"]])
    with pytest.raises(DataError, match="no image column"):
        open_dataset("manifest", path)
    path = _csv(man_root / "y.csv", ["image", "Effusion"], [["im0.png", "1"], ["gone.png", "0"]])
    ds = open_dataset("manifest", path, missing="skip")
    assert len(ds) == 1 and ds.describe()["counts"]["missing_images"] == 1
    with pytest.raises(ConfigError, match="missing="):
        open_dataset("manifest", path, missing="ignore")


def test_manifest_explicit_labels_keep_other_binary_columns_in_meta(man_root: Path) -> None:
    path = _csv(man_root / "z.csv", ["image", "Effusion", "has_bbox"], [["im0.png", "1", "0"]])
    ds = open_dataset("manifest", path, labels=["Effusion"])
    assert ds.labels == ("Effusion",) and ds.records[0].meta["has_bbox"] == "0"
    with pytest.raises(UnknownNameError, match="'Mass'"):
        open_dataset("manifest", path, labels=["Mass"])


# ----------------------------------------------------------------------------- phantom


@dataclass
class _FakeCase:
    image: np.ndarray
    masks: dict[str, np.ndarray]
    labels: dict[str, int]
    pixel_spacing_mm: float
    patient_id: str
    image_id: str


def _fake_phantom() -> types.ModuleType:
    mod = types.ModuleType("robusttest.phantom")
    findings = findings_all = ("effusion", "nodule")

    def case_labels(
        seed: int, index: int, finding_prob: float = 0.3, findings: object = None
    ) -> dict[str, int]:
        # its own stream, as in the real generator: labels known without rendering
        rng = np.random.default_rng([seed, index, 1])
        return {f: int(rng.random() < finding_prob) for f in findings_all}

    def generate_case(
        seed: int,
        index: int,
        size: int = 256,
        finding_prob: float = 0.3,
        findings_: object = None,
        **kw: object,
    ) -> _FakeCase:
        rng = np.random.default_rng([seed, index])
        img = rng.random((size, size), dtype=np.float32)
        lungs = img > 0.5
        return _FakeCase(
            img,
            {"lungs": lungs, "heart": ~lungs},
            case_labels(seed, index, finding_prob),
            400.0 / size,
            f"p{index}",
            f"case{index}",
        )

    mod.generate_case = generate_case  # type: ignore[attr-defined]
    mod.case_labels = case_labels  # type: ignore[attr-defined]
    mod.FINDINGS = findings  # type: ignore[attr-defined]
    mod.STRUCTURES = ("lungs", "heart")  # type: ignore[attr-defined]
    mod.FIELD_MM = 400.0  # type: ignore[attr-defined]
    return mod


def test_phantom_adapter_with_stub_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "robusttest.phantom", _fake_phantom())
    ds = open_dataset("phantom", n=6, seed=1, size=32)
    assert ds.task == "segmentation" and ds.structures == ("lungs", "heart") and len(ds) == 6
    a = list(ds.iter_samples(workers=2))
    b = list(open_dataset("phantom", n=6, seed=1, size=32).iter_samples(workers=0))
    assert [s.image_id for s in a] == [f"phantom-1-{i:05d}" for i in range(6)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
    assert a[0].pixel_spacing_mm == pytest.approx(400 / 32) and a[0].masks is not None
    cls = open_dataset("phantom", n=20, seed=1, size=32, task="classification", finding_prob=0.5)
    assert cls.labels == ("effusion", "nodule")
    assert 0 < cls.describe()["positives"]["effusion"] < 20
    assert (
        cls.manifest_hash()
        == open_dataset(
            "phantom", n=20, seed=1, size=32, task="classification", finding_prob=0.5
        ).manifest_hash()
    )
    assert (
        cls.manifest_hash()
        != open_dataset("phantom", n=20, seed=2, size=32, task="classification").manifest_hash()
    )
    with pytest.raises(ConfigError, match="n=0"):
        open_dataset("phantom", n=0)
    with pytest.raises(UnknownNameError, match="'fracture'"):
        open_dataset("phantom", findings=["fracture"])


def test_phantom_adapter_with_real_generator() -> None:
    import importlib

    try:
        mod = importlib.import_module("robusttest.phantom")
    except ImportError:
        pytest.skip("robusttest.phantom not written yet")
    if not hasattr(mod, "generate_case"):
        pytest.skip("robusttest.phantom.generate_case not written yet")
    ds = open_dataset("phantom", n=2, seed=0, size=64)
    s = ds.load(ds.records[0])
    assert s.image.shape == (64, 64) and s.image.dtype == np.float32
    assert s.masks is not None and s.masks["lungs"].shape == (64, 64) and s.masks["lungs"].any()

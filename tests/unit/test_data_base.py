"""robusttest.data: registry, filters, parallel decoding, bad images, hashing (synthetic files)."""

from __future__ import annotations

import csv
import gzip
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robusttest.data import (
    BadImageWarning,
    Dataset,
    PairwiseTask,
    Record,
    Sample,
    available_adapters,
    open_dataset,
    register_adapter,
)
from robusttest.data.base import heldout_patient
from robusttest.errors import ConfigError, DataError, UnknownNameError


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _image(seed: int, shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _half_mask(shape: tuple[int, int], left: bool) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    h, w = shape
    if left:
        m[h // 4 : 3 * h // 4, 2 : w // 2 - 2] = 255
    else:
        m[h // 4 : 3 * h // 4, w // 2 + 2 : w - 2] = 255
    return m


def make_montgomery(root: Path, n: int = 10, official: bool = True) -> Path:
    """A Montgomery-layout folder with n small images (odd numbers tuberculous)."""
    for i in range(1, n + 1):
        stem = f"MCUCXR_{i:04d}_{i % 2}"
        img = _image(i)
        _png(root / "CXR_png" / f"{stem}.png", img)
        if official:
            _png(root / "ManualMask" / "leftMask" / f"{stem}.png", _half_mask(img.shape, True))
            _png(root / "ManualMask" / "rightMask" / f"{stem}.png", _half_mask(img.shape, False))
        else:
            both = _half_mask(img.shape, True) | _half_mask(img.shape, False)
            _png(root / "ManualMask" / "lungs" / f"{stem}.png", both)
    return root


@pytest.fixture
def mont(tmp_path: Path) -> Path:
    return make_montgomery(tmp_path / "montgomery")


# ----------------------------------------------------------------------------- registry


def test_builtin_adapters_are_registered() -> None:
    names = set(available_adapters())
    assert {
        "nih-cxr14",
        "montgomery",
        "shenzhen",
        "jsrt",
        "landmark",
        "manifest",
        "dicom",
        "phantom",
    } <= names


def test_unknown_adapter_lists_known() -> None:
    with pytest.raises(UnknownNameError, match="montgomery") as exc:
        open_dataset("montgomeri", "/nowhere")
    assert "nih-cxr14" in str(exc.value)


def test_unknown_option_is_config_error(mont: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'colour'.*limit"):
        open_dataset("montgomery", mont, colour="red")


def test_missing_folder_names_path_and_expectation(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_dataset("montgomery", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"expected CXR_png/ under .*empty.*point --data"):
        open_dataset("montgomery", tmp_path / "empty")


def test_root_may_be_the_corpus_folder(tmp_path: Path) -> None:
    make_montgomery(tmp_path / "montgomery", n=2)
    ds = open_dataset("montgomery", tmp_path)
    assert ds.root == tmp_path / "montgomery" and len(ds) == 2


def test_env_variable_gives_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_montgomery(tmp_path / "montgomery", n=2)
    monkeypatch.setenv("ROBUSTTEST_DATA", str(tmp_path))
    assert len(open_dataset("montgomery")) == 2
    monkeypatch.delenv("ROBUSTTEST_DATA")
    with pytest.raises(DataError, match="ROBUSTTEST_DATA"):
        open_dataset("montgomery")


def test_register_custom_adapter(tmp_path: Path) -> None:
    paths = [_png(tmp_path / f"im{i}.png", _image(i)) for i in range(3)]

    @register_adapter("test-custom-xrays", replace=True)
    class Custom(Dataset):
        tasks = ("classification",)
        labels = ("Finding",)

        def scan(self) -> Iterable[Record]:
            return [Record(p.stem, "pat", p, {"Finding": i % 2}) for i, p in enumerate(paths)]

    ds = open_dataset("test-custom-xrays", tmp_path, limit=2)
    assert isinstance(ds, Custom) and ds.name == "test-custom-xrays"
    assert [s.image_id for s in ds.iter_samples()] == ["im0", "im1"]
    assert ds.describe()["positives"] == {"Finding": 1}
    with pytest.raises(ConfigError, match="already registered"):
        register_adapter("test-custom-xrays")(type("Other", (Custom,), {}))


# ----------------------------------------------------------------------------- montgomery-like


def test_official_left_right_masks_are_ored(mont: Path) -> None:
    ds = open_dataset("montgomery", mont)
    assert len(ds) == 10 and ds.structures == ("lungs",)
    rec = ds.records[0]
    assert rec.image_id == "MCUCXR_0001_1" and rec.patient_id == "0001"
    assert rec.labels == {"Tuberculosis": 1} and rec.mask_paths is not None
    assert len(rec.mask_paths["lungs"]) == 2
    s = ds.load(rec)
    assert s.image.dtype == np.float32 and s.image.shape == (40, 48)
    assert s.masks is not None and s.masks["lungs"].dtype == bool
    expected = (_half_mask((40, 48), True) | _half_mask((40, 48), False)) > 0
    np.testing.assert_array_equal(s.masks["lungs"], expected)
    np.testing.assert_allclose(s.image, _image(1) / 255.0, atol=1e-6)


def test_merged_mask_layout(tmp_path: Path) -> None:
    ds = open_dataset("montgomery", make_montgomery(tmp_path / "m", n=3, official=False))
    s = ds.load(ds.records[0])
    assert s.masks is not None and s.masks["lungs"].sum() > 0


def test_classification_task_uses_tb_label_and_skips_masks(mont: Path) -> None:
    ds = open_dataset("montgomery", mont, task="classification")
    assert ds.labels == ("Tuberculosis",)
    assert ds.describe()["positives"] == {"Tuberculosis": 5}
    s = ds.load(ds.records[0])
    assert s.masks is None and s.labels == {"Tuberculosis": 1}
    with pytest.raises(ConfigError, match="task='detection'"):
        open_dataset("montgomery", mont, task="detection")


def test_mask_size_mismatch_names_both_files(mont: Path) -> None:
    bad = mont / "ManualMask" / "leftMask" / "MCUCXR_0003_1.png"
    _png(bad, np.zeros((20, 20), np.uint8))
    ds = open_dataset("montgomery", mont)
    rec = next(r for r in ds.records if r.image_id == "MCUCXR_0003_1")
    with pytest.raises(DataError) as exc:
        ds.load(rec)
    msg = str(exc.value)
    assert str(bad) in msg and "MCUCXR_0003_1.png" in msg and "20×20" in msg and "48×40" in msg


def test_shenzhen_images_without_mask(tmp_path: Path) -> None:
    root = tmp_path / "shenzhen"
    for i in range(1, 6):
        stem = f"CHNCXR_{i:04d}_{i % 2}"
        _png(root / "CXR_png" / f"{stem}.png", _image(i))
        if i != 2:
            _png(root / "mask" / f"{stem}_mask.png", _half_mask((40, 48), True))
    seg = open_dataset("shenzhen", root)
    assert len(seg) == 4 and seg.describe()["counts"]["without_masks"] == 1
    assert "CHNCXR_0002_0" not in [r.image_id for r in seg.records]
    cls = open_dataset("shenzhen", root, task="classification")
    assert len(cls) == 5


# ----------------------------------------------------------------------------- iteration


def test_ordered_and_identical_across_worker_counts(mont: Path) -> None:
    ds = open_dataset("montgomery", mont)
    runs = {w: list(ds.iter_samples(workers=w)) for w in (0, 1, 4)}
    ids = [r.image_id for r in ds.records]
    assert ids == sorted(ids)
    for samples in runs.values():
        assert [s.image_id for s in samples] == ids
    for a, b in zip(runs[1], runs[4], strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.masks is not None and b.masks is not None
        np.testing.assert_array_equal(a.masks["lungs"], b.masks["lungs"])
        assert a.labels == b.labels and a.meta == b.meta


def test_decoding_window_is_bounded(tmp_path: Path) -> None:
    paths = [_png(tmp_path / f"im{i:02d}.png", _image(i, (8, 8))) for i in range(40)]
    started: list[str] = []

    class Counting(Dataset):
        tasks = ("classification",)

        def scan(self) -> Iterable[Record]:
            return [Record(p.stem, p.stem, p) for p in paths]

        def load(self, record: Record) -> Sample:
            started.append(record.image_id)
            return super().load(record)

    ds = Counting(tmp_path)
    for k, s in enumerate(ds.iter_samples(workers=3), start=1):
        assert s.image_id == f"im{k - 1:02d}"
        assert len(started) <= k + 2 * 3  # never more than the window ahead of the consumer
    assert len(started) == 40


def test_early_stop_does_not_hang(mont: Path) -> None:
    ds = open_dataset("montgomery", mont)
    it = ds.iter_samples(workers=2)
    assert next(it).image_id == "MCUCXR_0001_1"
    it.close()  # shuts the pool down


def test_bad_arguments(mont: Path) -> None:
    ds = open_dataset("montgomery", mont)
    with pytest.raises(ConfigError, match="on_bad_image"):
        ds.iter_samples(on_bad_image="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="workers"):
        ds.iter_samples(workers=-1)
    for limit in (0, -3, 1.5, True):
        with pytest.raises(ConfigError, match="limit"):
            open_dataset("montgomery", mont, limit=limit)
    with pytest.raises(ConfigError, match="split"):
        open_dataset("montgomery", mont, split="validation")
    with pytest.raises(ConfigError, match="not available"):
        open_dataset("phantom", None, n=4, split="test")


def test_tb_split_is_a_fixed_patient_hash(shared_data: Path) -> None:
    """Montgomery/Shenzhen have no official split: 20% of patients held out by hash."""
    import hashlib

    from robusttest.data.base import heldout_patient

    for name in ("montgomery", "shenzhen"):
        full = open_dataset(name, shared_data / name)
        test = open_dataset(name, shared_data / name, split="test")
        train = open_dataset(name, shared_data / name, split="train")
        test_ids = {r.image_id for r in test.records}
        train_ids = {r.image_id for r in train.records}
        assert not test_ids & train_ids
        assert test_ids | train_ids == {r.image_id for r in full.records}
        # independent recomputation of the documented rule
        expect = {
            r.image_id
            for r in full.records
            if int.from_bytes(
                hashlib.sha256(f"robusttest-split-v1|{name}|{r.patient_id}".encode()).digest()[:4],
                "little",
            )
            % 100
            < 20
        }
        assert test_ids == expect
        assert 0.1 < len(test_ids) / len(full.records) < 0.3
        assert all(heldout_patient(r.patient_id, name) for r in test.records)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_image_error_or_skip(mont: Path, damage: str) -> None:
    bad = mont / "CXR_png" / "MCUCXR_0004_0.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a png at all")
    ds = open_dataset("montgomery", mont)
    with pytest.raises(DataError, match=r"MCUCXR_0004_0.png"):
        list(ds.iter_samples(workers=2))
    with pytest.warns(BadImageWarning, match="MCUCXR_0004_0"):
        got = [s.image_id for s in ds.iter_samples(workers=2, on_bad_image="skip")]
    assert got == [r.image_id for r in ds.records if r.image_id != "MCUCXR_0004_0"]
    assert [sid for sid, _ in ds.skipped] == ["MCUCXR_0004_0"]
    assert "MCUCXR_0004_0.png" in ds.skipped[0][1]
    assert ds.describe()["skipped"] == 1


def test_corrupt_mask_is_skipped_too(mont: Path) -> None:
    (mont / "ManualMask" / "rightMask" / "MCUCXR_0002_0.png").write_bytes(
        b"\x89PNG\r\n\x1a\nbroken"
    )
    ds = open_dataset("montgomery", mont)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        got = [s.image_id for s in ds.iter_samples(workers=0, on_bad_image="skip")]
    assert len(got) == 9 and ds.skipped[0][0] == "MCUCXR_0002_0"


# ----------------------------------------------------------------------------- filters


def test_limit_is_first_n_by_image_id(mont: Path) -> None:
    ds = open_dataset("montgomery", mont, limit=3)
    assert [r.image_id for r in ds.records] == ["MCUCXR_0001_1", "MCUCXR_0002_0", "MCUCXR_0003_1"]
    assert ds.describe()["filters"][-1] == {"filter": "limit", "value": 3, "before": 10, "after": 3}


def test_unknown_label_and_structure(mont: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"'Cancer'.*Tuberculosis"):
        open_dataset("montgomery", mont, task="classification", labels=["Cancer"])
    with pytest.raises(UnknownNameError, match="'heart'"):
        open_dataset("montgomery", mont, structures=["heart"])


def test_empty_after_filter_names_the_filter(tmp_path: Path) -> None:
    root = tmp_path / "m"
    for i in (1, 3):  # only tuberculous images
        _png(root / "CXR_png" / f"MCUCXR_{i:04d}_1.png", _image(i))
    with pytest.raises(DataError, match="has-masks filter"):
        open_dataset("montgomery", root)


def test_pairwise_task() -> None:
    pw = PairwiseTask.parse("Pneumothorax-vs-Atelectasis")
    assert pw == PairwiseTask.parse(("Pneumothorax", "Atelectasis"))
    assert pw.selects({"Pneumothorax": 1, "Atelectasis": 0})
    assert not pw.selects({"Pneumothorax": 1, "Atelectasis": 1})
    assert not pw.selects({"Pneumothorax": 0, "Atelectasis": 0})
    assert pw.target({"Pneumothorax": 0, "Atelectasis": 1}) == 0
    with pytest.raises(ConfigError):
        PairwiseTask.parse("Pneumothorax")


# ----------------------------------------------------------------------------- NIH (synthetic)

_NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
_NIH_ROWS = [
    ("00000001_000.png", "Cardiomegaly", 1, 2000, 2400),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 2000, 2400),
    ("00000002_000.png", "No Finding", 2, 2500, 2048),
    ("00000003_000.png", "Pneumothorax|Effusion", 3, 3000, 3000),
    ("00000004_000.png", "Atelectasis", 4, 2800, 2800),
]


def make_nih(root: Path, present: Iterable[int] = (0, 2, 3, 4), gz: bool = True) -> Path:
    lines = [_NIH_HEADER] + [
        f"{name},{find},0,{pid},50,M,PA,{w},{h},0.143,0.143" for name, find, pid, w, h in _NIH_ROWS
    ]
    text = "\n".join(lines) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(root / "Data_Entry_2017_v2020.csv.gz", "wt") as fh:
            fh.write(text)
    else:
        (root / "Data_Entry_2017.csv").write_text(text)
    for i in present:  # nested like the Kaggle release
        _png(root / f"images_00{1 + i // 3}" / "images" / _NIH_ROWS[i][0], _image(i, (64, 64)))
    return root


def test_nih_partial_download(tmp_path: Path) -> None:
    ds = open_dataset("nih-cxr14", make_nih(tmp_path / "nih"))
    d = ds.describe()
    assert d["counts"]["summary"] == "4 of 5 rows have images"
    assert len(ds) == 4 and ds.labels[0] == "Atelectasis" and len(ds.labels) == 14
    rec = ds.records[1]
    assert rec.image_id == "00000002_000.png" and rec.patient_id == "2"
    assert sum(rec.labels.values()) == 0 if rec.labels else False  # "No Finding"
    assert rec.pixel_spacing_mm == pytest.approx(0.143 * 2500 / 64)
    assert float(rec.meta["pixel_spacing_y_mm"]) == pytest.approx(0.143 * 2048 / 64, rel=1e-5)
    s = ds.load(rec)
    assert s.pixel_spacing_mm == pytest.approx(rec.pixel_spacing_mm) and s.masks is None
    assert d["positives"]["Pneumothorax"] == 1 and d["positives"]["Cardiomegaly"] == 1


def test_nih_filters_and_errors(tmp_path: Path) -> None:
    root = make_nih(tmp_path / "nih", gz=False)
    with pytest.raises(UnknownNameError, match=r"'Pneumonitis'.*Atelectasis"):
        open_dataset("nih-cxr14", root, labels=["Pneumonitis"])
    ds = open_dataset("nih-cxr14", root, labels="Effusion,Atelectasis")
    assert ds.labels == ("Effusion", "Atelectasis") and set(ds.records[0].labels or {}) == {
        "Effusion",
        "Atelectasis",
    }
    pw = open_dataset("nih-cxr14", root, pairwise=("Pneumothorax", "Atelectasis"))
    assert [r.image_id for r in pw.records] == ["00000003_000.png", "00000004_000.png"]
    with pytest.raises(DataError, match=r"pairwise filter.*Hernia"):
        open_dataset("nih-cxr14", root, pairwise="Hernia-vs-Edema")
    # without the official lists: a 20% patient-hash split, and describe() says so
    hashed = open_dataset("nih-cxr14", root, split="train")
    assert {r.image_id for r in hashed.records} == {
        r.image_id
        for r in open_dataset("nih-cxr14", root).records
        if not heldout_patient(r.patient_id, "nih-cxr14")
    }
    assert "patient hash" in hashed.describe()["split_source"]
    (root / "test_list.txt").write_text("00000003_000.png\n00000001_001.png\n")
    assert [r.image_id for r in open_dataset("nih-cxr14", root, split="test").records] == [
        "00000003_000.png"
    ]
    (root / "test_list.txt").write_text("00000001_001.png\n")
    with pytest.raises(DataError, match="split filter"):
        open_dataset("nih-cxr14", root, split="test")


def test_nih_no_images(tmp_path: Path) -> None:
    root = make_nih(tmp_path / "nih", present=())
    with pytest.raises(DataError, match=r"none of the 5 rows .* images/<Image Index>"):
        open_dataset("nih-cxr14", root)


# ----------------------------------------------------------------------------- manifest hash


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_manifest_hash_stable_and_sensitive(tmp_path: Path) -> None:
    root = tmp_path / "a"
    for i in range(4):
        _png(root / "img" / f"x{i}.png", _image(i))
    rows = [{"image": f"img/x{i}.png", "Effusion": str(i % 2)} for i in range(4)]
    csv_path = _write_manifest(root / "m.csv", rows)
    h1 = open_dataset("manifest", csv_path).manifest_hash()
    assert h1 == open_dataset("manifest", csv_path).manifest_hash()
    # a copy elsewhere (other absolute paths, other mtimes) hashes the same
    shutil.copytree(root, tmp_path / "b")
    assert open_dataset("manifest", tmp_path / "b" / "m.csv").manifest_hash() == h1
    rows[2]["Effusion"] = "1"
    _write_manifest(csv_path, rows)
    h2 = open_dataset("manifest", csv_path).manifest_hash()
    assert h2 != h1
    _png(root / "img" / "x1.png", _image(99))  # same size, other pixels
    assert open_dataset("manifest", csv_path).manifest_hash() != h2


def test_montgomery_hash_changes_with_a_mask(mont: Path) -> None:
    h1 = open_dataset("montgomery", mont).manifest_hash()
    assert h1 == open_dataset("montgomery", mont).manifest_hash()
    _png(mont / "ManualMask" / "leftMask" / "MCUCXR_0005_1.png", np.zeros((40, 48), np.uint8))
    assert open_dataset("montgomery", mont).manifest_hash() != h1

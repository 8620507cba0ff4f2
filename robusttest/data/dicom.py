"""A folder of DICOM radiographs (searched recursively), decoded by pydicom.

Files count as DICOM when they end in .dcm/.dicom or carry the ``DICM`` preamble. Only the
header is read when the folder is opened; decoding (MONOCHROME1 inversion, rescale
slope/intercept, PixelSpacing/ImagerPixelSpacing) is robusttest.imageio's. Image id:
SOPInstanceUID, else the file stem; patient id: PatientID, else the image id. Labels can
come from a sidecar CSV (``labels_csv=``) keyed by ``image_id`` (or ``file``: a path
relative to the folder, or a file name/stem) with 0/1 columns.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from robusttest.data.base import Dataset, PairwiseTask, Record, parse_01, resolve_root
from robusttest.data.registry import register_adapter
from robusttest.errors import DataError
from robusttest.extras import require_extra

_SUFFIXES = (".dcm", ".dicom")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # a garbled header must not make a garbage id


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in _SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if not fn.startswith(".") and _is_dicom(p):
                yield p


def _first_float(value: Any) -> float | None:
    try:
        v = float(value[0])
    except (TypeError, ValueError, IndexError):
        return None
    return v if v > 0 else None


@register_adapter("dicom")
class DicomFolder(Dataset):
    tasks = ("classification", "segmentation")

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        labels_csv: str | Path | None = None,
        task: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        split: str = "all",
    ) -> None:
        require_extra("dicom", "dicom: reading DICOM")
        found = resolve_root(
            root,
            "dicom",
            "dicom",
            lambda p: any(True for _ in _walk(p)),
            "DICOM files (.dcm, or files with the DICM preamble)",
        )
        self.labels_csv = Path(labels_csv) if labels_csv is not None else None
        if self.labels_csv is not None and not self.labels_csv.is_file():
            raise DataError(f"dicom: labels_csv {self.labels_csv} not found")
        super().__init__(
            found, task=task, limit=limit, labels=labels, pairwise=pairwise, split=split
        )

    def scan(self) -> Iterable[Record]:
        import pydicom

        assert self.root is not None
        table, label_names = self._read_labels()
        self.labels = label_names
        records: list[Record] = []
        unreadable = 0
        for path in _walk(self.root):
            rel = path.relative_to(self.root).as_posix()
            meta = {"file": rel}
            image_id, patient_id, spacing = path.stem, "", None
            try:
                with warnings.catch_warnings():  # a broken header is reported at load
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
                uid = str(getattr(ds, "SOPInstanceUID", "") or "")
                image_id = uid if _UID.fullmatch(uid) else path.stem
                patient_id = str(getattr(ds, "PatientID", "") or "")
                spacing = _first_float(getattr(ds, "PixelSpacing", None)) or _first_float(
                    getattr(ds, "ImagerPixelSpacing", None)
                )
                for tag in (
                    "Modality",
                    "ViewPosition",
                    "PhotometricInterpretation",
                    "BodyPartExamined",
                ):
                    v = str(getattr(ds, tag, "") or "")
                    if v:
                        meta[tag] = v
            except Exception as exc:  # kept: load() reports it (skippable with on_bad_image)
                unreadable += 1
                meta["header_error"] = str(exc)[:200]
            labels = None
            if table:
                labels = (
                    table.get(image_id)
                    or table.get(rel)
                    or table.get(path.name)
                    or table.get(path.stem)
                )
            records.append(
                Record(
                    image_id=image_id,
                    patient_id=patient_id or image_id,
                    path=path,
                    labels=labels,
                    mask_paths=None,
                    pixel_spacing_mm=spacing,
                    meta=meta,
                )
            )
        self.counts.update(
            files=len(records),
            unreadable_headers=unreadable,
            with_labels=sum(r.labels is not None for r in records),
        )
        return records

    def _read_labels(self) -> tuple[dict[str, dict[str, int]], tuple[str, ...]]:
        if self.labels_csv is None:
            return {}, ()
        src = self.labels_csv
        with open(src, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
        key = next((c for c in ("image_id", "file", "image") if c in cols), None)
        if key is None:
            raise DataError(
                f"dicom: labels_csv {src} needs an 'image_id' or 'file' column (found {', '.join(cols)})"
            )
        names = [c for c in cols if c not in (key, "patient_id")]
        table: dict[str, dict[str, int]] = {}
        for i, r in enumerate(rows, start=1):
            lab: dict[str, int] = {}
            for c in names:
                try:
                    v = parse_01(r.get(c, ""))
                except ValueError:
                    raise DataError(
                        f"dicom: labels_csv {src}: row {i}, column {c!r}: "
                        f"{r.get(c)!r} is not a 0/1 label"
                    ) from None
                if v is None:
                    raise DataError(f"dicom: labels_csv {src}: row {i}, column {c!r}: empty label")
                lab[c] = v
            table[r[key]] = lab
        return table, tuple(names)

"""NIH ChestX-ray14: the official ``Data_Entry_2017*.csv[.gz]`` table + ``images/``.

A partial download is the normal case: rows whose image is absent are counted, not an
error. The shared PNGs are downsampled, so the spacing of the stored image is derived
from the table's original size and spacing and the stored size: OriginalImagePixelSpacing
(0.139–0.194 mm, 0.143 mm for 36 % of the rows) × OriginalImage[Width, Height] (2,000–3,056
pixels) / the stored size; the released 1024² PNGs are squashed to a square, so a 512²
copy of a 2,500 × 2,048 image at 0.168 mm has 0.820 × 0.672 mm pixels. A row without
those columns takes the table's median field of view, ``NIH_FIELD_MM``, over the stored
size (docs/physics.md §2).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from robusttest.data.base import (
    Dataset,
    PairwiseTask,
    Record,
    heldout_patient,
    image_size,
    resolve_root,
)
from robusttest.data.registry import register_adapter
from robusttest.errors import DataError
from robusttest.imageio import DecodedImage

NIH_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Median field of view (width, height) in mm of the 112,120 rows of Data_Entry_2017_v2020:
# OriginalImage[Width] × OriginalImagePixelSpacing[x], and the same for the height.
NIH_FIELD_MM = (420.0, 353.6)
_SPLIT_FILES = {"test": "test_list.txt", "train": "train_val_list.txt"}


def _find_tables(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file()
        and p.name.startswith("Data_Entry_2017")
        and p.name.endswith((".csv", ".csv.gz"))
    )


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _index_images(root: Path) -> dict[str, Path]:
    """file name -> path for every image below root (images/, images_001/images/, ...)."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.lower().endswith(_IMAGE_SUFFIXES):
                found.setdefault(fn, Path(dirpath) / fn)
    return found


def _float(value: str) -> float | None:
    try:
        v = float(value)
    except ValueError:
        return None
    return v if v > 0 else None


@register_adapter("nih-cxr14")
class NIHChestXray14(Dataset):
    """ChestX-ray14 classification with its 14 findings (labels in the official order)."""

    tasks = ("classification",)
    labels: tuple[str, ...] = NIH_LABELS

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        table: str | Path | None = None,
        task: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        split: str = "all",
    ) -> None:
        found_root = resolve_root(
            root,
            "nih-cxr14",
            "nih-cxr14",
            lambda p: bool(_find_tables(p)),
            "Data_Entry_2017*.csv[.gz] and images/",
        )
        self.table = Path(table) if table is not None else _find_tables(found_root)[-1]
        if not self.table.is_file():
            raise DataError(
                f"nih-cxr14: table {self.table} not found; expected Data_Entry_2017*.csv[.gz]"
            )
        super().__init__(
            found_root, task=task, limit=limit, labels=labels, pairwise=pairwise, split=split
        )

    def scan(self) -> Iterable[Record]:
        assert self.root is not None
        images = _index_images(self.root)
        rows = 0
        records: list[Record] = []
        with _open_text(self.table) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"nih-cxr14: table {self.table} is empty")
            col = self._columns(header)
            for row in reader:
                if not row:
                    continue
                rows += 1
                path = images.get(row[0])
                if path is None:
                    continue  # partial download: counted, not an error
                records.append(self._record(row, col, path))
        self.counts.update(
            table=self.table.name,
            rows_in_table=rows,
            rows_with_images=len(records),
            images_on_disk=len(images),
            summary=f"{len(records):,} of {rows:,} rows have images",
        )
        if not records:
            raise DataError(
                f"nih-cxr14: none of the {rows:,} rows of {self.table.name} has an image under "
                f"{self.root}; expected images/<Image Index> (e.g. images/00000001_000.png)"
            )
        self._scanned = records
        return records

    def _columns(self, header: list[str]) -> dict[str, int]:
        names = [h.strip() for h in header]
        need = {"image": "Image Index", "findings": "Finding Labels", "patient": "Patient ID"}
        col: dict[str, int] = {}
        for key, name in need.items():
            if name not in names:
                raise DataError(
                    f"nih-cxr14: {self.table} has no column {name!r}; found {', '.join(names[:12])}"
                )
            col[key] = names.index(name)
        if col["image"] != 0:
            raise DataError(f"nih-cxr14: {self.table}: 'Image Index' must be the first column")
        # The official header splits "OriginalImage[Width,Height]" over two columns.
        for i, n in enumerate(names):
            if n.startswith("OriginalImage[Width"):
                col["width"], col["height"] = i, i + 1
            elif n.startswith("OriginalImagePixelSpacing[x"):
                col["sx"], col["sy"] = i, i + 1
        for key, name in (
            ("follow_up", "Follow-up #"),
            ("age", "Patient Age"),
            ("sex", "Patient Gender"),
            ("view", "View Position"),
        ):
            if name in names:
                col[key] = names.index(name)
        return col

    def _record(self, row: list[str], col: dict[str, int], path: Path) -> Record:
        def get(key: str) -> str:
            i = col.get(key)
            return row[i].strip() if i is not None and i < len(row) else ""

        findings = {f.strip() for f in get("findings").split("|") if f.strip()}
        labels = {name: int(name in findings) for name in NIH_LABELS}
        meta = {
            "finding_labels": get("findings"),
            "follow_up": get("follow_up"),
            "patient_age": get("age"),
            "patient_sex": get("sex"),
            "view_position": get("view"),
            "original_width": get("width"),
            "original_height": get("height"),
            "original_spacing_x_mm": get("sx"),
            "original_spacing_y_mm": get("sy"),
        }
        spacing = None
        size = image_size(path)
        if size is not None:
            sx, sy = self._stored_spacing(meta, size[0], size[1])
            spacing = sx
            if sy is not None:
                meta["pixel_spacing_y_mm"] = f"{sy:.6g}"
        return Record(
            image_id=row[0],
            patient_id=get("patient") or row[0],
            path=path,
            labels=labels,
            mask_paths=None,
            pixel_spacing_mm=spacing,
            meta={k: v for k, v in meta.items() if v},
        )

    @staticmethod
    def _stored_spacing(
        meta: dict[str, str], width: int, height: int
    ) -> tuple[float | None, float | None]:
        """Spacing of the stored image: original spacing × original size / stored size.

        The released PNGs are squashed to a square, so x and y spacings differ; x (from the
        width) is the record's spacing and y is kept in meta.
        """
        w0, h0 = _float(meta["original_width"]), _float(meta["original_height"])
        sx0, sy0 = _float(meta["original_spacing_x_mm"]), _float(meta["original_spacing_y_mm"])
        sx = sx0 * w0 / width if sx0 and w0 and width else None
        sy = sy0 * h0 / height if sy0 and h0 and height else None
        if sx is None and width:  # nothing in the table: the dataset's median field
            sx = NIH_FIELD_MM[0] / width
        if sy is None and height:
            sy = NIH_FIELD_MM[1] / height
        return sx, sy

    def sample_spacing(self, record: Record, decoded: DecodedImage) -> float | None:
        # Derived from the decoded width, so it is right even if the header read failed.
        h, w = decoded.pixels.shape
        sx, _ = self._stored_spacing(
            {
                k: record.meta.get(k, "")
                for k in (
                    "original_width",
                    "original_height",
                    "original_spacing_x_mm",
                    "original_spacing_y_mm",
                )
            },
            int(w),
            int(h),
        )
        return sx

    def split_ids(self, split: str) -> set[str] | None:
        assert self.root is not None
        fname = _SPLIT_FILES[split]
        for cand in (self.root / fname, *sorted(self.root.glob(f"*/{fname}"))):
            if cand.is_file():
                with open(cand, encoding="utf-8") as fh:
                    return {line.strip() for line in fh if line.strip()}
        # A partial download often lacks the lists: hold out 20% of patients by hash
        # instead (stable across machines), and say so in describe().
        self.counts["split_source"] = f"patient hash ({fname} not found)"
        return {
            r.image_id
            for r in self._scanned
            if heldout_patient(r.patient_id, self.name) == (split == "test")
        }

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["table"] = str(self.table)
        if self.split != "all":
            out["split_source"] = self.counts.get("split_source", "official lists")
        return out

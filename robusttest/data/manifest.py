"""A generic CSV manifest: one row per image.

Columns: ``image`` (path relative to the CSV's folder, or to ``base=``), optional
``image_id``, ``patient_id``, ``pixel_spacing_mm``, ``bit_depth`` (bits of an integer image
that hold data, e.g. 12 for 12-bit values in a 16-bit PNG); masks in ``mask`` (structure given by
``mask_structure``, default "lungs") or ``mask_<structure>`` — several files in one cell,
separated by ``|``, are ORed; label columns hold 0/1. Which columns are labels: those
named by ``labels=``, else every other column whose values are all 0/1 (or empty).
Everything else is kept in ``meta``. Errors name the CSV, the row and the column.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from robusttest.data.base import Dataset, PairwiseTask, Record, parse_01
from robusttest.data.registry import register_adapter
from robusttest.errors import ConfigError, DataError

IMAGE_COLUMNS = ("image", "image_path", "path", "file")
RESERVED = ("image_id", "patient_id", "pixel_spacing_mm", "bit_depth")


def _find_csv(root: Path) -> Path:
    if root.is_file():
        return root
    if not root.exists():
        raise DataError(f"manifest: {root} does not exist; give the manifest CSV or its folder")
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    if (root / "manifest.csv").is_file():
        return root / "manifest.csv"
    if not csvs:
        raise DataError(
            f"manifest: no .csv file in {root}; expected a manifest CSV with an 'image' column"
        )
    raise DataError(
        f"manifest: {root} holds {len(csvs)} CSV files ({', '.join(p.name for p in csvs[:5])}); "
        "give the manifest file itself"
    )


@register_adapter("manifest")
class Manifest(Dataset):
    tasks = ("segmentation", "classification")

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        base: str | Path | None = None,
        mask_structure: str = "lungs",
        missing: str = "error",
        task: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        structures: Sequence[str] | str | None = None,
        split: str = "all",
    ) -> None:
        if root is None:
            raise DataError("manifest: give the manifest CSV (root=path/to/manifest.csv)")
        if missing not in ("error", "skip"):
            raise ConfigError(f"manifest: missing={missing!r}; choose 'error' or 'skip'")
        self.csv_path = _find_csv(Path(root).expanduser())
        self.base = Path(base).expanduser() if base is not None else self.csv_path.parent
        self.mask_structure = mask_structure
        self.missing = missing
        self._wanted_labels = labels
        with open(self.csv_path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
        if not header:
            raise DataError(
                f"manifest: {self.csv_path} is empty; expected a header row with an 'image' column"
            )
        self.columns = [h.strip() for h in header]
        dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dupes:
            raise DataError(f"manifest {self.csv_path}: column {dupes[0]!r} appears more than once")
        self.mask_columns = {
            c: (self.mask_structure if c == "mask" else c[len("mask_") :])
            for c in self.columns
            if c == "mask" or (c.startswith("mask_") and len(c) > len("mask_"))
        }
        self.structures = tuple(dict.fromkeys(self.mask_columns.values()))
        if task is None:
            task = "segmentation" if self.mask_columns else "classification"
        super().__init__(
            self.base,
            task=task,
            limit=limit,
            labels=labels,
            pairwise=pairwise,
            structures=structures,
            split=split,
        )

    def _err(self, row: int, column: str, what: str) -> DataError:
        return DataError(f"manifest {self.csv_path}: row {row}, column {column!r}: {what}")

    def scan(self) -> Iterable[Record]:
        image_col = next((c for c in IMAGE_COLUMNS if c in self.columns), None)
        if image_col is None:
            raise DataError(
                f"manifest {self.csv_path}: no image column; expected one of {', '.join(IMAGE_COLUMNS)} "
                f"(found {', '.join(self.columns)})"
            )
        with open(self.csv_path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh, fieldnames=self.columns))[1:]
        label_cols = self._label_columns(rows, image_col)
        self.labels = tuple(label_cols)
        records: list[Record] = []
        missing = 0
        # Ids are file stems (like every other adapter) unless two files share a stem.
        stems = [Path((r.get(image_col) or "").strip()).stem for r in rows]
        stems_unique = len(set(stems)) == len(stems)
        for i, raw in enumerate(rows, start=1):
            row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                raise self._err(
                    i, "(extra)", f"{len(raw[None])} more cells than the header has columns"
                )
            rel = row.get(image_col, "")
            if not rel:
                raise self._err(i, image_col, "empty; every row needs an image path")
            path = self.base / rel  # an absolute path stays absolute
            if not path.is_file():
                if self.missing == "skip":
                    missing += 1
                    continue
                raise self._err(
                    i, image_col, f"file not found: {path} (paths are relative to {self.base})"
                )
            masks: dict[str, tuple[Path, ...]] = {}
            for col, structure in self.mask_columns.items():
                cell = row.get(col, "")
                if not cell:
                    continue
                files = tuple(self.base / p.strip() for p in cell.split("|") if p.strip())
                for f in files:
                    if not f.is_file():
                        raise self._err(i, col, f"mask file not found: {f}")
                masks[structure] = masks.get(structure, ()) + files
            labels: dict[str, int] | None = None
            if label_cols:
                labels = {}
                for col in label_cols:
                    try:
                        v = parse_01(row.get(col, ""))
                    except ValueError:
                        raise self._err(i, col, f"{row.get(col)!r} is not a 0/1 label") from None
                    if v is None:
                        raise self._err(i, col, "empty label; give 0 or 1")
                    labels[col] = v
            spacing: float | None = None
            if row.get("pixel_spacing_mm"):
                try:
                    spacing = float(row["pixel_spacing_mm"])
                except ValueError:
                    spacing = -1.0
                if not spacing > 0 or spacing != spacing:
                    raise self._err(
                        i,
                        "pixel_spacing_mm",
                        f"{row['pixel_spacing_mm']!r} is not a positive number of mm",
                    )
            bit_depth: int | None = None
            if row.get("bit_depth"):
                try:
                    bit_depth = int(row["bit_depth"])
                except ValueError:
                    bit_depth = 0
                if not 1 <= bit_depth <= 32:
                    raise self._err(
                        i, "bit_depth", f"{row['bit_depth']!r} is not a whole number in [1, 32]"
                    )
            image_id = row.get("image_id") or (
                Path(rel).stem if stems_unique else Path(rel).with_suffix("").as_posix()
            )
            used = {
                image_col,
                "image_id",
                "patient_id",
                "pixel_spacing_mm",
                "bit_depth",
                *self.mask_columns,
                *label_cols,
            }
            meta = {k: v for k, v in row.items() if k not in used and v}
            meta["csv_row"] = str(i)
            records.append(
                Record(
                    image_id=image_id,
                    patient_id=row.get("patient_id") or image_id,
                    path=path,
                    labels=labels,
                    mask_paths=masks or None,
                    pixel_spacing_mm=spacing,
                    meta=meta,
                    bit_depth=bit_depth,
                )
            )
        self.counts.update(
            csv=str(self.csv_path),
            rows=len(rows),
            missing_images=missing,
            label_columns=list(label_cols),
            mask_columns=list(self.mask_columns),
        )
        if not records:
            raise DataError(
                f"manifest {self.csv_path}: no rows with an existing image ({len(rows)} rows)"
            )
        return records

    def _label_columns(self, rows: list[dict[str, str | None]], image_col: str) -> list[str]:
        detected = [c for c in self.columns if self._is_01(rows, c, image_col)]
        if self._wanted_labels is None:
            return detected
        wanted = (
            [w.strip() for w in self._wanted_labels.split(",") if w.strip()]
            if isinstance(self._wanted_labels, str)
            else [str(w) for w in self._wanted_labels]
        )
        if all(w in self.columns for w in wanted):
            return wanted  # named explicitly: other 0/1 columns stay in meta
        return detected  # the label filter then reports the unknown name and these

    def _is_01(self, rows: list[dict[str, str | None]], col: str, image_col: str) -> bool:
        if col in (image_col, *RESERVED, *self.mask_columns):
            return False
        seen = False
        for r in rows:
            try:
                v = parse_01(r.get(col) or "")
            except ValueError:
                return False
            seen = seen or v is not None
        return seen

"""Chest X-ray Landmark dataset (Gaggion et al., IEEE TMI 2022).

``Images/<name>.png`` (1024²) + ``landmarks/{RL,LL,H,RCLA,LCLA}/<name>.npy``: (x, y) contour
points in the 1024 frame, rasterised into filled polygons. Structures: lungs (RL ∪ LL),
right_lung, left_lung, heart (H) and clavicles (RCLA ∪ LCLA), each only where its
landmark folder exists; an image without a structure's landmarks has no mask for it
(the Montgomery/Shenzhen images have no heart or clavicles).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from robusttest.data.base import Dataset, PairwiseTask, Record, resolve_root
from robusttest.data.registry import register_adapter
from robusttest.errors import DataError

LANDMARK_FRAME = 1024
_PARTS: dict[str, tuple[str, ...]] = {
    "lungs": ("RL", "LL"),
    "right_lung": ("RL",),
    "left_lung": ("LL",),
    "heart": ("H",),
    "clavicles": ("RCLA", "LCLA"),
}


def rasterise_polygon(
    points: np.ndarray, shape: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """Filled polygon of (x, y) ``points`` (pixel centres at integer coordinates) as bool H×W.

    PIL's scan-line fill includes the boundary pixels, so the area exceeds the analytic
    one by about half the perimeter.
    """
    from PIL import Image, ImageDraw

    pts = np.asarray(points, dtype=np.float64)
    im = Image.new("L", (shape[1], shape[0]), 0)
    xy = [(float(x) * scale[0], float(y) * scale[1]) for x, y in pts]
    ImageDraw.Draw(im).polygon(xy, fill=1, outline=1)
    return np.asarray(im, dtype=np.uint8) > 0


def _load_points(path: Path) -> np.ndarray:
    try:
        pts = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"landmark: cannot read {path} ({exc})") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3 or not np.isfinite(pts).all():
        raise DataError(
            f"landmark: {path} holds an array of shape {pts.shape}; expected (N >= 3, 2) finite (x, y) points"
        )
    return pts


@register_adapter("landmark")
class Landmark(Dataset):
    tasks = ("segmentation",)
    structures: tuple[str, ...] = ("lungs", "right_lung", "left_lung")

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        frame: int = LANDMARK_FRAME,
        task: str | None = None,
        limit: int | None = None,
        structures: Sequence[str] | str | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        split: str = "all",
    ) -> None:
        self.frame = int(frame)
        found = resolve_root(
            root,
            "landmark",
            "landmark",
            lambda p: (p / "Images").is_dir() and (p / "landmarks").is_dir(),
            "Images/ and landmarks/",
        )
        super().__init__(
            found,
            task=task,
            limit=limit,
            labels=labels,
            pairwise=pairwise,
            structures=structures,
            split=split,
        )

    def scan(self) -> Iterable[Record]:
        assert self.root is not None
        lm = self.root / "landmarks"
        dirs = {d.name: d for d in lm.iterdir() if d.is_dir()}
        present = tuple(s for s, parts in _PARTS.items() if all(p in dirs for p in parts))
        if not present:
            raise DataError(f"landmark: no RL/LL/H/RCLA/LCLA folders in {lm}")
        self.structures = present
        clinical = self._clinical()
        records: list[Record] = []
        for path in sorted((self.root / "Images").iterdir()):
            if (
                path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff")
                or not path.is_file()
            ):
                continue
            masks: dict[str, tuple[Path, ...]] = {}
            for s in present:
                files = tuple(dirs[p] / f"{path.stem}.npy" for p in _PARTS[s])
                if all(f.is_file() for f in files):
                    masks[s] = files
            meta = {"source": "Landmark", **clinical.get(path.name, {})}
            records.append(
                Record(
                    image_id=path.stem,
                    patient_id=path.stem,
                    path=path,
                    labels=None,
                    mask_paths=masks or None,
                    pixel_spacing_mm=None,
                    meta=meta,
                )
            )
        self.counts.update(
            images=len(records),
            with_landmarks=sum(bool(r.mask_paths) for r in records),
            landmark_sets=sorted(dirs),
        )
        return records

    def _clinical(self) -> dict[str, dict[str, str]]:
        assert self.root is not None
        path = self.root / "clinical.csv"
        if not path.is_file():
            return {}
        out: dict[str, dict[str, str]] = {}
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                name = (row.get("File") or "").strip()
                if name:
                    out[name] = {
                        k.strip().lower().replace(" ", "_"): (v or "").strip()
                        for k, v in row.items()
                        if k and k != "File"
                    }
        return out

    def read_masks(self, record: Record, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        # Landmarks live in the 1024 frame; a resized copy of Images/ scales them.
        scale = (shape[1] / self.frame, shape[0] / self.frame)
        cache: dict[Path, np.ndarray] = {}
        out: dict[str, np.ndarray] = {}
        for structure, paths in (record.mask_paths or {}).items():
            if structure not in self.structures:
                continue
            merged = np.zeros(shape, dtype=bool)
            for p in paths:
                if p not in cache:
                    cache[p] = rasterise_polygon(_load_points(p), shape, scale)
                merged |= cache[p]
            out[structure] = merged
        return out

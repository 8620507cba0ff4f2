"""JSRT radiographs (raw ``.IMG``) with SCR masks.

Image files: 2048×2048, 12-bit values in big-endian 16-bit words, no header, 0.175 mm
pixels (digitised film). Polarity: the stored values grow with optical density, so the
lungs (much transmitted radiation, dark film) are *high* and bone is low; this is the
MONOCHROME1 sense, and the widely used conversion is ``1 - value / 4096``. We invert
likewise (``invert=True``) so that bone is bright like every other source.

SCR masks (van Ginneken et al.): ``<...>/masks/{left lung,right lung,heart,left clavicle,
right clavicle}/JPCLN001.gif`` at 1024×1024 (the SCR images are downsampled by 2); they are
resized to the image with nearest neighbour. Structures: lungs (left + right), heart,
clavicles (left + right), wherever their folders exist. JPCLN* (nodule) / JPCNN* (no
nodule) give the label ``{"Nodule": 1/0}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from robusttest.data.base import Dataset, PairwiseTask, Record, read_mask, resolve_root, size_text
from robusttest.data.registry import register_adapter
from robusttest.errors import DataError
from robusttest.imageio import DecodedImage

JSRT_SIZE = 2048
JSRT_SPACING_MM = 0.175
JSRT_MAX = 4095  # 12-bit
_PARTS: dict[str, tuple[str, ...]] = {
    "lungs": ("left lung", "right lung"),
    "heart": ("heart",),
    "clavicles": ("left clavicle", "right clavicle"),
}
_MASK_SUFFIXES = (".gif", ".png", ".bmp")


def _has_img(p: Path) -> bool:
    return any(True for _ in _walk_imgs(p))


def _walk_imgs(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.lower().endswith(".img"):
                yield Path(dirpath) / fn


@register_adapter("jsrt")
class JSRT(Dataset):
    tasks = ("segmentation", "classification")
    structures: tuple[str, ...] = ("lungs", "heart", "clavicles")
    labels: tuple[str, ...] = ("Nodule",)

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        invert: bool = True,
        task: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        structures: Sequence[str] | str | None = None,
        split: str = "all",
    ) -> None:
        self.invert = bool(invert)
        found = resolve_root(root, "jsrt", "jsrt", _has_img, "JSRT *.IMG files")
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
        # SCR part folder ("left lung", ...) -> {stem: file}; any depth (scr/masks, fold1/masks).
        part_files: dict[str, dict[str, Path]] = {}
        wanted = {p for parts in _PARTS.values() for p in parts}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            part = Path(dirpath).name.lower()
            if part in wanted:
                files = part_files.setdefault(part, {})
                for fn in sorted(filenames):
                    if fn.lower().endswith(_MASK_SUFFIXES):
                        files.setdefault(Path(fn).stem.upper(), Path(dirpath) / fn)
        present = tuple(s for s, parts in _PARTS.items() if all(p in part_files for p in parts))
        if present:
            self.structures = present
        records: list[Record] = []
        for path in _walk_imgs(self.root):
            stem = path.stem.upper()
            masks: dict[str, tuple[Path, ...]] = {}
            for s in present:
                found = [part_files[part].get(stem) for part in _PARTS[s]]
                got = tuple(f for f in found if f is not None)
                if len(got) == len(found):
                    masks[s] = got
            label = (
                {"Nodule": 1}
                if stem.startswith("JPCLN")
                else {"Nodule": 0}
                if stem.startswith("JPCNN")
                else None
            )
            records.append(
                Record(
                    image_id=path.stem,
                    patient_id=path.stem,
                    path=path,
                    labels=label,
                    mask_paths=masks or None,
                    pixel_spacing_mm=JSRT_SPACING_MM,
                    meta={"source": "JSRT"},
                )
            )
        self.counts.update(
            images=len(records),
            with_masks=sum(bool(r.mask_paths) for r in records),
            mask_structures=list(present),
        )
        return records

    def read_pixels(self, record: Record) -> DecodedImage:
        expected = JSRT_SIZE * JSRT_SIZE * 2
        try:
            size = record.path.stat().st_size
            if size != expected:
                raise DataError(
                    f"jsrt: {record.path} has {size:,} bytes; a JSRT .IMG holds {expected:,} "
                    f"(2048×2048 16-bit big-endian); the file is truncated or not JSRT"
                )
            raw = np.fromfile(record.path, dtype=">u2").reshape(JSRT_SIZE, JSRT_SIZE)
        except OSError as exc:
            raise DataError(f"jsrt: cannot read {record.path} ({exc})") from None
        pix = np.minimum(raw, JSRT_MAX).astype(np.float32) / np.float32(JSRT_MAX)
        if self.invert:
            pix = np.float32(1.0) - pix  # stored values are optical-density-like: bone low
        return DecodedImage(
            np.ascontiguousarray(pix, dtype=np.float32), JSRT_SPACING_MM, 12, "JSRT format"
        )

    def read_masks(self, record: Record, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        from PIL import Image

        out: dict[str, np.ndarray] = {}
        for structure, paths in (record.mask_paths or {}).items():
            if structure not in self.structures:
                continue
            merged = np.zeros(shape, dtype=bool)
            for p in paths:
                m = read_mask(p)
                if m.shape != shape:
                    # SCR masks are 1024² for 2048² images: same aspect, integer factor.
                    if m.shape[0] * shape[1] != m.shape[1] * shape[0]:
                        raise DataError(
                            f"jsrt: mask {p} is {size_text(m.shape)} but image {record.path} is "
                            f"{size_text(shape)}; their aspect ratios differ"
                        )
                    im = Image.fromarray(m.astype(np.uint8) * 255)
                    m = np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 127
                merged |= m
            out[structure] = merged
        return out

"""Shenzhen TB set: ``CXR_png/CHNCXR_####_{0,1}.png`` + ``mask/CHNCXR_####_{0,1}_mask.png``.

The official mask release covers only part of the images; images without a mask are
dropped for segmentation (counted in describe()) and kept for classification.
"""

from __future__ import annotations

from pathlib import Path

from robusttest.data._tb import TBDataset
from robusttest.data.registry import register_adapter


@register_adapter("shenzhen")
class Shenzhen(TBDataset):
    prefix = "CHNCXR"
    source = "Shenzhen"

    def mask_files(self, stem: str) -> tuple[Path, ...] | None:
        assert self.root is not None
        for folder in ("mask", "masks"):
            p = self.root / folder / f"{stem}_mask.png"
            if p.is_file():
                return (p,)
        return None

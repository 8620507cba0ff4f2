"""Montgomery County TB set: ``CXR_png/MCUCXR_####_{0,1}.png`` + lung masks.

Masks come either in the official layout (``ManualMask/leftMask/`` and
``ManualMask/rightMask/``, ORed into one "lungs" mask) or merged (``ManualMask/lungs/``).
"""

from __future__ import annotations

from pathlib import Path

from robusttest.data._tb import TBDataset
from robusttest.data.base import image_size
from robusttest.data.registry import register_adapter

# The full-resolution release is 4020×4892 or 4892×4020 at 0.0875 mm; resized copies do
# not say how they were resized, so their spacing is unknown.
_FULL_SIZES = {(4020, 4892), (4892, 4020)}
_FULL_SPACING_MM = 0.0875


@register_adapter("montgomery")
class Montgomery(TBDataset):
    prefix = "MCUCXR"
    source = "Montgomery"

    def mask_files(self, stem: str) -> tuple[Path, ...] | None:
        assert self.root is not None
        base = self.root / "ManualMask"
        left, right = base / "leftMask" / f"{stem}.png", base / "rightMask" / f"{stem}.png"
        if left.is_file() and right.is_file():
            return (left, right)
        merged = base / "lungs" / f"{stem}.png"
        return (merged,) if merged.is_file() else None

    def spacing(self, path: Path) -> float | None:
        return _FULL_SPACING_MM if image_size(path) in _FULL_SIZES else None

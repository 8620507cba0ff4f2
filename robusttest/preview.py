"""Picture of a noise ladder: clean image and each level, each with a zoomed inset.

Noise is applied at the image's native resolution; the tiles are then shown downsized, and
the inset shows native pixels (nearest-neighbour zoom) so the grain is visible as it is.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from robusttest.noise import NoiseSpec, severity_name

TILE = 384
INSET_SRC = 64  # native pixels shown in the inset
INSET = 160


def _to_u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _inset_origin(img: np.ndarray) -> tuple[int, int]:
    """Top-left of the inset crop: the right lung / mediastinum border at mid height."""
    h, w = img.shape
    y = max(0, min(h - INSET_SRC, int(h * 0.45)))
    x = max(0, min(w - INSET_SRC, int(w * 0.38)))
    return y, x


def _tile(img: np.ndarray, label: str, origin: tuple[int, int]) -> Image.Image:
    h, w = img.shape
    scale = TILE / max(h, w)
    base = Image.fromarray(_to_u8(img), mode="L")
    disp = base.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
    )
    canvas = Image.new("RGB", (TILE, TILE + 22), (20, 20, 20))
    canvas.paste(disp.convert("RGB"), ((TILE - disp.width) // 2, 22))
    y, x = origin
    crop = base.crop((x, y, x + INSET_SRC, y + INSET_SRC)).resize(
        (INSET, INSET), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(canvas)
    ox, oy = TILE - INSET - 4, TILE + 22 - INSET - 4
    canvas.paste(crop.convert("RGB"), (ox, oy))
    draw.rectangle((ox - 1, oy - 1, ox + INSET, oy + INSET), outline=(255, 200, 0))
    # where the inset comes from, on the downsized image
    dx0 = (TILE - disp.width) // 2
    draw.rectangle(
        (
            dx0 + x * scale,
            22 + y * scale,
            dx0 + (x + INSET_SRC) * scale,
            22 + (y + INSET_SRC) * scale,
        ),
        outline=(255, 200, 0),
    )
    draw.text((6, 4), label, fill=(240, 240, 240))
    return canvas


def noise_ladder_grid(
    image: np.ndarray,
    specs: Sequence[NoiseSpec],
    *,
    image_id: str,
    seed: int = 0,
    pixel_spacing_mm: float | None = None,
    title: str = "",
    columns: int = 3,
) -> bytes:
    """PNG bytes of a grid: clean, then each spec in order."""
    origin = _inset_origin(image)
    tiles = [_tile(image, f"clean  {title}", origin)]
    for spec in specs:
        noisy = spec.apply(
            image, seed=seed, image_ids=[image_id], pixel_spacing_mm=pixel_spacing_mm
        )
        sev = severity_name(spec.name, spec.level)
        label = f"{spec.slug}" + (f"  ({sev})" if sev else "")
        tiles.append(_tile(noisy.numpy(), label, origin))
    rows = (len(tiles) + columns - 1) // columns
    tw, th = tiles[0].size
    grid = Image.new(
        "RGB", (columns * tw + (columns - 1) * 4, rows * th + (rows - 1) * 4), (0, 0, 0)
    )
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % columns) * (tw + 4), (i // columns) * (th + 4)))
    buf = io.BytesIO()
    grid.save(buf, format="PNG", optimize=True)
    return buf.getvalue()

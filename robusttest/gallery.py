"""Thumbnails for the report gallery: the image, and the prediction outlined on it."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from scipy import ndimage

THUMB = 176
PRED_RGB = (255, 64, 64)  # prediction outline
TRUTH_RGB = (64, 220, 64)  # ground-truth outline


def _resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    if img.dtype == bool:
        im = Image.fromarray(img.astype(np.uint8) * 255)
        return np.asarray(im.resize(size, Image.Resampling.NEAREST)) > 127
    im = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(im.resize(size, mode)).astype(np.float32) / 255.0


def _size(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    s = THUMB / max(h, w)
    return max(1, round(w * s)), max(1, round(h * s))


def _png_b64(arr: np.ndarray) -> str:
    im = Image.fromarray(arr)
    if im.mode == "RGB":  # grey + two outline colours: a palette PNG is a third the size
        im = im.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)


def image_png(image: np.ndarray) -> str:
    """Base64 PNG of a grayscale image in [0, 1], downsized to the thumbnail size."""
    small = _resize(image, _size(image.shape))
    return _png_b64((small * 255 + 0.5).astype(np.uint8))


def overlay_png(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None) -> str:
    """Base64 PNG: image with the predicted mask (red) and the truth (green) outlined."""
    size = _size(image.shape)
    small = _resize(image, size)
    g = (small * 255 + 0.5).astype(np.uint8)
    rgb = np.stack([g, g, g], axis=-1)
    if truth is not None:
        rgb[_edge(_resize(truth.astype(bool), size))] = TRUTH_RGB
    rgb[_edge(_resize(pred.astype(bool), size))] = PRED_RGB
    return _png_b64(rgb)

"""Decoding of single radiographs into float32 arrays in [0, 1].

Convention (DESIGN.md §2): p high where attenuation is high (bone bright), i.e.
MONOCHROME2. MONOCHROME1 DICOM is inverted here so that every later step sees the same
convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robusttest.errors import DataError, InputError
from robusttest.extras import require_extra

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy", ".dcm", ".dicom")


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image and what the file says about its geometry."""

    pixels: np.ndarray  # float32, H×W, in [0, 1]
    pixel_spacing_mm: float | None  # row spacing of *this* array, when the file says it


def _to_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4):  # RGB(A) screenshot of a radiograph: use luminance
            arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        elif arr.shape[0] == 1:
            arr = arr[0]
        elif arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(f"{path}: image has shape {arr.shape}; expected a 2-D grayscale image")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise InputError(
                f"{path}: image contains NaN or infinite pixels; clean or re-export it"
            )
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{path}: float image values span [{lo:g}, {hi:g}]; expected [0, 1] "
                "(rescale before saving, e.g. (x - min) / (max - min))"
            )
    elif np.issubdtype(arr.dtype, np.integer):
        hi_i = int(arr.max()) if arr.size else 0
        scale = float(2 ** max(8, int(np.ceil(np.log2(hi_i + 1)))) - 1) if hi_i > 0 else 1.0
        out = arr.astype(np.float32) / scale
    else:
        raise InputError(f"{path}: unsupported pixel dtype {arr.dtype}")
    return np.ascontiguousarray(out, dtype=np.float32)


def _read_dicom(path: Path) -> DecodedImage:
    require_extra("dicom", f"{path}: reading DICOM")
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise DataError(
            f"{path}: cannot decode DICOM ({exc}); re-export or remove the file"
        ) from None
    arr = raw.astype(np.float64)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    arr = arr * slope + intercept
    bits = int(getattr(ds, "BitsStored", 0) or 0)
    if bits and slope == 1.0 and intercept == 0.0:
        if int(getattr(ds, "PixelRepresentation", 0) or 0) == 1:  # signed: two's complement
            lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
        else:
            lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    arr = np.clip(arr, 0.0, 1.0)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1: high values dark; we want bone bright
    spacing = None
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        val = getattr(ds, tag, None)
        if val is not None:
            try:
                spacing = float(val[0])
            except (TypeError, ValueError, IndexError):
                spacing = None
            if spacing is not None:
                break
    return DecodedImage(_to_unit(arr.astype(np.float32), path), spacing)


def read_image(path: str | Path) -> DecodedImage:
    """Decode PNG/JPEG/TIFF/BMP, ``.npy`` or DICOM into a float32 H×W array in [0, 1]."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise DataError(f"{p}: is a folder; give an image file")
    suffix = p.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return _read_dicom(p)
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{p}: cannot read .npy ({exc})") from None
        return DecodedImage(_to_unit(arr, p), None)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(im, dtype=np.uint16)
            elif im.mode == "I":
                arr = np.asarray(im, dtype=np.int32)
            elif im.mode in ("L", "1"):
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if _looks_like_dicom(p):
            return _read_dicom(p)
        raise DataError(
            f"{p}: cannot decode image ({exc}); the file may be truncated or not an image"
        ) from None
    return DecodedImage(_to_unit(arr, p), None)


def _looks_like_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"

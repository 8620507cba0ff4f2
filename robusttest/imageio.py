"""Decoding of single radiographs into float32 arrays in [0, 1].

Convention (DESIGN.md §2): p high where attenuation is high (bone bright), i.e.
MONOCHROME2. MONOCHROME1 DICOM is inverted here so that every later step sees the same
convention.

DICOM: the stored values go through the file's modality LUT (or rescale slope and
intercept) and VOI LUT (or window centre and width), as pydicom applies them, each output
scaled by its full range (the LUT's bit depth, the rescaled range of the stored bits),
never by one image's min–max: equal stored values give equal display values in every
image, which the count-domain noise needs. PixelSpacing, else ImagerPixelSpacing, is the
spacing.

Before a pixel is decoded, the size the header claims is checked: at least ``MIN_SIDE``
pixels on each side and at most ``max_pixels`` pixels (``DEFAULT_MAX_PIXELS``; a suite
sets ``data: {max_pixels: N}``), so a decompression bomb costs a header read, not memory.

Colour: an RGB(A) image (a screenshot or an export of a radiograph) becomes its luminance
Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma weights, on the stored values); an
alpha channel is dropped (a radiograph has no transparency). Grey stored as RGB (R = G = B)
comes back exactly.

Bit depth: integer pixels are divided by 2**bits - 1, where bits is, first found: the
caller's ``bit_depth`` (a suite's ``data: {bit_depth: N}``, a manifest's ``bit_depth``
column), the PNG ``sBIT`` chunk (grayscale PNGs), DICOM BitsStored, else the container
(8 or 16 bits; an integer .npy or 32-bit TIFF: the smallest power of two of at least 8
bits holding its maximum). Which one applied is returned with the pixels (provenance).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robusttest.errors import DataError, InputError
from robusttest.extras import require_extra

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy", ".dcm", ".dicom")

# 50 megapixels: twice the largest chest radiographs in use (a 43 cm detector at 0.1 mm
# is 18.5 MP; Montgomery's 4020×4892 is 19.7 MP), under Pillow's own bomb warning (89 MP).
DEFAULT_MAX_PIXELS = 50_000_000
MIN_SIDE = 8  # smaller is no radiograph but a broken or placeholder file (0×0, 1×1, 1×N)
LUMA_BT601 = (0.299, 0.587, 0.114)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image and what the file says about its geometry and bit depth."""

    pixels: np.ndarray  # float32, H×W, in [0, 1]
    pixel_spacing_mm: float | None  # row spacing of *this* array, when the file says it
    bit_depth: int | None = None  # bits that were scaled to [0, 1]; None for float data
    bit_depth_source: str = ""  # where bit_depth came from (see the module docstring)

    @property
    def depth_label(self) -> str:
        """``"12-bit (sBIT)"``, ``"float"``: how the values were read (provenance)."""
        if self.bit_depth is None:
            return self.bit_depth_source or "float"
        return f"{self.bit_depth}-bit ({self.bit_depth_source})"


@dataclass(frozen=True)
class Header:
    """What a file's header says before any pixel is decoded."""

    width: int
    height: int
    bits: int | None = None  # bits per sample of the container (PNG)
    significant_bits: int | None = None  # PNG sBIT of a grayscale image


# --- headers --------------------------------------------------------------------------------
def _png_header(path: Path) -> Header | None:
    """IHDR, and sBIT when a grayscale PNG has one, read chunk by chunk up to IDAT."""
    with open(path, "rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            return None
        head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"IHDR":
            return None
        ihdr = fh.read(13)
        if len(ihdr) < 13:
            return None
        width, height, bits, colour = struct.unpack(">IIBB", ihdr[:10])
        fh.read(4)  # CRC
        sbit: int | None = None
        for _ in range(1000):  # ancillary chunks before the image data
            raw = fh.read(8)
            if len(raw) < 8:
                break
            length, kind = struct.unpack(">I4s", raw)
            if kind in (b"IDAT", b"IEND"):
                break
            if kind == b"sBIT" and colour in (0, 4) and length >= 1:
                sbit = fh.read(length)[0]
                fh.read(4)
                continue
            fh.seek(length + 4, 1)
        return Header(int(width), int(height), int(bits), sbit)


def _pil_header(path: Path) -> Header | None:
    """Width and height through the Pillow plugin of the file's format, without
    ``Image.open`` (whose own decompression-bomb check warns or raises on the header)."""
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, TiffImagePlugin

    with open(path, "rb") as fh:
        magic = fh.read(4)
    plugins: list[tuple[tuple[bytes, ...], Any]] = [
        ((b"\xff\xd8",), JpegImagePlugin.JpegImageFile),
        ((b"BM",), BmpImagePlugin.BmpImageFile),
        ((b"GIF8",), GifImagePlugin.GifImageFile),
        ((b"II*\x00", b"MM\x00*"), TiffImagePlugin.TiffImageFile),
    ]
    for prefixes, plugin in plugins:
        if magic.startswith(prefixes):
            with open(path, "rb") as fh, plugin(fh) as im:
                return Header(int(im.size[0]), int(im.size[1]))
    return None


def read_header(path: str | Path) -> Header | None:
    """The image size (and PNG bit depths) from the header alone; None when unknown
    (not a PNG, JPEG, BMP, GIF or TIFF, or a header too broken to read)."""
    p = Path(path)
    try:
        return _png_header(p) or _pil_header(p)
    except Exception:  # a broken header is reported when the image is decoded
        return None


def check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    """DataError naming the file, its size and the limit, when the size is unusable."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise DataError(
            f"{path}: image is {width}×{height} pixels; a radiograph needs at least "
            f"{MIN_SIDE}×{MIN_SIDE}"
        )
    n = width * height
    if n > max_pixels:
        raise DataError(
            f"{path}: image is {width}×{height} = {n:,} pixels, over the limit of "
            f"{max_pixels:,} pixels (a decompression bomb, or an unusually large image); if it "
            "is genuine, raise the limit: `data: {max_pixels: N}` in the suite, or "
            "--max-pixels N for `robusttest noise`"
        )


def _check_pillow_limit(path: Path, width: int, height: int) -> None:
    # Pillow's own bomb check warns above Image.MAX_IMAGE_PIXELS and raises above twice
    # that: a max_pixels set higher must not end in its warning or traceback.
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise DataError(
            f"{path}: image is {width}×{height} = {width * height:,} pixels, within max_pixels "
            f"but over Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS = "
            f"{limit:,}); to decode it, raise that limit in your conftest.py or script"
        )


# --- values ------------------------------------------------------------------------------
def _bits_needed(hi: int) -> int:
    return max(8, int(np.ceil(np.log2(hi + 1)))) if hi > 0 else 8


def _scale_integers(
    arr: np.ndarray, path: Path, bits: int | None, source: str, container: int | None
) -> tuple[np.ndarray, int, str]:
    hi = int(arr.max()) if arr.size else 0
    lo = int(arr.min()) if arr.size else 0
    if lo < 0:
        raise DataError(
            f"{path}: integer image holds negative values (down to {lo}); "
            "store unsigned values, or floats in [0, 1]"
        )
    if bits is None:
        if container is not None:
            bits, source = container, "file"
        else:
            bits, source = _bits_needed(hi), "from its maximum"
    if container is not None and bits > container:
        raise DataError(
            f"{path}: bit_depth {bits} but the image decodes to {container}-bit values; "
            f"give a bit_depth of at most {container}"
        )
    top = 2**bits - 1
    if hi > top:
        raise DataError(
            f"{path}: values reach {hi}, above the {top} that {bits}-bit data ({source}) "
            "allows; correct the bit depth (bit_depth in the suite's data or the manifest)"
        )
    return arr.astype(np.float32) / np.float32(top), bits, source


def _luminance(arr: np.ndarray) -> np.ndarray:
    """H×W×3 or ×4 in [0, 1] → BT.601 luma; alpha dropped; exact for grey."""
    rgb = arr[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.asarray(rgb[..., 0])
    w = np.asarray(LUMA_BT601, dtype=np.float64)
    return (rgb.astype(np.float64) @ w).astype(np.float32)


def _to_unit(
    arr: np.ndarray,
    path: Path,
    *,
    bits: int | None = None,
    source: str = "",
    container: int | None = None,
) -> DecodedImage:
    """Scale to float32 [0, 1]; RGB(A) to luminance; check the shape and the values."""
    if arr.ndim == 3:
        if arr.shape[0] == 1:
            arr = arr[0]
        elif arr.shape[-1] in (1, 2):  # grey, grey + alpha
            arr = arr[..., 0]
    colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if arr.ndim != 2 and not colour:
        raise InputError(
            f"{path}: image has shape {arr.shape}; expected a 2-D grayscale image "
            "(or H×W×3 RGB, H×W×4 RGBA)"
        )
    h, w = arr.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DataError(
            f"{path}: image is {w}×{h} pixels; a radiograph needs at least {MIN_SIDE}×{MIN_SIDE}"
        )
    depth: int | None
    if arr.dtype == bool:
        out, depth, source = arr.astype(np.float32), 1, "binary"
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        depth, source = None, "float"
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
        if container is None and arr.dtype in (np.uint8, np.uint16):
            container = 8 * arr.dtype.itemsize
        out, depth, source = _scale_integers(arr, path, bits, source, container)
    else:
        raise InputError(f"{path}: unsupported pixel dtype {arr.dtype}")
    if colour:
        out = _luminance(out)
    return DecodedImage(np.ascontiguousarray(out, dtype=np.float32), None, depth, source)


# --- formats -----------------------------------------------------------------------------
def _lut_range(item: Any) -> tuple[float, float]:
    """Output range of a DICOM LUT (modality or VOI): its entries' bit depth."""
    depth = int(item.LUTDescriptor[2])
    return 0.0, float(2**depth - 1)


def _dicom_display(ds: Any, raw: np.ndarray, bits: int) -> tuple[np.ndarray, str]:
    """Stored values → display values in [0, 1] by the file's own transforms (PS3.3 C.11):
    the modality LUT (or rescale slope/intercept), then the VOI LUT (or window centre and
    width), each output scaled by its full range, never by the image's own min–max, so
    equal stored values give equal display values in every image; MONOCHROME1 inverted
    by the caller. Returns the values and which transforms applied."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    if signed:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    else:
        lo, hi = 0.0, float(2**bits - 1)
    steps: list[str] = []
    ds.BitsStored = bits  # the windowing's output range follows the bits that hold data
    arr: np.ndarray = raw
    if ds.get("ModalityLUTSequence"):
        arr = apply_modality_lut(raw, ds)
        lo, hi = _lut_range(ds.ModalityLUTSequence[0])
        steps.append("modality LUT")
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        arr = apply_modality_lut(raw, ds)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        if (slope, intercept) != (1.0, 0.0):
            steps.append("rescale")
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        if not np.issubdtype(arr.dtype, np.integer):
            arr = np.rint(arr).astype(np.int64)  # a LUT maps integer values
        arr = apply_voi_lut(arr, ds)
        lo, hi = _lut_range(voi[0])
        steps.append("VOI LUT")
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        arr = apply_voi_lut(arr, ds, prefer_lut=False)  # output spans the input's range
        steps.append("VOI window")
    out = (np.asarray(arr, dtype=np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(raw.shape)
    return np.clip(out, 0.0, 1.0), ", ".join(steps)


def _read_dicom(path: Path, max_pixels: int, bit_depth: int | None) -> DecodedImage:
    require_extra("dicom", f"{path}: reading DICOM")
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise DataError(
            f"{path}: cannot decode DICOM ({exc}); re-export or remove the file"
        ) from None
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if rows and cols:
        check_size(path, cols, rows, max_pixels)
    try:
        raw = ds.pixel_array
    except Exception as exc:
        raise DataError(
            f"{path}: cannot decode DICOM ({exc}); re-export or remove the file"
        ) from None
    stored = int(getattr(ds, "BitsStored", 0) or 0)
    bits = bit_depth or stored or 8 * raw.dtype.itemsize
    source = "bit_depth" if bit_depth else ("DICOM BitsStored" if stored else "file")
    if bit_depth and raw.size and int(raw.max()) > 2**bits - 1:
        raise DataError(
            f"{path}: values reach {int(raw.max())}, above the {2**bits - 1} that {bits}-bit "
            "data (bit_depth) allows; correct bit_depth in the suite's data or the manifest"
        )
    try:
        arr, steps = _dicom_display(ds, raw, bits)
    except (ValueError, NotImplementedError, AttributeError, IndexError, TypeError) as exc:
        raise DataError(
            f"{path}: cannot apply the DICOM modality/VOI LUT ({exc}); re-export the image "
            "or remove the file"
        ) from None
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1: high values dark; we want bone bright
        steps = ", ".join(x for x in (steps, "MONOCHROME1 inverted") if x)
    spacing = None
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        val = getattr(ds, tag, None)
        if val is not None:
            try:
                spacing = float(val[0])
            except (TypeError, ValueError, IndexError):
                spacing = None
            if spacing is not None and spacing > 0:
                break
            spacing = None
    unit = _to_unit(arr.astype(np.float32), path)
    return DecodedImage(unit.pixels, spacing, bits, f"{source}; {steps}" if steps else source)


def _read_npy(path: Path, max_pixels: int, bit_depth: int | None) -> DecodedImage:
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    except Exception as exc:
        raise DataError(f"{path}: cannot read .npy ({exc})") from None
    if len(shape) in (2, 3):
        h, w = (shape[1], shape[2]) if len(shape) == 3 and shape[0] == 1 else shape[:2]
        check_size(path, int(w), int(h), max_pixels)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read .npy ({exc})") from None
    return _to_unit(arr, path, bits=bit_depth, source="bit_depth")


def _read_pil(path: Path, max_pixels: int, bit_depth: int | None) -> DecodedImage:
    from PIL import Image, UnidentifiedImageError

    header = read_header(path)
    if header is not None:
        check_size(path, header.width, header.height, max_pixels)
        _check_pillow_limit(path, header.width, header.height)
    container: int | None = None
    arr: np.ndarray
    try:
        with Image.open(path) as im:
            if header is None:  # a format we do not parse: the size from Pillow's open
                check_size(path, im.size[0], im.size[1], max_pixels)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                arr, container = np.asarray(im, dtype=np.uint16), 16
            elif im.mode == "I":
                arr = np.asarray(im, dtype=np.int32)
            elif im.mode in ("L", "1"):
                arr, container = np.asarray(im.convert("L"), dtype=np.uint8), 8
            elif im.mode == "LA":
                arr, container = np.asarray(im, dtype=np.uint8)[..., 0], 8
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            elif im.mode == "RGBA":
                arr, container = np.asarray(im, dtype=np.uint8), 8
            else:  # RGB, palette, CMYK, YCbCr...
                arr, container = np.asarray(im.convert("RGB"), dtype=np.uint8), 8
    except Image.DecompressionBombError as exc:  # only for formats we cannot size first
        raise DataError(
            f"{path}: Pillow refuses to decode it as a possible decompression bomb ({exc})"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot decode image ({exc}); the file may be truncated or not an image"
        ) from None
    bits, source = bit_depth, "bit_depth"
    if bits is None and header is not None and header.significant_bits and header.bits == container:
        bits, source = header.significant_bits, "sBIT"
    return _to_unit(arr, path, bits=bits, source=source, container=container)


def read_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, bit_depth: int | None = None
) -> DecodedImage:
    """Decode PNG/JPEG/TIFF/BMP, ``.npy`` or DICOM into a float32 H×W array in [0, 1].

    ``max_pixels`` bounds the size the header claims (checked before decoding);
    ``bit_depth`` says how many bits of an integer image hold data (see the module
    docstring). Problems with the file are a DataError naming it, in one line.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise DataError(f"{p}: is a folder; give an image file")
    try:
        if p.stat().st_size == 0:
            raise DataError(f"{p}: the file is empty (0 bytes); re-export or remove it")
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
    suffix = p.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return _read_dicom(p, max_pixels, bit_depth)
    if suffix == ".npy":
        return _read_npy(p, max_pixels, bit_depth)
    try:
        return _read_pil(p, max_pixels, bit_depth)
    except DataError:
        if _looks_like_dicom(p):
            return _read_dicom(p, max_pixels, bit_depth)
        raise


def _looks_like_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"

"""The bad inputs of the catalogue: each writes one broken file the way a user meets it
(a truncated download, a header that lies, a wrong bit depth...) and says what the error
must say about it.

``BAD_IMAGES``: files in the image column; ``BAD_MASKS``: files in the mask column.
Each maker writes under ``root`` and returns the path relative to it (and, for some, the
manifest's bit_depth cell).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from reliability_helpers import SIZE, good_image


@dataclass(frozen=True)
class Bad:
    name: str
    make: Callable[[Path], str]  # writes the file, returns its path relative to root
    says: str  # a fragment the one-line error must hold
    bit_depth: str = ""  # the manifest's bit_depth cell for this row
    dicom: bool = False  # needs pydicom


def _write(root: Path, rel: str, data: bytes) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return rel


def _noisy(size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)


def _encoded(arr: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(buf, format=fmt)
    return buf.getvalue()


# --- PNG -----------------------------------------------------------------------------------
def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(
    width: int,
    height: int,
    *,
    bits: int = 8,
    colour: int = 0,
    rows: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    """A PNG written chunk by chunk (headers that lie, sBIT chunks)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    if rows is None:
        rows = b"\0" * 64
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png16(values: np.ndarray, sbit: int | None = None) -> bytes:
    """A 16-bit grayscale PNG of ``values``, with an sBIT chunk when given."""
    h, w = values.shape
    raw = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(h))
    extra = chunk(b"sBIT", bytes([sbit])) if sbit is not None else b""
    return png_bytes(w, h, bits=16, rows=raw, extra=extra)


def _png_truncated(root: Path) -> str:
    data = _encoded(_noisy(), "PNG")
    return _write(root, "img/truncated.png", data[: len(data) // 2])


def _png_bad_zlib(root: Path) -> str:
    ihdr = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"not zlib at all")
        + chunk(b"IEND", b"")
    )
    return _write(root, "img/badzlib.png", data)


def _png_bad_crc(root: Path) -> str:
    data = bytearray(_encoded(_noisy(), "PNG"))
    data[29] ^= 0xFF  # a byte of IHDR's CRC
    return _write(root, "img/badcrc.png", bytes(data))


def _png_sbit_lies(root: Path) -> str:
    v = np.full((SIZE, SIZE), 1000, np.uint16)
    v[0, 0] = 5000  # above what 12 significant bits hold
    return _write(root, "img/sbit-lies.png", png16(v, sbit=12))


def _png16(root: Path) -> str:
    v = np.full((SIZE, SIZE), 3000, np.uint16)
    return _write(root, "img/sixteen.png", png16(v))


def _png8(root: Path) -> str:
    return _write(root, "img/eight.png", _encoded(good_image(0)[0], "PNG"))


# --- JPEG, BMP, GIF, TIFF -----------------------------------------------------------------
def _jpeg_bomb(root: Path) -> str:
    data = _encoded(_noisy(), "JPEG")
    i = data.index(b"\xff\xc0")  # SOF0: length, precision, height, width
    bomb = data[: i + 5] + struct.pack(">HH", 60000, 60000) + data[i + 9 :]
    return _write(root, "img/bomb.jpg", bomb)


def _bmp_bomb(root: Path) -> str:
    data = bytearray(_encoded(_noisy(), "BMP"))
    data[18:26] = struct.pack("<ii", 30000, 30000)
    return _write(root, "img/bomb.bmp", bytes(data))


def _tiff_bomb(root: Path) -> str:
    # little-endian TIFF, one IFD: width, length 40000 (LONG), 8 bits, one strip of 16 bytes
    entries = [
        (256, 4, 1, 40000),
        (257, 4, 1, 40000),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4),
        (277, 3, 1, 1),
        (278, 4, 1, 40000),
        (279, 4, 1, 16),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0" * 16
    return _write(root, "img/bomb.tif", data)


def _tiff_float(root: Path, value: float, name: str) -> str:
    arr = np.full((SIZE, SIZE), 0.5, np.float32)
    arr[3, 4] = value
    return _write(root, f"img/{name}.tif", _encoded(arr, "TIFF", "F"))


def _truncated(fmt: str, suffix: str) -> Callable[[Path], str]:
    def make(root: Path) -> str:
        data = _encoded(_noisy(), fmt)
        return _write(root, f"img/truncated{suffix}", data[: len(data) // 2])

    return make


# --- .npy ----------------------------------------------------------------------------------
def _npy(name: str, arr: np.ndarray, *, pickle: bool = False) -> Callable[[Path], str]:
    def make(root: Path) -> str:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=pickle)
        return _write(root, f"img/{name}.npy", buf.getvalue())

    return make


def _npy_truncated(root: Path) -> str:
    buf = io.BytesIO()
    np.save(buf, np.full((SIZE, SIZE), 0.5, np.float32))
    return _write(root, "img/truncated.npy", buf.getvalue()[:200])


def _npy_bomb(root: Path) -> str:
    # a header claiming 100000² float32 pixels, and hardly any data
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += " " * (118 - len(header)) + "\n"
    return _write(
        root,
        "img/bomb.npy",
        b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.encode() + b"\0" * 64,
    )


# --- DICOM ---------------------------------------------------------------------------------
def dicom_bytes(
    arr: np.ndarray, *, bits: int = 12, rows: int | None = None, cols: int | None = None
) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "P1"
    ds.Modality = "DX"
    ds.Rows = rows if rows is not None else arr.shape[0]
    ds.Columns = cols if cols is not None else arr.shape[1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _dcm_truncated(root: Path) -> str:
    data = dicom_bytes(np.full((SIZE, SIZE), 2000, np.uint16))
    return _write(root, "img/truncated.dcm", data[: len(data) - 700])


def _dcm_bomb(root: Path) -> str:
    data = dicom_bytes(np.full((SIZE, SIZE), 2000, np.uint16), rows=30000, cols=30000)
    return _write(root, "img/bomb.dcm", data)


def _dcm_no_pixels(root: Path) -> str:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.full((SIZE, SIZE), 2000, np.uint16))))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    return _write(root, "img/nopixels.dcm", buf.getvalue())


def _dcm_values(root: Path) -> str:
    return _write(root, "img/values.dcm", dicom_bytes(np.full((SIZE, SIZE), 3000, np.uint16)))


# --- masks ---------------------------------------------------------------------------------
def _mask_of_size(size: int) -> Callable[[Path], str]:
    def make(root: Path) -> str:
        m = np.zeros((size, size), np.uint8)
        m[2:6, 2:6] = 255
        return _write(root, f"mask/size{size}.png", _encoded(m, "PNG"))

    return make


def _mask_truncated(root: Path) -> str:
    data = _encoded((_noisy() > 128).astype(np.uint8) * 255, "PNG")
    return _write(root, "mask/truncated.png", data[: len(data) // 2])


EMPTY = "the file is empty (0 bytes)"
UNDECODABLE = "cannot decode image"
LIMIT = "pixels, over the limit of 50,000,000 pixels"

BAD_IMAGES: list[Bad] = [
    # PNG
    Bad("png-empty", lambda r: _write(r, "img/empty.png", b""), EMPTY),
    Bad("png-truncated", _png_truncated, UNDECODABLE),
    Bad("png-signature-only", lambda r: _write(r, "img/sig.png", b"\x89PNG\r\n\x1a\n"), UNDECODABLE),
    Bad("png-text", lambda r: _write(r, "img/text.png", b"this is not an image\n"), UNDECODABLE),
    Bad("png-bad-zlib", _png_bad_zlib, UNDECODABLE),
    Bad("png-bad-crc", _png_bad_crc, UNDECODABLE),
    Bad("png-bomb", lambda r: _write(r, "img/bomb.png", png_bytes(20000, 20000)), f"20000×20000 = 400,000,000 {LIMIT}"),
    Bad("png-bomb-wide", lambda r: _write(r, "img/wide.png", png_bytes(200000, 300)), f"200000×300 = 60,000,000 {LIMIT}"),
    Bad("png-1x1", lambda r: _write(r, "img/one.png", _encoded(np.array([[128]], np.uint8), "PNG")), "image is 1×1 pixels; a radiograph needs at least 8×8"),
    Bad("png-strip", lambda r: _write(r, "img/strip.png", _encoded(np.zeros((64, 2), np.uint8), "PNG")), "image is 2×64 pixels"),
    Bad("png-zero-width", lambda r: _write(r, "img/zerow.png", png_bytes(0, 32)), "image is 0×32 pixels"),
    Bad("png-sbit-lies", _png_sbit_lies, "values reach 5000, above the 4095 that 12-bit data (sBIT) allows"),
    Bad("png8-bit-depth-12", _png8, "bit_depth 12 but the image decodes to 8-bit values", bit_depth="12"),
    Bad("png16-bit-depth-10", _png16, "values reach 3000, above the 1023 that 10-bit data (bit_depth) allows", bit_depth="10"),
    # JPEG, BMP, GIF, TIFF
    Bad("jpeg-empty", lambda r: _write(r, "img/empty.jpg", b""), EMPTY),
    Bad("jpeg-truncated", _truncated("JPEG", ".jpg"), UNDECODABLE),
    Bad("jpeg-garbage", lambda r: _write(r, "img/garbage.jpg", b"\xff\xd8" + bytes(range(256)) * 4), UNDECODABLE),
    Bad("jpeg-bomb", _jpeg_bomb, f"60000×60000 = 3,600,000,000 {LIMIT}"),
    Bad("bmp-truncated", _truncated("BMP", ".bmp"), UNDECODABLE),
    Bad("bmp-bomb", _bmp_bomb, f"30000×30000 = 900,000,000 {LIMIT}"),
    Bad("gif-truncated", _truncated("GIF", ".gif"), UNDECODABLE),
    Bad("tiff-truncated", _truncated("TIFF", ".tif"), UNDECODABLE),
    Bad("tiff-bomb", _tiff_bomb, f"40000×40000 = 1,600,000,000 {LIMIT}"),
    Bad("tiff-float-above-1", lambda r: _tiff_float(r, 2.0, "above"), "float image values span [0.5, 2]; expected [0, 1]"),
    Bad("tiff-float-nan", lambda r: _tiff_float(r, float("nan"), "nan"), "image contains NaN or infinite pixels"),
    # .npy
    Bad("npy-0x0", _npy("empty", np.zeros((0, 0), np.float32)), "image is 0×0 pixels"),
    Bad("npy-3x3", _npy("tiny", np.full((3, 3), 0.5, np.float32)), "image is 3×3 pixels"),
    Bad("npy-1d", _npy("flat", np.full(100, 0.5, np.float32)), "image has shape (100,); expected a 2-D grayscale image"),
    Bad("npy-5-channels", _npy("five", np.full((SIZE, SIZE, 5), 0.5, np.float32)), f"image has shape ({SIZE}, {SIZE}, 5)"),
    Bad("npy-object", _npy("object", np.array([[object()] * SIZE] * SIZE), pickle=True), "cannot read .npy"),
    Bad("npy-nan", _npy("nan", np.full((SIZE, SIZE), np.nan, np.float32)), "image contains NaN or infinite pixels"),
    Bad("npy-inf", _npy("inf", np.full((SIZE, SIZE), np.inf, np.float64)), "image contains NaN or infinite pixels"),
    Bad("npy-above-1", _npy("above", np.full((SIZE, SIZE), 3.0, np.float32)), "float image values span [3, 3]; expected [0, 1]"),
    Bad("npy-negative-int", _npy("negative", np.full((SIZE, SIZE), -5, np.int16)), "integer image holds negative values (down to -5)"),
    Bad("npy-complex", _npy("complex", np.full((SIZE, SIZE), 1j, np.complex64)), "unsupported pixel dtype complex64"),
    Bad("npy-truncated", _npy_truncated, "cannot read .npy"),
    Bad("npy-bomb", _npy_bomb, f"100000×100000 = 10,000,000,000 {LIMIT}"),
    Bad("npy-garbage", lambda r: _write(r, "img/garbage.npy", b"PK\x03\x04 not numpy"), "cannot read .npy"),
    # DICOM
    Bad("dcm-truncated", _dcm_truncated, "cannot decode DICOM", dicom=True),
    Bad("dcm-bomb", _dcm_bomb, f"30000×30000 = 900,000,000 {LIMIT}", dicom=True),
    Bad("dcm-no-pixel-data", _dcm_no_pixels, "cannot decode DICOM", dicom=True),
    Bad("dcm-not-dicom", lambda r: _write(r, "img/text.dcm", b"plain text, not DICOM\n" * 20), "cannot decode DICOM", dicom=True),
    Bad("dcm-bit-depth-8", _dcm_values, "values reach 3000, above the 255 that 8-bit data (bit_depth) allows", bit_depth="8", dicom=True),
]  # fmt: skip

BAD_MASKS: list[Bad] = [
    Bad("mask-other-size", _mask_of_size(16), "is 16×16 but image"),
    Bad("mask-truncated", _mask_truncated, "cannot decode mask"),
    Bad("mask-empty", lambda r: _write(r, "mask/empty.png", b""), "cannot decode mask"),
    Bad(
        "mask-bomb",
        lambda r: _write(r, "mask/bomb.png", png_bytes(20000, 20000)),
        f"20000×20000 = 400,000,000 {LIMIT}",
    ),
    Bad(
        "mask-3-channels",
        _npy("mask3", np.zeros((SIZE, SIZE, 3), np.uint8)),
        "mask has shape (32, 32, 3)",
    ),
]

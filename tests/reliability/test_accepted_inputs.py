"""What is read, and how: colour as BT.601 luminance, the bit depth (sBIT, bit_depth,
DICOM BitsStored) recorded in the provenance, the size from the header of every format,
the smallest image, and Pillow's own decompression-bomb limit handled explicitly.

Expected values are computed here independently of robusttest.imageio.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from bad_files import dicom_bytes, png16
from PIL import Image
from reliability_helpers import SIZE, Project, good_image, png, robusttest, run_args

from robusttest.cli import EXIT_PASSED
from robusttest.errors import DataError
from robusttest.imageio import MIN_SIDE, read_header, read_image

RNG = np.random.default_rng(7)


def _rgb() -> np.ndarray:
    return RNG.integers(0, 256, (SIZE, SIZE + 4, 3), dtype=np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., k].astype(np.float64) / 255.0 for k in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_rgb_is_bt601_luminance(tmp_path: Path) -> None:
    rgb = _rgb()
    got = read_image(png(tmp_path / "rgb.png", rgb))
    assert got.pixels.shape == (SIZE, SIZE + 4) and got.pixels.dtype == np.float32
    np.testing.assert_allclose(got.pixels, _luma(rgb), atol=1e-6)
    assert got.depth_label == "8-bit (file)"


def test_rgba_drops_the_alpha_channel(tmp_path: Path) -> None:
    rgb = _rgb()
    alpha = RNG.integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    got = read_image(png(tmp_path / "rgba.png", rgba, "RGBA")).pixels
    np.testing.assert_array_equal(got, read_image(png(tmp_path / "rgb.png", rgb)).pixels)


def test_grey_stored_as_rgb_grey_alpha_and_palette_read_as_the_grey(tmp_path: Path) -> None:
    grey = good_image(0)[0]
    want = read_image(png(tmp_path / "l.png", grey)).pixels
    np.testing.assert_array_equal(want, grey / np.float32(255))
    as_rgb = png(tmp_path / "rgb.png", np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_image(as_rgb).pixels, want)
    la = np.dstack([grey, np.full_like(grey, 200)])
    np.testing.assert_array_equal(read_image(png(tmp_path / "la.png", la, "LA")).pixels, want)
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png").pixels, want)


def test_npy_rgb_floats_and_integers(tmp_path: Path) -> None:
    rgb = _rgb()
    np.save(tmp_path / "u8.npy", rgb)
    np.save(tmp_path / "f.npy", rgb.astype(np.float32) / 255)
    np.testing.assert_allclose(read_image(tmp_path / "u8.npy").pixels, _luma(rgb), atol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "f.npy").pixels, _luma(rgb), atol=1e-6)


def test_sbit_gives_the_bit_depth_of_a_16_bit_png(tmp_path: Path) -> None:
    values = RNG.integers(0, 4096, (SIZE, SIZE), dtype=np.uint16)
    values[0, 0] = 3000
    (tmp_path / "s.png").write_bytes(png16(values, sbit=12))
    (tmp_path / "n.png").write_bytes(png16(values))
    got = read_image(tmp_path / "s.png")
    np.testing.assert_array_equal(got.pixels, values.astype(np.float32) / np.float32(4095))
    assert got.depth_label == "12-bit (sBIT)"
    assert got.pixels[0, 0] == pytest.approx(3000 / 4095)  # not 3000 / 65535 = 0.046
    plain = read_image(tmp_path / "n.png")
    assert plain.depth_label == "16-bit (file)" and plain.pixels[0, 0] == pytest.approx(
        3000 / 65535
    )
    told = read_image(tmp_path / "s.png", bit_depth=14)  # the caller's word wins
    assert told.depth_label == "14-bit (bit_depth)"
    assert told.pixels[0, 0] == pytest.approx(3000 / 16383)


def test_dicom_bits_stored_is_recorded(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    (tmp_path / "d.dcm").write_bytes(dicom_bytes(np.full((SIZE, SIZE), 2048, np.uint16)))
    got = read_image(tmp_path / "d.dcm")
    assert got.depth_label == "12-bit (DICOM BitsStored)"
    assert got.pixels[0, 0] == pytest.approx(2048 / 4095)


def test_bit_depths_are_in_the_provenance(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_good(2)
    (project.root / "img" / "s.png").write_bytes(
        png16(np.where(good_image(2)[1], 3500, 500).astype(np.uint16), sbit=12)
    )
    png(project.path("img/rgb.png"), np.dstack([good_image(3)[0]] * 3))
    project.add("img/s.png")
    project.add("img/rgb.png")
    project.write()
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_PASSED, got.err
    depths = got.json()["provenance"]["data"]["bit_depths"]
    assert depths == {"12-bit (sBIT)": 1, "8-bit (file)": 3}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF"])
def test_the_header_gives_the_size_of_every_format(tmp_path: Path, fmt: str) -> None:
    arr = RNG.integers(0, 256, (21, 37), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(buf.getvalue())
    header = read_header(path)
    assert header is not None and (header.width, header.height) == (37, 21)
    assert read_image(path).pixels.shape == (21, 37)


def test_smallest_image_accepted_and_one_pixel_less_refused(tmp_path: Path) -> None:
    ok = png(tmp_path / "ok.png", np.full((MIN_SIDE, MIN_SIDE), 9, np.uint8))
    assert read_image(ok).pixels.shape == (MIN_SIDE, MIN_SIDE)
    small = png(tmp_path / "small.png", np.full((MIN_SIDE, MIN_SIDE - 1), 9, np.uint8))
    with pytest.raises(DataError, match=rf"image is {MIN_SIDE - 1}×{MIN_SIDE} pixels"):
        read_image(small)


def test_pillows_own_bomb_limit_is_an_error_of_ours_without_its_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An image within max_pixels but over Pillow's MAX_IMAGE_PIXELS (lowered here so the
    # file stays small): one DataError naming both limits, and no DecompressionBombWarning.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    path = png(tmp_path / "x.png", good_image(0)[0])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(DataError) as info:
            read_image(path, max_pixels=10_000)
    assert not seen
    assert str(info.value) == (
        f"{path}: image is 32×32 = 1,024 pixels, within max_pixels but over Pillow's "
        "decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS = 600); to decode it, raise "
        "that limit in your conftest.py or script"
    )
    # a format robusttest does not size from its header: Pillow's own refusal, one line
    ppm = tmp_path / "x.ppm"
    Image.fromarray(good_image(0)[0]).save(ppm)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match="Pillow refuses to decode it as a possible decompression"):
        read_image(ppm)

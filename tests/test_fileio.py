"""pipelines.fileio: decoding every accepted format to upright 8-bit RGB, and atomic writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import skimage_photo
from pipelines.errors import InputError
from pipelines.fileio import atomic_path, atomic_write_bytes, decode_image, read_image, write_image


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage_photo("chelsea", 48)  # [48, 72, 3] uint8 RGB


@pytest.mark.parametrize("fmt,tol", [("JPEG", 12), ("PNG", 0), ("WEBP", 12), ("BMP", 0), ("TIFF", 0)])
def test_formats_decode_to_rgb(photo: np.ndarray, fmt: str, tol: int):
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    out = decode_image(pil_bytes(Image.fromarray(photo), fmt, **kw), f"x.{fmt.lower()}")
    assert out.shape == photo.shape and out.dtype == np.uint8
    # Mean error small and channel order right (RGB, not BGR).
    assert np.abs(out.astype(int) - photo).mean() <= tol / 2
    assert np.abs(out.astype(int) - photo[:, :, ::-1]).mean() > 5


def test_exif_orientation_is_applied(photo: np.ndarray):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    data = pil_bytes(Image.fromarray(photo), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert out.shape == (72, 48, 3)
    expected = np.rot90(photo, -1)
    assert np.abs(out.astype(int) - expected).mean() < 6


def test_grayscale_becomes_three_equal_channels(photo: np.ndarray):
    gray = Image.fromarray(photo).convert("L")
    out = decode_image(pil_bytes(gray, "PNG"))
    assert out.shape == photo.shape
    assert np.array_equal(out[:, :, 0], out[:, :, 2]) and np.array_equal(out[:, :, 0], np.asarray(gray))


def test_rgba_is_composited_over_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)  # opaque red left half, fully transparent right half
    rgba[:, 4:, :3] = (0, 0, 255)
    out = decode_image(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out[:, :4] == (255, 0, 0)).all() and (out[:, 4:] == 255).all()


def test_16_bit_png_and_tiff_are_scaled_to_8_bit(tmp_path: Path):
    ramp = (np.arange(64, dtype=np.uint32) * 1040).astype(np.uint16).reshape(8, 8)  # 0 .. 65520
    expected = np.round(ramp / 65535 * 255)
    png = pil_bytes(Image.fromarray(ramp), "PNG")  # 16-bit grayscale PNG
    rgb16 = np.stack([ramp, ramp // 2, ramp // 4], axis=2)
    import cv2

    ok, buf = cv2.imencode(".png", rgb16[:, :, ::-1].copy())  # 48-bit RGB PNG
    assert ok
    tif = tmp_path / "g16.tif"
    Image.fromarray(ramp).save(tif)
    for data in (png, tif.read_bytes()):
        out = decode_image(data)
        assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
        assert np.abs(out[:, :, 0].astype(int) - expected).max() <= 1
    out = decode_image(buf.tobytes())
    assert np.abs(out[:, :, 0].astype(int) - expected).max() <= 1
    assert np.abs(out[:, :, 2].astype(int) - np.round(ramp // 4 / 65535 * 255)).max() <= 1


def test_unreadable_names_the_file(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(InputError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(InputError, match="empty"):
        decode_image(b"", "e.png")


def test_atomic_path_leaves_nothing_on_exception(tmp_path: Path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-written")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_write_image_round_trips(tmp_path: Path, photo: np.ndarray):
    data = write_image(tmp_path / "a.png", photo)
    assert (tmp_path / "a.png").read_bytes() == data
    assert np.array_equal(read_image(tmp_path / "a.png"), photo)

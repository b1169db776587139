"""add-images: formats, byte-for-byte copies, conversions, name collisions, duplicates, bad files, CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from animegan_cli.app import app
from conftest import skimage_photo
from pipelines.errors import InputError, PartialFailure
from pipelines.fileio import encode_image, read_image
from pipelines.data.importing import add_images
from pipelines.data.manifest import Dataset
from pipelines.progress import RecordingReporter


def save(path: Path, im: Image.Image, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "in"
    rgb = Image.fromarray(skimage_photo("astronaut", 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255
    return {
        "jpg": save(src / "plain.jpg", rgb, "JPEG", quality=90),
        "png": save(src / "plain.png", Image.fromarray(skimage_photo("coffee", 32)), "PNG"),
        "rotated": save(src / "rotated.jpg", Image.fromarray(skimage_photo("rocket", 32)), "JPEG", exif=exif.tobytes()),
        "gray": save(src / "gray.jpg", rgb.convert("L"), "JPEG"),
        "rgba": save(src / "alpha.png", Image.fromarray(rgba, "RGBA"), "PNG"),
        "webp": save(src / "sub" / "pic.webp", Image.fromarray(skimage_photo("chelsea", 32)), "WEBP"),
        "bmp": save(src / "sub" / "pic.bmp", Image.fromarray(skimage_photo("hubble_deep_field", 32)), "BMP"),
        "tiff": save(src / "sub" / "deep.tiff", Image.fromarray((np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)), "TIFF"),
    }


def test_formats_are_imported_copied_or_converted(inputs: dict[str, Path], tmp_path: Path):
    ds_root = tmp_path / "ds"
    summary = add_images([tmp_path / "in"], "photo", ds_root, RecordingReporter())
    assert summary.imported == 8 and summary.copied == 2 and summary.converted == 6
    photo_dir = ds_root / "photo"
    # Plain 8-bit RGB JPEG/PNG: the very same bytes.
    assert (photo_dir / "plain.jpg").read_bytes() == inputs["jpg"].read_bytes()
    assert (photo_dir / "plain.png").read_bytes() == inputs["png"].read_bytes()
    names = sorted(p.name for p in photo_dir.iterdir())
    # Name collision (pic.webp and pic.bmp both become pic.png): the second gets a suffix.
    assert names == ["alpha.png", "deep.png", "gray.jpg", "pic-1.png", "pic.png", "plain.jpg", "plain.png", "rotated.jpg"]
    # EXIF rotation baked in; grayscale / alpha / 16-bit stored as 8-bit RGB.
    rocket = skimage_photo("rocket", 32)
    assert read_image(photo_dir / "rotated.jpg").shape == (rocket.shape[1], rocket.shape[0], 3)
    with Image.open(photo_dir / "rotated.jpg") as im:
        assert im.getexif().get(0x0112, 1) == 1
    for name in ("alpha.png", "deep.png", "gray.jpg"):
        with Image.open(photo_dir / name) as im:
            assert im.mode == "RGB", name
    assert (read_image(photo_dir / "alpha.png")[8:] == 255).all()  # transparent half over white
    records = Dataset(ds_root).manifest.records("photo")
    assert len(records) == 8
    rec = next(r for r in records if r.path == "photo/plain.png")
    coffee = skimage_photo("coffee", 32)
    assert rec.source.original == str(inputs["png"].resolve())
    assert (rec.height, rec.width) == coffee.shape[:2] and rec.bytes == inputs["png"].stat().st_size


def test_duplicates_are_skipped_and_nothing_is_overwritten(inputs: dict[str, Path], tmp_path: Path):
    ds_root = tmp_path / "ds"
    add_images([inputs["jpg"], inputs["png"]], "style", ds_root)
    before = {p.name: p.read_bytes() for p in (ds_root / "style").iterdir()}
    # Same content again (also under another name), plus a different picture with a taken name.
    copy = tmp_path / "other" / "renamed.png"
    copy.parent.mkdir()
    copy.write_bytes(inputs["png"].read_bytes())
    other = tmp_path / "other" / "plain.png"
    other.write_bytes(encode_image(skimage_photo("chelsea", 16), ".png"))
    summary = add_images([inputs["jpg"], copy, other], "style", ds_root)
    assert (summary.imported, summary.duplicates) == (1, 2)
    after = {p.name: p.read_bytes() for p in (ds_root / "style").iterdir()}
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"plain-1.png"}
    assert len(Dataset(ds_root).manifest.records("style")) == 3


def test_unreadable_files_are_reported_and_the_rest_imported(inputs: dict[str, Path], tmp_path: Path):
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rep = RecordingReporter()
    with pytest.raises(PartialFailure, match="2 of 10"):
        add_images([tmp_path / "in", tmp_path / "missing"], "photo", tmp_path / "ds", rep)
    assert len(rep.warnings) == 2
    assert any("broken.png" in w for w in rep.warnings) and any("missing" in w for w in rep.warnings)
    assert len(Dataset(tmp_path / "ds").manifest.records("photo")) == 8
    assert not (tmp_path / "ds" / "photo" / "broken.png").exists()


def test_set_names_are_checked(inputs: dict[str, Path], tmp_path: Path):
    for bad in ("Style", "smooth", "a b"):
        with pytest.raises(InputError):
            add_images([inputs["jpg"]], bad, tmp_path / "ds")
    add_images([inputs["jpg"]], "cartoon", tmp_path / "ds")
    assert [r.path for r in Dataset(tmp_path / "ds").manifest.records("cartoon")] == ["cartoon/plain.jpg"]


def test_cli_add_images(inputs: dict[str, Path], tmp_path: Path):
    runner = CliRunner()
    ds = tmp_path / "ds"
    res = runner.invoke(app, ["add-images", str(inputs["jpg"]), str(inputs["webp"]), "--set", "photo", "--dataset", str(ds)])
    assert res.exit_code == 0, res.output
    assert "2 imported" in res.output
    (tmp_path / "junk.jpg").write_text("hello")
    res = runner.invoke(app, ["add-images", str(tmp_path / "junk.jpg"), str(inputs["png"]), "--set", "photo", "--dataset", str(ds), "-q"])
    assert res.exit_code == 1 and "junk.jpg" in res.output
    assert len(Dataset(ds).manifest.records("photo")) == 3
    res = runner.invoke(app, ["add-images", str(inputs["png"]), "--set", "Bad!", "--dataset", str(ds)])
    assert res.exit_code == 2


def test_size_scales_large_images_down_and_keeps_small_ones(tmp_path):
    from pipelines.data.importing import add_images
    from pipelines.data.manifest import Dataset
    from pipelines.fileio import encode_image, read_image

    big = skimage_photo("astronaut", 400)  # 400x400
    small = skimage_photo("coffee", 64)  # 64x96
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.jpg").write_bytes(encode_image(big, ".jpg"))
    (tmp_path / "in" / "small.png").write_bytes(encode_image(small, ".png"))
    summary = add_images([tmp_path / "in"], "photo", tmp_path / "ds", size=128)
    assert summary.imported == 2 and summary.converted == 1 and summary.copied == 1  # small is stored as is
    recs = {r.path: r for r in Dataset.open(tmp_path / "ds").manifest.records("photo")}
    assert (recs["photo/big.jpg"].width, recs["photo/big.jpg"].height) == (128, 128)
    assert read_image(tmp_path / "ds" / "photo" / "big.jpg").shape == (128, 128, 3)
    assert (recs["photo/small.png"].width, recs["photo/small.png"].height) == (96, 64)  # never upscaled
    again = add_images([tmp_path / "in"], "photo", tmp_path / "ds", size=128)
    assert again.duplicates == 2 and again.imported == 0  # the same size gives the same bytes


def test_training_says_when_images_are_far_larger_than_the_crops(tmp_path):
    from pipelines.training.batches import scale_hints

    from conftest import build_tiny_dataset

    ds = build_tiny_dataset(tmp_path / "ds", size=300)
    (line,) = scale_hints(ds, ["photo"], 64)
    assert "'photo' images are 300 px on the short side" in line and "--size 128" in line
    assert scale_hints(ds, ["photo", "style"], 256) == []


def test_a_folder_without_images_is_an_error_not_an_empty_success(inputs: dict[str, Path], tmp_path: Path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(InputError, match="holds no image files"):
        add_images([empty], "photo", tmp_path / "ds")
    res = CliRunner().invoke(app, ["add-images", str(empty), "--set", "photo", "--dataset", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "empty" in res.output and "holds no image files" in " ".join(res.output.split())

    # Beside a folder with images, the empty one is one warning and the good images are imported (exit 1).
    rec = RecordingReporter()
    with pytest.raises(PartialFailure):
        add_images([empty, inputs["png"]], "photo", tmp_path / "ds2", rec)
    assert any("holds no image files" in w for w in rec.warnings)
    assert len(Dataset.open(tmp_path / "ds2").manifest.records("photo")) == 1


def test_a_mistyped_set_name_is_refused_unless_new_set(inputs: dict[str, Path], tmp_path: Path):
    """`--set photos` used to start a set no command reads, silently."""
    ds = tmp_path / "ds"
    res = CliRunner().invoke(app, ["add-images", str(inputs["png"]), "--set", "photos", "--dataset", str(ds)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "did you mean --set photo?" in text and "--new-set" in text
    assert not Dataset.open(ds, create=True).manifest.records("photos")
    res = CliRunner().invoke(app, ["add-images", str(inputs["png"]), "--set", "photos", "--new-set", "--dataset", str(ds)])
    assert res.exit_code == 0, res.output
    # Once the dataset has it, the name is known.
    res = CliRunner().invoke(app, ["add-images", str(inputs["jpg"]), "--set", "photos", "--dataset", str(ds)])
    assert res.exit_code == 0, res.output
    assert len(Dataset.open(ds).manifest.records("photos")) == 2

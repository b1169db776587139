"""Files whose names a manifest record cannot hold (issue 23): a backslash, bytes that are not UTF-8, a name that is
only dots. They are stored under a safe name (said in one line) and the other files of the same command go in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.data.manifest import Dataset, storable_stem
from pipelines.fileio import encode_image
from tests.conftest import make_video, numbered_frame, skimage_photo

ODD_NAMES = (b"back\\slash.png", b"bad\xff\xfe.png", b"..png", b"...png")
GOOD_NAMES = (b"good.png", b"also good.png")


def _write(folder: Path, names: tuple[bytes, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        # distinct bytes per file, so none is skipped as a duplicate of another
        img = skimage_photo(("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")[k], 24 + k)
        with open(os.path.join(os.fsencode(folder), name), "wb") as fh:
            fh.write(encode_image(img, ".png"))


@pytest.mark.parametrize("stem, stored", [
    ("good", "good"), ("back\\slash", "back_slash"), (os.fsdecode(b"bad\xff\xfe"), "bad__"), ("..", "image"),
    (".", "image"), (".hidden", "hidden"), ("naïve 写真", "naïve 写真"),
])
def test_storable_stem(stem: str, stored: str):
    assert storable_stem(stem) == stored


def test_add_images_stores_odd_names_and_imports_the_rest(tmp_path: Path):
    src = tmp_path / "in"
    _write(src, GOOD_NAMES + ODD_NAMES)
    # a folder import passes over hidden files ('..png'), so the dots-only names are also named on their own
    args = ["add-images", str(src), str(src / "..png"), str(src / "...png"), "--dataset", str(tmp_path / "ds"),
            "--set", "photo", "--new-set"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    paths = sorted(r.path for r in Dataset.open(tmp_path / "ds").manifest.records("photo"))
    assert paths == sorted(["photo/good.png", "photo/also good.png", "photo/back_slash.png", "photo/bad__.png",
                            "photo/image.png", "photo/image-1.png"])
    assert " ".join(res.output.split()).count("its name cannot be kept in the manifest") == 4
    res = CliRunner().invoke(app, ["dataset", str(tmp_path / "ds"), "--check"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("name", ["..mp4", "film\\x.mp4"])
def test_extract_frames_of_an_odd_film_name(tmp_path: Path, name: str):
    film = make_video(tmp_path / "v.mp4", [numbered_frame(k) for k in range(20)])
    odd = film.rename(tmp_path / name)
    res = CliRunner().invoke(app, ["extract-frames", str(odd), "--dataset", str(tmp_path / "ds"), "--every", "0.2"])
    assert res.exit_code == 0, res.output
    assert "its name cannot be kept in the manifest" in " ".join(res.output.split())
    records = Dataset.open(tmp_path / "ds").manifest.records("style")
    assert records and all(r.path.startswith(("style/film/", "style/film_x/")) for r in records)

"""make-sketch: XDoG line art as a derived set (Style2paints' training sketches)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.data.derived import DeriveOptions
from pipelines.data.manifest import Dataset, ImportedSource, make_record
from pipelines.data.sketches import make_sketch, sketch, xdog
from pipelines.fileio import encode_image, read_image, write_image

from conftest import anime_like, skimage_photo


def test_lines_where_the_edges_are_and_none_on_flat_areas():
    img = np.full((64, 96, 3), 200, np.uint8)
    img[:, 48:] = 60  # one vertical step edge at x = 48
    img[20:40, 10:30] = (230, 40, 40)  # a red square on the light side
    lines = xdog(img)
    assert lines.dtype == np.uint8 and lines.shape == (64, 96)
    dark = lines < 128
    assert dark[:, 46:50].any(axis=1).all()  # the step is drawn along its whole length...
    assert not dark[:, :8].any() and not dark[:, 60:].any() and not dark[45:, 10:30].any()  # ...flat areas are paper
    assert dark[19:21, 12:28].any() and dark[39:41, 12:28].any()  # the square's outline
    assert set(np.unique(lines)) <= {0, 255}  # a hard threshold: black lines on white


def test_thick_lines_are_wider_and_the_twin_is_gray_rgb():
    img = anime_like(skimage_photo("coffee", 96))
    thin, thick = sketch(img, {}), sketch(img, {"lines": "thick"})
    assert thin.shape == img.shape and (thin[:, :, 0] == thin[:, :, 2]).all()
    assert (thick[:, :, 0] < 128).sum() > 1.3 * (thin[:, :, 0] < 128).sum()
    assert ((thick <= thin) | (thin == 255)).all()  # thickening only adds ink


@pytest.fixture
def illustrations(tmp_path):
    for name in ("astronaut", "chelsea", "coffee"):
        write_image(tmp_path / "art" / f"{name}.png", anime_like(skimage_photo(name, 80)))
    res = CliRunner().invoke(app, ["add-images", str(tmp_path / "art"), "--set", "illustration", "--dataset", str(tmp_path / "ds"), "-q"])
    assert res.exit_code == 0, res.output
    return Dataset.open(tmp_path / "ds")


def test_make_sketch_is_incremental_and_bit_stable(illustrations, tmp_path):
    ds = illustrations
    first = make_sketch(ds.root, DeriveOptions(workers=1, format=".png"))
    assert (first.total, first.made, first.up_to_date) == (3, 3, 0)
    records = {r.path: r for r in Dataset.open(ds.root).manifest.records("sketch")}
    assert set(records) == {"sketch/astronaut.png", "sketch/chelsea.png", "sketch/coffee.png"}
    src = records["sketch/coffee.png"].source
    assert src.operation == "sketch" and src.source == "illustration/coffee.png"
    assert src.params["recipe"] == "xdog/1" and src.params["lines"] == "thin" and src.params["eps"] == -3.0
    again = make_sketch(ds.root, DeriveOptions(workers=2, format=".png"))  # the pool: the same bytes
    assert (again.made, again.up_to_date) == (0, 3)
    for path, rec in records.items():  # bit-stable: recomputed in another process, same hash
        (ds.root / path).unlink()
    redone = make_sketch(ds.root, DeriveOptions(workers=2, format=".png"))
    assert redone.made == 3
    assert {r.path: r.sha256 for r in Dataset.open(ds.root).manifest.records("sketch")} == {p: r.sha256 for p, r in records.items()}
    thick = make_sketch(ds.root, DeriveOptions(workers=1, format=".png", params={"lines": "thick"}))
    assert thick.made == 3  # another line style is another twin


def test_imported_sketches_are_left_alone_and_missing_sets_are_one_line(illustrations):
    ds = illustrations
    mine = encode_image(np.full((8, 8, 3), 255, np.uint8), ".png")
    (ds.root / "sketch").mkdir()
    (ds.root / "sketch" / "mine.png").write_bytes(mine)
    with ds.transaction() as m:
        m.put("sketch", make_record("sketch/mine.png", mine, 8, 8, ImportedSource(original="/me/mine.png")))
    make_sketch(ds.root, DeriveOptions(workers=1, format=".png"))
    assert (ds.root / "sketch" / "mine.png").exists()
    assert Dataset.open(ds.root).manifest.find("sketch", "sketch/mine.png") is not None
    res = CliRunner().invoke(app, ["make-sketch", str(ds.root), "--from", "cartoon"])
    assert res.exit_code == 2 and "no illustrations ('cartoon' set)" in " ".join(res.output.split())
    assert len(Dataset.open(ds.root).manifest.records("sketch")) == 4  # a wrong --from removes nothing


def test_cli_make_sketch_from_the_style_set(tmp_path):
    from conftest import build_tiny_dataset

    ds = build_tiny_dataset(tmp_path / "ds", size=48, with_smooth=False)
    res = CliRunner().invoke(app, ["make-sketch", str(ds.root), "--from", "style", "--lines", "thick"])
    assert res.exit_code == 0, res.output
    assert "6 drawn, 0 already up to date, 0 removed (6 illustrations)" in " ".join(res.output.split())
    img = read_image(ds.root / "sketch" / "coffee.png")
    assert img.shape[:2] == read_image(ds.root / "style" / "coffee.png").shape[:2] and (img < 128).any()

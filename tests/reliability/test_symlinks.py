"""A dataset received from someone else may hold symbolic links that lead out of it: no write, rename or delete
of the toolkit may go through them (issue: `dataset --prune` and make-smooth deleted and overwrote files outside)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.data.importing import add_images
from pipelines.data.inspect import prune
from pipelines.data.manifest import Dataset, DerivedSource, make_record
from pipelines.data.smoothing import SmoothOptions, make_smooth
from pipelines.errors import InputError, PartialFailure
from pipelines.fileio import encode_image, write_image
from pipelines.progress import RecordingReporter

from conftest import anime_like, skimage_photo


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for name in ("astronaut", "coffee"):
        write_image(src / f"{name}.png", anime_like(skimage_photo(name, 64)))
    add_images([src], "style", tmp_path / "ds")
    return tmp_path / "ds"


def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.mkdir(exist_ok=True)
    (v / "keep.png").write_bytes(b"precious")
    return v


def test_prune_never_deletes_through_a_planted_folder_link(dataset: Path, tmp_path: Path):
    v = victim(tmp_path)
    (dataset / "smooth").mkdir()
    os.symlink(v, dataset / "smooth" / "up")
    data = encode_image(np.zeros((8, 8, 3), np.uint8), ".png")
    ds = Dataset.open(dataset)
    with ds.transaction() as m:  # a crafted record: a twin under the link, whose source is gone
        m.put("smooth", make_record("smooth/up/keep.png", data, 8, 8, DerivedSource(
            operation="edge_smooth", source="style/gone.png", source_sha256="0" * 64, params={})))
    rec = RecordingReporter()
    prune(dataset, rec)
    assert (v / "keep.png").read_bytes() == b"precious"
    assert any("leads outside the dataset" in w for w in rec.warnings)


def test_make_smooth_never_writes_or_deletes_outside_through_links(dataset: Path, tmp_path: Path):
    v = victim(tmp_path)
    # smooth/ itself a link to a folder outside: refused before anything is written or deleted there.
    os.symlink(v, dataset / "smooth")
    before = sorted(p.name for p in v.iterdir())
    with pytest.raises((InputError, PartialFailure)):
        make_smooth(dataset, SmoothOptions(format=".png", workers=1), RecordingReporter())
    assert sorted(p.name for p in v.iterdir()) == before and (v / "keep.png").read_bytes() == b"precious"


def test_add_images_refuses_a_set_folder_that_leads_outside(tmp_path: Path):
    v = victim(tmp_path)
    ds = tmp_path / "ds"
    Dataset.open(ds, create=True)
    os.symlink(v, ds / "photo")
    src = tmp_path / "in" / "a.png"
    write_image(src, skimage_photo("rocket", 32))
    with pytest.raises(InputError, match="leads outside the dataset"):
        add_images([src], "photo", ds)
    assert sorted(p.name for p in v.iterdir()) == ["keep.png"]

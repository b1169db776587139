"""Two commands writing into one dataset at the same moment lose nothing (repeated, since races are rare)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from pipelines.data.inspect import summarize
from pipelines.data.manifest import Dataset
from pipelines.fileio import write_image

from conftest import make_video, numbered_frame

pytestmark = pytest.mark.slow
TRIALS = 4


def _import(args):
    folder, dataset, barrier = args
    from pipelines.data.importing import add_images

    barrier.wait()
    add_images([folder], "photo", dataset)


def _extract(args):
    film, dataset, barrier = args
    from pipelines.data.frames import ExtractOptions, extract_frames

    barrier.wait()
    extract_frames([film], dataset, ExtractOptions(every=0.2, dedupe=False, size=0))


def _race(target, jobs) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=target, args=((*job, barrier),)) for job in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_imports_of_files_with_the_same_names(tmp_path, trial):
    rng = np.random.default_rng(trial)
    for who in ("a", "b"):
        for i in range(12):
            write_image(tmp_path / who / f"img{i:02d}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    ds = tmp_path / "ds"
    Dataset.open(ds, create=True)
    _race(_import, [(tmp_path / "a", ds), (tmp_path / "b", ds)])
    records = Dataset.open(ds).manifest.records("photo")
    assert len(records) == 24 and len({r.sha256 for r in records}) == 24  # every image, none overwritten
    assert summarize(ds, check=True).ok


def test_two_films_with_the_same_name_extracted_at_once(tmp_path):
    for trial in range(TRIALS):
        root = tmp_path / str(trial)
        films = []
        for k, who in enumerate(("a", "b")):
            (root / who).mkdir(parents=True)
            films.append(make_video(root / who / "clip.mp4", [numbered_frame(100 * k + i) for i in range(25)]))
        ds = root / "ds"
        Dataset.open(ds, create=True)
        _race(_extract, [(films[0], ds), (films[1], ds)])
        records = Dataset.open(ds).manifest.records("style")
        folders = {r.path.rsplit("/", 1)[0] for r in records}
        assert len(records) == 10 and len(folders) == 2, (trial, sorted(r.path for r in records))
        assert summarize(ds, check=True).ok

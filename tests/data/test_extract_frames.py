"""extract-frames on generated films whose frames carry their own number (see test_video.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.errors import InputError, PartialFailure
from pipelines.fileio import read_image
from pipelines.data.frames import ExtractOptions, dhash, extract_frames
from pipelines.data.video import parse_time
from pipelines.data.manifest import Dataset
from pipelines.progress import RecordingReporter

from conftest import make_video, numbered_frame, read_number




def kept(ds_root: Path) -> list[tuple[int, float, int]]:
    """(frame_index, time, number read from the stored pixels) of every style record, by time."""
    ds = Dataset(ds_root)
    out = []
    for r in ds.manifest.records("style"):
        out.append((r.source.frame_index, r.source.time, read_number(read_image(ds.abspath(r.path)))))
    return sorted(out, key=lambda x: x[1])


class AbortAfter(RecordingReporter):
    """Asks the pipeline to stop after `n` should_abort() polls (i.e. about n decoded frames)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def should_abort(self) -> bool:
        self.n -= 1
        return self.n < 0


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    # 4 s at 25 fps, every frame different.
    return make_video(tmp_path_factory.mktemp("films") / "film.mp4", [numbered_frame(k) for k in range(100)])


def test_every_second_keeps_exact_frames(film: Path, tmp_path: Path):
    rep = RecordingReporter()
    summary = extract_frames([film], tmp_path / "ds", ExtractOptions(every=1.0, dedupe=False), rep)
    assert summary.kept == 4 and not rep.warnings
    assert kept(tmp_path / "ds") == [(0, 0.0, 0), (25, 1.0, 25), (50, 2.0, 50), (75, 3.0, 75)]
    files = sorted(p.name for p in (tmp_path / "ds" / "style" / "film").iterdir())
    assert files == [".film", "f0000000.jpg", "f0000025.jpg", "f0000050.jpg", "f0000075.jpg"]  # .film: the folder's owner


def test_start_end_accept_clock_times(film: Path, tmp_path: Path):
    opts = ExtractOptions(every=1.0, start="00:00:01.5", end="3", dedupe=False)
    extract_frames([film], tmp_path / "ds", opts)
    # Slots at 1.5 and 2.5 s fall between frames: the first frame after each is taken.
    assert [(i, n) for i, _, n in kept(tmp_path / "ds")] == [(38, 38), (63, 63)]
    assert parse_time("1:02:03.5") == 3723.5 and parse_time("02:03") == 123.0
    for bad in ("abc", "00:61:00", "-3"):
        with pytest.raises(InputError):
            parse_time(bad)
    with pytest.raises(InputError, match="--end"):
        ExtractOptions(start=5, end=2)


def test_rerun_adds_nothing_and_decodes_nothing(film: Path, tmp_path: Path):
    opts = ExtractOptions(every=0.5, dedupe=False)
    extract_frames([film], tmp_path / "ds", opts)
    before = Dataset(tmp_path / "ds").manifest.sets
    rep = RecordingReporter()
    summary = extract_frames([film], tmp_path / "ds", opts, rep)
    assert summary.films[0].skipped_complete and summary.films[0].decoded == 0
    assert Dataset(tmp_path / "ds").manifest.sets == before
    assert any("already extracted" in m for m in rep.infos)


def test_interrupted_run_resumes_to_the_same_result(film: Path, tmp_path: Path):
    opts = ExtractOptions(every=0.4, dedupe=True)
    extract_frames([film], tmp_path / "full", opts)
    reference = kept(tmp_path / "full")

    first = extract_frames([film], tmp_path / "ds", opts, AbortAfter(37))
    assert first.aborted and 0 < first.kept < len(reference)
    state = next(iter(Dataset(tmp_path / "ds").manifest.extractions.values()))
    assert not state.complete and state.done_until > 0
    second = extract_frames([film], tmp_path / "ds", opts, RecordingReporter())
    # Stopped at frame 36; the last kept frame (index 30) is decoded again, nothing before it.
    assert second.films[0].decoded == 100 - 30
    assert kept(tmp_path / "ds") == reference
    state = next(iter(Dataset(tmp_path / "ds").manifest.extractions.values()))
    assert state.complete and state.kept == len(reference)


def test_frames_written_but_not_committed_are_rewritten(film: Path, tmp_path: Path, monkeypatch):
    import pipelines.data.frames as frames

    opts = ExtractOptions(every=0.4, dedupe=False)
    monkeypatch.setattr(frames, "COMMIT_EVERY_FRAMES", 1000)
    Dataset.open(tmp_path / "ds", create=True)
    # Simulate a kill after the frames were written but before the manifest recorded them.
    original = frames.Dataset.transaction

    def failing(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(frames.Dataset, "transaction", failing)
    with pytest.raises(KeyboardInterrupt):
        extract_frames([film], tmp_path / "ds", opts)
    monkeypatch.setattr(frames.Dataset, "transaction", original)
    on_disk = sorted((tmp_path / "ds" / "style" / "film").iterdir())
    assert on_disk and Dataset(tmp_path / "ds").manifest.records("style") == []
    extract_frames([film], tmp_path / "ds", opts)
    assert len(kept(tmp_path / "ds")) == 10
    assert sorted((tmp_path / "ds" / "style" / "film").iterdir()) == on_disk  # same names, no copies


def test_dedupe_and_dark_and_flat_frames_are_skipped(tmp_path: Path):
    frames = []
    for k in range(100):
        if k < 25:
            frames.append(np.zeros((48, 64, 3), np.uint8) + 3)  # fade-in from black
        elif k < 50:
            frames.append(np.full((48, 64, 3), 200, np.uint8))  # white title card
        elif k < 75:
            frames.append(numbered_frame(0, scene=7))  # one still shot, identical frames
        else:
            frames.append(numbered_frame(0, scene=8))
    path = make_video(tmp_path / "still.mp4", frames)
    rep = RecordingReporter()
    summary = extract_frames([path], tmp_path / "ds", ExtractOptions(every=0.2), rep)
    r = summary.films[0]
    assert (r.dark, r.flat) == (5, 5)
    assert r.kept == 2 and r.duplicates == 8
    assert [i for i, _, _ in kept(tmp_path / "ds")] == [50, 75]
    # Without dedupe every still-shot slot is kept.
    extract_frames([path], tmp_path / "ds2", ExtractOptions(every=0.2, dedupe=False))
    assert len(kept(tmp_path / "ds2")) == 10


def test_scenes_keep_one_frame_per_shot(tmp_path: Path):
    # Three shots of 1 s each: a slow drift inside a shot, a hard cut between shots.
    frames = []
    for shot in range(3):
        for j in range(25):
            img = numbered_frame(shot, scene=shot).astype(np.int16)
            img[8:] = np.clip(img[8:] + j // 5, 0, 255)
            frames.append(img.astype(np.uint8))
    path = make_video(tmp_path / "shots.mp4", frames)
    extract_frames([path], tmp_path / "ds", ExtractOptions(scenes=True, settle=0.2, dedupe=False))
    assert [(i, n) for i, _, n in kept(tmp_path / "ds")] == [(5, 0), (30, 1), (55, 2)]


def test_rotation_and_size(tmp_path: Path):
    path = make_video(tmp_path / "phone.mp4", [numbered_frame(k) for k in range(10)], rotation=90)
    extract_frames([path], tmp_path / "ds", ExtractOptions(every=1.0))
    rec = Dataset(tmp_path / "ds").manifest.records("style")[0]
    img = read_image(tmp_path / "ds" / rec.path)
    assert img.shape == (64, 48, 3) and (rec.width, rec.height) == (48, 64)
    assert read_number(np.rot90(img, -1)) == 0
    extract_frames([path], tmp_path / "ds", ExtractOptions(every=1.0, size=24))
    small = [r for r in Dataset(tmp_path / "ds").manifest.records("style") if r.path.endswith("_s24.jpg")]
    assert [(r.width, r.height) for r in small] == [(24, 32)]


def test_dhash_separates_different_frames():
    a, b = numbered_frame(1, scene=1)[8:], numbered_frame(1, scene=2)[8:]
    import cv2

    h = [dhash(cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA)) for x in (a, b)]
    assert bin(h[0] ^ h[1]).count("1") > 12


def test_corrupt_film_among_good_ones(film: Path, tmp_path: Path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(film.read_bytes()[:300] + b"\x00" * 2000)
    rep = RecordingReporter()
    with pytest.raises(PartialFailure):
        extract_frames([bad, film], tmp_path / "ds", ExtractOptions(every=2.0), rep)
    assert len(rep.warnings) == 1 and "broken.mp4" in rep.warnings[0]
    assert len(kept(tmp_path / "ds")) == 2


def test_cli_extract_frames(film: Path, tmp_path: Path):
    runner = CliRunner()
    missing = tmp_path / "missing.mkv"
    ds = tmp_path / "ds"
    res = runner.invoke(app, ["extract-frames", str(missing), str(film), "--dataset", str(ds), "--every", "1", "-q"])
    assert res.exit_code == 1, res.output
    assert "missing.mkv" in res.output
    assert len(kept(ds)) == 4
    manifest = json.loads((ds / "manifest.json").read_text())
    assert list(manifest["extractions"].values())[0]["complete"] is True
    res = runner.invoke(app, ["extract-frames", str(film), "--dataset", str(ds), "--start", "5", "--end", "1"])
    assert res.exit_code == 2 and "--end" in res.output
    res = runner.invoke(app, ["extract-frames", str(film), "--dataset", str(ds), "--every", "0"])
    assert res.exit_code == 2  # typer range check


def test_what_users_trip_over_is_said(film: Path, tmp_path: Path):
    """A still image, a --start past the end, and the same film at another --size: each says so."""
    from pipelines.fileio import write_image

    runner = CliRunner()
    ds = tmp_path / "ds"
    photo = tmp_path / "photo.jpg"
    write_image(photo, numbered_frame(7))
    res = runner.invoke(app, ["extract-frames", str(photo), "--dataset", str(ds)])
    text = " ".join(res.output.split())
    assert "a still image, not a film" in text and "animegan add-images" in text and "1 frame kept" in text

    late = runner.invoke(app, ["extract-frames", str(film), "--dataset", str(ds), "--start", "20"])
    assert late.exit_code == 1
    assert "--start 20 s is past the end of the film (4.0 s long)" in " ".join(late.output.split())

    first = runner.invoke(app, ["extract-frames", str(film), "--dataset", str(ds), "--every", "1", "--no-dedupe"])
    assert first.exit_code == 0 and "4 frames kept" in first.output and "warning" not in first.output
    second = runner.invoke(app, ["extract-frames", str(film), "--dataset", str(ds), "--every", "1", "--no-dedupe", "--size", "24"])
    text = " ".join(second.output.split())
    assert second.exit_code == 0 and "already in the style set from another extraction (4 frames at --size 720)" in text

    dark = runner.invoke(app, ["extract-frames", str(film), "--dataset", str(ds), "--black-level", "255", "--size", "30"])
    assert "no frame kept (all skipped: " in " ".join(dark.output.split())

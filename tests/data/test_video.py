"""pipelines.data.video on short videos generated here with PyAV: each frame carries its own number as
black/white blocks, so a test can tell exactly WHICH frame it got back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.data.video import iter_frames, iter_raw_frames, probe_video

from conftest import H, W, make_video, numbered_frame, read_number



@pytest.fixture(scope="module")
def vid25(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "v25.mp4", [numbered_frame(k) for k in range(60)])


def test_probe_reports_geometry_rate_and_length(vid25: Path):
    info = probe_video(vid25)
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == Fraction(25)
    assert info.frame_count == 60
    assert info.duration == pytest.approx(60 / 25, abs=0.05)
    assert info.has_audio is False and info.codec == "h264"


def test_frame_times_are_exact_at_25_fps(vid25: Path):
    frames = list(iter_frames(vid25))
    assert [f.index for f in frames] == list(range(60))
    assert [f.time for f in frames] == [k / 25 for k in range(60)]
    assert [read_number(f.image) for f in frames] == list(range(60))
    assert frames[0].image.shape == (H, W, 3) and frames[0].image.dtype == np.uint8


def test_frame_times_are_exact_at_ntsc_rate(tmp_path: Path):
    path = make_video(tmp_path / "ntsc.mp4", [numbered_frame(k) for k in range(12)], fps=Fraction(30000, 1001))
    assert probe_video(path).fps == Fraction(30000, 1001)
    frames = list(iter_frames(path))
    assert [f.time for f in frames] == [float(Fraction(1001 * k, 30000)) for k in range(12)]
    assert [f.index for f in frames] == list(range(12))


def test_start_end_seek_returns_exactly_the_span(vid25: Path):
    # 1.0 s is past several keyframes (gop 10): the decoder must seek and drop the lead-in.
    frames = list(iter_frames(vid25, start=1.0, end=1.4))
    assert [f.index for f in frames] == list(range(25, 35))
    assert [read_number(f.image) for f in frames] == list(range(25, 35))
    # A start between frames gives the first frame after it.
    assert next(iter_frames(vid25, start=1.01)).index == 26


def test_select_skips_conversion_and_short_side_downscales(vid25: Path):
    frames = list(iter_frames(vid25, select=lambda i, t: i % 20 == 0, short_side=24))
    assert [f.index for f in frames] == [0, 20, 40]
    assert frames[0].image.shape == (24, 32, 3)
    gray = list(iter_frames(vid25, end=0.1, format="gray"))
    assert gray[0].image.shape == (H, W)


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_rotation_is_applied(tmp_path: Path, rotation: int):
    path = make_video(tmp_path / f"rot{rotation}.mp4", [numbered_frame(k) for k in range(3)], rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((H, W) if rotation in (90, 270) else (W, H))
    frames = list(iter_frames(path))
    assert frames[0].image.shape == (info.height, info.width, 3)
    # Counter-clockwise display rotation: undoing it gives the frame as encoded.
    upright = [np.rot90(f.image, -rotation // 90) for f in frames]
    assert [read_number(u) for u in upright] == [0, 1, 2]
    raw = next(iter_raw_frames(path))
    assert raw.size == (info.width, info.height)
    assert raw.to_gray(info.width // 2, info.height // 2).shape == (info.height // 2, info.width // 2)


def test_probe_rejects_missing_non_video_and_garbage(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        probe_video(tmp_path / "nope.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    for bad in (text, garbage):
        with pytest.raises(InputError) as err:
            probe_video(bad)
        assert str(bad) in str(err.value)
        with pytest.raises(InputError):
            list(iter_frames(bad))

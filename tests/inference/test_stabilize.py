"""The video stabilizer: removes flicker, changes nothing that is already steady, restarts at cuts; and
`stylize` of a video with it (options, chroma, frames kept)."""

from __future__ import annotations


import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.evaluation.temporal import warping_error
from pipelines.inference.stabilize import Stabilizer
from pipelines.models.flow import DisFlow

from conftest import skimage_photo
from test_stylize_video import make_video, weights  # noqa: F401 (a fixture: a tiny AnimeGANv2 file)

runner = CliRunner()


def panning(name: str = "astronaut", n: int = 10, step: int = 2, size: int = 96) -> list[np.ndarray]:
    photo = skimage_photo(name, size + n * step + 8)
    return [np.ascontiguousarray(photo[4: 4 + size, k * step: k * step + size]) for k in range(n)]


def flickering(frames: list[np.ndarray], sigma: float = 12.0, seed: int = 0) -> list[np.ndarray]:
    """A per-frame 'stylization' whose texture changes every frame: smoothing plus fresh noise."""
    rng = np.random.default_rng(seed)
    return [np.clip(cv2.GaussianBlur(f, (5, 5), 1.2) + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8)
            for f in frames]


def test_the_stabilizer_removes_most_of_the_added_flicker():
    frames = panning()
    styled = flickering(frames)
    st = Stabilizer()
    out = [st.step(f, s) for f, s in zip(frames, styled)]
    before = warping_error(frames, styled, DisFlow())
    after = warping_error(frames, out, DisFlow())
    assert after.added < 0.4 * before.added
    assert np.array_equal(out[0], styled[0])  # the first frame is the per-frame output


def test_a_steady_video_is_left_unchanged():
    frame = skimage_photo("coffee", 80)
    styled = cv2.GaussianBlur(frame, (5, 5), 1.2)
    st = Stabilizer(0.9)
    for _ in range(6):
        assert np.array_equal(st.step(frame, styled), styled)


def test_a_cut_restarts_from_the_current_frame():
    a, b = panning("astronaut", 5), panning("coffee", 5)
    styled = flickering(a + b, seed=3)
    st = Stabilizer()
    infos = []
    for k, (f, s) in enumerate(zip(a + b, styled)):
        out, info = st.blend(s, st.motion(f))
        infos.append(info)
        if k == len(a):  # the first frame after the cut is its own output, nothing of the old shot in it
            assert np.array_equal(out, s)
    assert [i.cut for i in infos] == [True] + [False] * 4 + [True] + [False] * 4


def test_strength_zero_is_frame_by_frame_and_out_of_range_is_refused():
    frames = panning(n=4)
    styled = flickering(frames)
    st = Stabilizer(0.0)
    assert all(np.array_equal(st.step(f, s), s) for f, s in zip(frames, styled))
    with pytest.raises(ValueError):
        Stabilizer(1.0)


def test_new_content_takes_the_current_frame():
    """An object appearing in a static shot is not faded in from the frames before it (no ghosting)."""
    frame = skimage_photo("coffee", 96)
    later = frame.copy()
    later[30:60, 30:60] = (250, 20, 20)  # appears at once
    st = Stabilizer(0.9)
    st.step(frame, frame)
    out = st.step(later, later)
    assert np.abs(out[35:55, 35:55].astype(int) - later[35:55, 35:55]).max() <= 1


def test_stylize_video_options(tmp_path, weights):
    src = make_video(tmp_path / "clip.mp4", seconds=1.0, size=(64, 48), fps=10)
    base = ["stylize", str(src), "-w", str(weights), "-q"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "a"), "--chroma", "444"])
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "a" / "clip.mp4")) as c:
        v = c.streams.video[0]
        assert v.codec_context.pix_fmt == "yuv444p" and v.frames == 10
        assert c.streams.audio  # audio kept as before
    r = runner.invoke(app, base + ["-o", str(tmp_path / "b"), "--stabilize", "0"])
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "b" / "clip.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p" and c.streams.video[0].frames == 10
    r = runner.invoke(app, base + ["-o", str(tmp_path / "c"), "--stabilize", "1.5"])
    assert r.exit_code == 2 and not (tmp_path / "c" / "clip.mp4").exists()


def test_a_video_stopped_midway_leaves_nothing_and_the_next_run_makes_it_whole(tmp_path, weights):
    from pipelines.errors import AnimeganError
    from pipelines.inference.stylize import StylizeOptions, stylize
    from pipelines.progress import Reporter

    class StopAfterFirstBatch(Reporter):
        def __init__(self):
            self.batches = 0

        def advance(self, key, n=1, **kw):
            self.batches += 1

        def should_abort(self):
            return self.batches >= 1

    src = make_video(tmp_path / "clip.mp4", seconds=1.0, size=(64, 48), fps=10)
    opts = StylizeOptions(weights=weights, out_dir=tmp_path / "out", batch_size=2)
    with pytest.raises(AnimeganError, match="interrupted"):
        stylize([src], opts, StopAfterFirstBatch())
    assert not list((tmp_path / "out").glob("*")) and not list((tmp_path / "out").glob(".*"))
    summary = stylize([src], opts)
    assert summary.done == 1
    with av.open(str(tmp_path / "out" / "clip.mp4")) as c:
        assert c.streams.video[0].frames == 10

"""`animegan stylize` on videos: frame count, rate and times, audio kept and trimmed, rotation."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.models.animegan import GeneratorV2
from pipelines.inference.made_with import RECORD_NAME
from pipelines.inference.stylize import StylizeOptions, stylize

runner = CliRunner()


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(GeneratorV2().state_dict(), path)
    return path


def make_video(path: Path, seconds: float = 2.0, size=(64, 48), fps: int = 10, audio: bool = True,
               rotation: int = 0) -> Path:
    """A moving gradient at `fps`, plus a 440 Hz AAC sine of the same length."""
    w, h = size
    n = round(seconds * fps)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotation:
            vs.set_display_rotation(rotation)
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        yy, xx = np.mgrid[0:h, 0:w]
        for k in range(n):
            img = np.stack([(xx * 4 + k * 10) % 256, (yy * 5) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio:
            sr, chunk = 16000, 1024
            t = np.arange(round(seconds * sr)) / sr
            pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for i in range(0, len(pcm), chunk):
                fr = av.AudioFrame.from_ndarray(pcm[None, i:i + chunk], format="fltp", layout="mono")
                fr.sample_rate, fr.pts = sr, i
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def read_back(path: Path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.width, f.height, float(f.time)) for f in c.decode(v)]
        rate = v.average_rate
    with av.open(str(path)) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        audio_secs = 0.0
        if a is not None:
            audio_secs = sum(f.samples for f in c.decode(a)) / a.rate
        codec = a.codec_context.name if a is not None else None
    return frames, rate, audio_secs, codec


def test_video_with_audio_through_cli(tmp_path: Path, weights: Path):
    src = make_video(tmp_path / "clip.mp4")
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(weights), "--out", str(tmp_path / "o"),
                              "--preset", "ultrafast", "-q"])
    assert res.exit_code == 0, res.output
    frames, rate, audio_secs, codec = read_back(tmp_path / "o" / "clip.mp4")
    assert len(frames) == 20 and rate == 10
    assert {(w, h) for w, h, _ in frames} == {(64, 48)}
    assert [round(t, 3) for _, _, t in frames] == [round(k / 10, 3) for k in range(20)]
    assert codec == "aac" and abs(audio_secs - 2.0) < 0.15
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".") and not p.name.startswith(RECORD_NAME)]


def test_trim_and_rotation(tmp_path: Path, weights: Path):
    src = make_video(tmp_path / "phone.mov", rotation=90)
    s = stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "o", start=0.5, end=1.5,
                                      preset="ultrafast"))
    out = tmp_path / "o" / "phone.mov"
    assert s.outputs == [out]
    frames, rate, audio_secs, _ = read_back(out)
    assert len(frames) == 10 and rate == 10
    # Upright: 48 wide, 64 high, and no rotation left in the file.
    assert {(w, h) for w, h, _ in frames} == {(48, 64)}
    assert frames[0][2] == pytest.approx(0.0, abs=1e-3)
    assert abs(audio_secs - 1.0) < 0.15
    with av.open(str(out)) as c:
        f = next(c.decode(video=0))
        assert getattr(f, "rotation", 0) == 0


def test_the_progress_total_is_the_frames_written(tmp_path: Path, weights: Path):
    """An end between two frames (1.04 s at 10 fps: frames 0.5 ... 1.0) once showed 6 of 5 frames, 120 %."""
    from pipelines.progress import RecordingReporter

    src = make_video(tmp_path / "clip.mp4")
    reporter = RecordingReporter()
    stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "o", start=0.5, end=1.04, preset="ultrafast"),
            reporter)
    frames, *_ = read_back(tmp_path / "o" / "clip.mp4")
    key = f"video:{src}"
    assert len(frames) == 6 and reporter.totals[key] == 6 and reporter.advanced[key] == 6


def test_a_start_past_the_end_says_how_long_the_video_is(tmp_path: Path, weights: Path, monkeypatch):
    from pipelines.errors import PartialFailure
    from pipelines.inference import stylize as stylize_module
    from pipelines.progress import RecordingReporter

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was loaded for a job with nothing to do")

    monkeypatch.setattr(stylize_module, "_make_engine", no_engine)  # said before the weights load
    src = make_video(tmp_path / "clip.mp4")  # 2 s
    reporter = RecordingReporter()
    with pytest.raises(PartialFailure, match="1 input"):
        stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "o", start=5), reporter)
    assert not (tmp_path / "o" / "clip.mp4").exists()
    assert any(f"{src}: no frames from 5 s to the end (the video is 2.0 s long)" in w for w in reporter.warnings), \
        reporter.warnings


def test_corrupt_video_is_one_warning(tmp_path: Path, weights: Path):
    bad = tmp_path / "in" / "bad.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage" * 4)
    make_video(tmp_path / "in" / "ok.mkv", seconds=0.5, audio=False)
    res = runner.invoke(app, ["stylize", str(tmp_path / "in"), "--weights", str(weights),
                              "--out", str(tmp_path / "o"), "--preset", "ultrafast", "-q"])
    assert res.exit_code != 0 and "bad.mp4" in res.output
    assert (tmp_path / "o" / "ok.mkv").exists() and not (tmp_path / "o" / "bad.mp4").exists()
    frames, _, audio_secs, codec = read_back(tmp_path / "o" / "ok.mkv")
    assert len(frames) == 5 and codec is None


def test_a_trimmed_video_is_not_up_to_date_for_the_whole_video(tmp_path: Path, weights: Path):
    src = make_video(tmp_path / "clip.mp4", seconds=2.0, audio=False)
    args = ["stylize", str(src), "--weights", str(weights), "--out", str(tmp_path / "o"), "--preset", "ultrafast"]
    res = runner.invoke(app, [*args, "--end", "1"])
    assert res.exit_code == 0, res.output
    assert len(read_back(tmp_path / "o" / "clip.mp4")[0]) == 10
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "1 stylized, 0 up to date" in res.output, res.output
    assert len(read_back(tmp_path / "o" / "clip.mp4")[0]) == 20
    res = runner.invoke(app, args)
    assert "0 stylized, 1 up to date" in res.output

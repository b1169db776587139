"""Video flicker: the warping error (Lai et al. 2018) and the flow test that decides which pixels count."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.errors import InputError
from pipelines.evaluation.temporal import pair_error, warping_error
from pipelines.models.flow import DisFlow, make_flow, reliable, warp

from conftest import skimage_photo

runner = CliRunner()


def panning(n: int = 8, step: int = 3, size: int = 96) -> list[np.ndarray]:
    """A window moving `step` px right per frame over a real photo: a pure translation."""
    photo = skimage_photo("astronaut", size + n * step + 8)
    return [np.ascontiguousarray(photo[4: 4 + size, k * step: k * step + size]) for k in range(n)]


def blur(img: np.ndarray) -> np.ndarray:
    """A shift-equivariant stylization stand-in."""
    return cv2.GaussianBlur(img, (5, 5), 1.2)


def test_static_video_has_no_warping_error():
    frame = skimage_photo("coffee", 80)
    e = warping_error([frame] * 5, [blur(frame)] * 5, DisFlow())
    assert e.output == 0.0 and e.input == 0.0 and e.pairs == 4
    assert e.kept > 0.95


def test_translation_stylized_by_a_shift_equivariant_filter_adds_no_flicker():
    frames = panning()
    e = warping_error(frames, [blur(f) for f in frames], DisFlow())
    # What remains is interpolation error of the flow's warp, no larger than the input's own.
    assert e.output < 2e-4 and e.added < 1e-4
    assert e.kept > 0.6


def test_per_frame_noise_is_flicker():
    frames = panning()
    rng = np.random.default_rng(0)
    noisy = [np.clip(blur(f) + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in frames]
    e = warping_error(frames, noisy, DisFlow())
    clean = warping_error(frames, [blur(f) for f in frames], DisFlow())
    assert e.output > 10 * clean.output and e.added > 3e-3


def test_occluded_pixels_fail_the_flow_test_and_do_not_count():
    h, w = 40, 60
    forward = np.zeros((h, w, 2), np.float32)
    forward[..., 0] = 2.0
    backward = np.zeros((h, w, 2), np.float32)
    backward[..., 0] = -2.0
    backward[10:20, 22:32] = (7.0, 5.0)  # what lands here does not come back: occluded
    ok = reliable(forward, backward)
    assert not ok[10:20, 20:30].any()
    assert ok[30:, 5:50].all()  # elsewhere the flow is confirmed
    assert not ok[:, -2:].any()  # these pixels leave the frame
    a = np.zeros((h, w, 3), np.uint8)
    b = a.copy()
    b[~ok] = 255  # a huge difference, but only where the test failed
    assert pair_error(a, b, ok) == 0.0
    assert pair_error(a, b, np.ones_like(ok)) > 0


def test_motion_boundaries_do_not_count():
    h, w = 40, 60
    forward = np.zeros((h, w, 2), np.float32)
    forward[:, 30:, 0] = 6.0  # two regions moving differently
    backward = -warp(forward, forward)  # consistent both ways
    ok = reliable(forward, backward)
    assert not ok[:, 29:31].any()
    assert ok[:, 5:20].all()


def test_raft_without_torchvision_is_one_line(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision.models.optical_flow", None)  # import fails as if absent
    with pytest.raises(InputError, match="needs torchvision"):
        make_flow("raft", tmp_path / "raft.pth")
    with pytest.raises(InputError, match="--flow-weights"):
        make_flow("raft")


def test_raft_refuses_a_file_that_is_not_raft(tmp_path):
    pytest.importorskip("torchvision")
    bad = tmp_path / "bad.pt"
    import torch

    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="not torchvision RAFT weights"):
        make_flow("raft", bad)


def test_raft_from_a_local_state_dict_gives_flow_of_the_frame_size(tmp_path):
    pytest.importorskip("torchvision")
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    flow = make_flow("raft", path)
    assert flow.name == "raft-small"
    a = skimage_photo("coffee", 60)[:60, :70]
    out = flow(a, a)
    assert out.shape == (60, 70, 2) and out.dtype == np.float32 and np.isfinite(out).all()


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_eval_of_videos_reports_the_warping_error_of_output_and_input(tmp_path):
    frames = panning(n=6)
    rng = np.random.default_rng(1)
    src = write_video(tmp_path / "in.mp4", frames)
    (tmp_path / "steady").mkdir()
    (tmp_path / "flicker").mkdir()
    write_video(tmp_path / "steady" / "in.mp4", [blur(f) for f in frames])
    write_video(tmp_path / "flicker" / "in.mp4",
                [np.clip(blur(f) + rng.normal(0, 15, f.shape), 0, 255).astype(np.uint8) for f in frames])
    r = runner.invoke(app, ["eval", str(tmp_path / "steady" / "in.mp4"), str(tmp_path / "flicker" / "in.mp4"),
                            "-r", str(src), "--json", "-q"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    steady, flicker = data["videos"]
    assert steady["frame_pairs"] == 5 and flicker["frame_pairs"] == 5
    assert steady["input_warp_error"] == flicker["input_warp_error"]
    assert flicker["added_warp_error"] > 10 * max(steady["added_warp_error"], 1e-5)
    assert "warp_error" in data["protocol"] and data["count"] == 2
    r = runner.invoke(app, ["eval", str(tmp_path / "flicker"), "-r", str(tmp_path), "-q"])  # folders, by name
    assert r.exit_code == 0, r.output
    assert "added_warp_error" in r.output


def test_eval_of_a_video_without_its_input_is_one_line(tmp_path):
    src = write_video(tmp_path / "in.mp4", panning(n=3))
    r = runner.invoke(app, ["eval", str(src), "--style", str(tmp_path)])
    assert r.exit_code == 2
    assert "--reference INPUT_VIDEO" in r.output and "Traceback" not in r.output


def test_eval_pairs_photos_and_a_video_given_as_separate_references(tmp_path):
    """`stylize ./photos clip.mp4` writes both into one folder; its inputs are two references, each paired by name."""
    frames = panning(n=4)
    photos, out = tmp_path / "photos", tmp_path / "stylized"
    photos.mkdir(), out.mkdir()
    clip = write_video(tmp_path / "clip.mp4", frames)
    write_video(out / "clip.mp4", [blur(f) for f in frames])
    for name in ("a", "b"):
        cv2.imwrite(str(photos / f"{name}.png"), frames[0][..., ::-1])
        cv2.imwrite(str(out / f"{name}.jpg"), blur(frames[0])[..., ::-1])
    r = runner.invoke(app, ["eval", str(out), "-r", str(photos), "-r", str(clip), "--json", "-q"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["unpaired"] == [] and data["count"] == 3 and data["videos"][0]["frame_pairs"] == 3
    assert {Path(row["reference"]).name for row in data["images"]} == {"a.png", "b.png"}
    # The photos alone: the video is the one output said to lack its input, and the image figures still come
    r = runner.invoke(app, ["eval", str(out), "-r", str(photos), "-q"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "no reference video for 1 of 1 output videos" in said and "no reference image" not in said
    assert "psnr" in said

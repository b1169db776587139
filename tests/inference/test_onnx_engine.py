"""`stylize --weights model.onnx`: the toolkit's exports and AnimeGANv3-style graphs under ONNX Runtime.

Every graph here is made in the test: an NHWC graph with AnimeGANv3's input name whose skip connection only
broadcasts at multiples of 8 (the failure AnimeGANv3's users report at odd sizes), our own export, a
fixed-size graph, a Sigmoid graph, and graphs of the wrong contract.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from animegan_cli.app import app  # noqa: E402
from pipelines.errors import InputError  # noqa: E402
from pipelines.fileio import read_image  # noqa: E402
from pipelines.inference.onnx_engine import OnnxEngine  # noqa: E402
from pipelines.inference.stylize import StylizeOptions, stylize  # noqa: E402
from pipelines.progress import RecordingReporter  # noqa: E402

from test_stylize import community_weights, photo, write  # noqa: E402
from test_stylize_video import make_video, read_back  # noqa: E402

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
CPU = "cpu"


class V3Like(nn.Module):
    """NHWC in and out, RGB in [-1, 1]; three stride-2 convs and three 2x upsamplings, with the input added
    back at full size: any side that is not a multiple of 8 fails to broadcast inside the graph."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 3, 2, 1),
                                  nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 3, 2, 1))
        self.up = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, H, W, 3]
        c = x.permute(0, 3, 1, 2)
        h = F.interpolate(self.down(c), scale_factor=8.0, mode="nearest")
        return torch.tanh(self.up(h) + c * 2.0).permute(0, 2, 3, 1)


class Sigmoid01(nn.Module):
    """NCHW RGB in [0, 1] -> [0, 1] through a Sigmoid: 1 - x, kept away from the ends."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.logit((1 - x).clamp(0.02, 0.98)))


class TwoInputs(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def to_onnx(module: nn.Module, args: tuple, path: Path, names: list[str], output: str = "out",
            dynamic: dict | None = None) -> Path:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buf, input_names=names, output_names=[output], opset_version=17,
                          dynamic_axes=dynamic, dynamo=False)
    path.write_bytes(buf.getvalue())
    return path


def v3_like(path: Path, name: str = "AnimeGANv3_input:0") -> Path:
    return to_onnx(V3Like(), (torch.zeros(1, 64, 64, 3),), path, [name], "generator/main/out:0",
                   {name: {0: "n", 1: "h", 2: "w"}, "generator/main/out:0": {0: "n", 1: "h", 2: "w"}})


def reference_v3(rgb: np.ndarray) -> np.ndarray:
    """What the V3-like graph gives for `rgb` when padded by reflection to multiples of 8 and cropped back."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb).float()[None] / 127.5 - 1  # [1, H, W, 3]
    ph, pw = -(-h // 8) * 8, -(-w // 8) * 8
    xp = F.pad(x.permute(0, 3, 1, 2), (0, pw - w, 0, ph - h), mode="reflect").permute(0, 2, 3, 1)
    with torch.no_grad():
        y = V3Like()(xp)[0, :h, :w]
    return ((y + 1) * 127.5).round().clamp(0, 255).byte().numpy()


def test_animeganv3_style_graph_at_odd_sizes_matches_the_network(tmp_path: Path):
    graph = v3_like(tmp_path / "AnimeGANv3_Hayao_36.onnx")
    engine = OnnxEngine(graph, CPU)
    c = engine.contract
    assert (c.layout, c.multiple, c.input_name, c.fixed_size) == ("NHWC", 8, "AnimeGANv3_input:0", None)
    assert c.value_range == (-1.0, 1.0) and c.range_source == "Tanh output"

    src = tmp_path / "in"
    a = write(src / "a.png", photo("astronaut", 61, 45))
    b = write(src / "b.jpg", photo("coffee", 100, 77))
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(graph), "--out", str(tmp_path / "out"),
                              "--onnx-backend", "onnxruntime"])  # auto may pick PyTorch here (test_onnx_torch)
    assert res.exit_code == 0, res.output
    assert "onnxruntime" in res.output and "NHWC" in res.output
    for inp, out in ((a, tmp_path / "out" / "a.png"), (b, tmp_path / "out" / "b.jpg")):
        got, want = read_image(out), reference_v3(read_image(inp))
        assert got.shape == read_image(inp).shape
        tol = 2 if out.suffix == ".png" else 12  # JPEG's own loss on top
        assert np.abs(got.astype(int) - want).mean() <= tol


def test_an_onnx_graph_stylizes_photos_without_importing_torch(tmp_path: Path):
    """The ONNX path of `stylize` never loads PyTorch: its import is a third of a short run's time, and its idle
    OpenMP threads would compete with ONNX Runtime's."""
    graph = v3_like(tmp_path / "v3.onnx")
    big = photo("astronaut", 301, 203)
    write(tmp_path / "in" / "a.png", big)
    args = ["animegan", "stylize", str(tmp_path / "in"), "--weights", str(graph), "--out", str(tmp_path / "out"),
            "--tile", "96"]  # tiled too: the blending is numpy
    code = ("import runpy, sys\n"
            f"sys.argv = {args!r}\n"
            "try:\n    runpy.run_module('animegan_cli', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout
    assert read_image(tmp_path / "out" / "a.png").shape == big.shape


def test_our_export_runs_through_onnx_runtime_like_the_pytorch_weights(tmp_path: Path):
    weights = community_weights(tmp_path / "v2.pt")
    res = runner.invoke(app, ["export", str(weights), str(tmp_path / "v2.onnx")])
    assert res.exit_code == 0, res.output
    src = write(tmp_path / "in" / "cat.png", photo("chelsea", 53, 37))
    for name, w in (("torch", weights), ("onnx", tmp_path / "v2.onnx")):
        res = runner.invoke(app, ["stylize", str(src), "--weights", str(w), "--out", str(tmp_path / name),
                                  "--precision", "fp32", "-q"])
        assert res.exit_code == 0, res.output
    diff = np.abs(read_image(tmp_path / "onnx" / "cat.png").astype(int) - read_image(tmp_path / "torch" / "cat.png"))
    assert diff.mean() <= 1.0 and diff.max() <= 2
    engine = OnnxEngine(tmp_path / "v2.onnx", CPU)
    assert (engine.contract.layout, engine.contract.multiple, engine.contract.range_source) == ("NCHW", 1, "metadata")


def test_large_image_is_tiled_and_a_fixed_size_graph_takes_any_size(tmp_path: Path):
    fixed = to_onnx(V3Like(), (torch.zeros(1, 64, 64, 3),), tmp_path / "fixed.onnx", ["input"])  # 64x64 only
    engine = OnnxEngine(fixed, CPU)
    assert engine.contract.fixed_size == (64, 64) and engine.contract.fixed_batch == 1
    rgb = photo("rocket", 150, 97)
    assert engine.needs_tiling(97, 150)
    out = engine.stylize_image(rgb)
    assert out.shape == rgb.shape
    # Tiles of a network without normalization blend into the untiled answer away from nothing but seams.
    assert np.abs(out.astype(int) - reference_v3(rgb)).mean() < 4
    small = photo("rocket", 40, 30)  # smaller than the graph's size: padded up, cropped back
    assert engine.stylize_image(small).shape == small.shape

    dynamic = OnnxEngine(v3_like(tmp_path / "v3.onnx"), CPU, tile=64)  # --tile on a dynamic graph
    out = dynamic.stylize_image(rgb)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - reference_v3(rgb)).mean() < 4


def test_sigmoid_graph_is_read_as_zero_to_one(tmp_path: Path):
    graph = to_onnx(Sigmoid01(), (torch.rand(1, 3, 32, 32),), tmp_path / "inv.onnx", ["x"], "y",
                    {"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}})
    engine = OnnxEngine(graph, CPU)
    assert engine.contract.value_range == (0.0, 1.0) and engine.contract.range_source == "Sigmoid output"
    rgb = photo("astronaut", 33, 29)
    out = engine.stylize_image(rgb)
    want = 255 - rgb.astype(int)
    inner = (rgb > 8) & (rgb < 247)  # away from the clamp at 0.02 / 0.98
    assert np.abs(out.astype(int) - want)[inner].max() <= 1


def test_video_with_audio_through_an_onnx_graph(tmp_path: Path):
    graph = v3_like(tmp_path / "v3.onnx")
    src = make_video(tmp_path / "clip.mp4", size=(62, 46))
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(graph), "--out", str(tmp_path / "o"),
                              "--preset", "ultrafast", "-q"])
    assert res.exit_code == 0, res.output
    frames, rate, audio_secs, codec = read_back(tmp_path / "o" / "clip.mp4")
    assert len(frames) == 20 and {(w, h) for w, h, _ in frames} == {(62, 46)}
    assert codec == "aac" and abs(audio_secs - 2.0) < 0.15


def test_graphs_of_another_contract_are_one_line(tmp_path: Path):
    two = to_onnx(TwoInputs(), (torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)), tmp_path / "two.onnx", ["a", "b"])
    src = write(tmp_path / "in" / "a.png", photo("astronaut", 32, 32))
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(two), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "two.onnx" in lines[0] and "2 inputs" in lines[0] and "'a'" in lines[0], res.output
    assert not (tmp_path / "o" / "a.png").exists()

    gray = to_onnx(nn.Conv2d(1, 1, 1), (torch.zeros(1, 1, 8, 8),), tmp_path / "gray.onnx", ["g"])
    with pytest.raises(InputError, match="no axis of 3 colour channels"):
        OnnxEngine(gray, CPU)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07\x12\x04junk" * 10)
    with pytest.raises(InputError, match="ONNX Runtime cannot load"):
        OnnxEngine(tmp_path / "junk.onnx", CPU)
    with pytest.raises(InputError, match="its own precision"):
        stylize([src], StylizeOptions(weights=v3_like(tmp_path / "v3.onnx"), out_dir=tmp_path / "o", precision="bf16"),
                RecordingReporter())

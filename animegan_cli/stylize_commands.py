"""`animegan stylize` and `animegan export`; see docs/stylize.md."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .console import RichReporter, out_console, run
from .options import MAX_PIXELS_HELP, Device, apply_max_pixels


class Fmt(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class OnnxBackend(str, Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    pytorch = "pytorch"


class Preset(str, Enum):
    ultrafast = "ultrafast"
    superfast = "superfast"
    veryfast = "veryfast"
    faster = "faster"
    fast = "fast"
    medium = "medium"
    slow = "slow"
    slower = "slower"
    veryslow = "veryslow"


class Chroma(str, Enum):
    c420 = "420"
    c444 = "444"


def stylize_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files, folders (recursive) and videos."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Run folder, exported .safetensors, community AnimeGANv2 .pt, or an ONNX generator (.onnx: our exports, AnimeGANv3's releases; see --onnx-backend). Default: the newest run under ./runs."),
    out: Path = typer.Option(Path("stylized"), "--out", "-o", help="Output folder (folder inputs keep their structure under it)."),
    fmt: Optional[Fmt] = typer.Option(None, "--format", help="Image output format. Default: each input's own."),
    max_side: Optional[int] = typer.Option(None, "--max-side", min=16, help="Downscale first so the long side is at most this many pixels."),
    max_memory: Optional[float] = typer.Option(None, "--max-memory", min=0.05, help="GiB for the model's activations and tiling buffers; every pass (whole images, the statistics pass of tiling, tiles) stays within it. [default: half the free RAM, at most 4 GiB on CPU; 70% of free GPU memory]", show_default=False),
    tile: Optional[int] = typer.Option(None, "--tile", min=64, max=8192, help="Stylize in tiles of this side. Default: only images too large for memory are tiled."),
    overlap: int = typer.Option(64, "--overlap", min=0, max=512, help="Overlap between tiles in pixels (blended)."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", min=1, max=256, help="Images or frames of equal size per forward pass."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help="auto: fp16 on CUDA; on CPU bf16 where the CPU computes it natively (AVX512-BF16, AMX), else fp32; checked against fp32 on the first image (fp32 when bf16 changes the output). ONNX graphs: auto or fp32 (auto is bf16 only where PyTorch runs the graph on a CPU with native bf16)."),
    onnx_backend: OnnxBackend = typer.Option(OnnxBackend.auto, "--onnx-backend", help="What runs an .onnx graph. auto: on CPUs where PyTorch's convolutions are often faster (NNPACK on AVX2 CPUs; bf16 on CPUs with native bf16), PyTorch for image jobs that would take ONNX Runtime 8 s or more, checked against ONNX Runtime's output first; videos and jobs of 16 images or more race the two on their first forwards and keep the faster; else ONNX Runtime."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="Video: H.264 constant rate factor (lower = better, larger)."),
    preset: Preset = typer.Option(Preset.medium, "--preset", help="Video: x264 speed/size preset."),
    stabilize: float = typer.Option(0.7, "--stabilize", min=0.0, max=0.95, help="Video: how strongly each frame follows the previous result along the input's optical flow, where the flow is reliable (against flicker; cuts, occlusions and new content take the current frame). 0: frame by frame."),
    chroma: Chroma = typer.Option(Chroma.c420, "--chroma", help="Video: 420 plays everywhere; 444 keeps full colour resolution (no subsampling flicker at outlines; plays in VLC, mpv, editors, not in Safari/QuickTime)."),
    start: str = typer.Option("0", "--start", help="Video: where to begin, seconds or HH:MM:SS[.fff]."),
    end: Optional[str] = typer.Option(None, "--end", help="Video: where to stop (exclusive), seconds or HH:MM:SS[.fff]. Default: the end.", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that are already up to date."),
    max_pixels: Optional[float] = typer.Option(None, "--max-pixels", min=0.000001, help=MAX_PIXELS_HELP, show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or info lines (warnings still shown)."),
) -> None:
    """Stylize images, folders and videos with a trained generator.

    Outputs keep each input's name (videos become .mp4 unless their container holds H.264) and are
    written atomically; an output made from the same input, weights and options is skipped, so a
    stopped run resumes and a changed option redoes what it changes. Video keeps its frame times
    and its audio, and is stabilized against flicker (--stabilize).
    """
    from pipelines.inference.stylize import StylizeOptions, stylize

    apply_max_pixels(max_pixels)
    opts = StylizeOptions(
        weights=weights, out_dir=out, format=fmt.value if fmt else None, max_side=max_side, tile=tile,
        overlap=overlap, batch_size=batch_size, device=device.value, precision=precision.value, crf=crf,
        preset=preset.value, start=start, end=end, overwrite=overwrite, max_memory=max_memory,
        stabilize=stabilize, chroma=chroma.value, onnx_backend=onnx_backend.value,
    )
    with RichReporter(quiet=quiet) as reporter:
        summary = run(lambda: stylize(inputs, opts, reporter))
    if not quiet:
        out_console.print(f"{summary.done} stylized, {summary.skipped} up to date, {summary.failed} failed -> {out}")


def export_cmd(
    weights: Path = typer.Argument(..., help="Run folder, exported .safetensors or community AnimeGANv2 .pt."),
    out: Path = typer.Argument(..., help="The .onnx file to write."),
    opset: int = typer.Option(17, "--opset", min=13, max=21, help="ONNX opset version."),
) -> None:
    """Export a generator to ONNX (dynamic batch, height and width; input and output RGB in [-1, 1])."""
    from pipelines.inference.export_onnx import export_onnx

    path = run(lambda: export_onnx(weights, out, opset=opset))
    out_console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("stylize")(stylize_cmd)
    app.command("export")(export_cmd)

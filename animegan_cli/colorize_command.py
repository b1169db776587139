"""`animegan colorize`; see docs/colorize.md. Options only; the work is `pipelines.inference.colorize`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .console import RichReporter, out_console, run
from .options import MAX_PIXELS_HELP, Device, apply_max_pixels
from .stylize_commands import Fmt, Precision


class MatchColors(str, Enum):
    auto = "auto"
    off = "off"
    lab = "lab"
    histogram = "histogram"
    palette = "palette"


class Invert(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


def colorize_cmd(
    sketches: list[Path] = typer.Argument(..., help="Sketch images and folders (recursive)."),
    reference: Path = typer.Option(..., "--reference", "-r", help="A colour image whose colours every sketch takes, or a folder of them paired with the sketches by relative path or file name."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Style2paints run folder or exported .safetensors. Default: the newest Style2paints run under ./runs.", show_default=False),
    out: Path = typer.Option(Path("colorized"), "--out", "-o", help="Output folder (folder inputs keep their structure under it)."),
    keep_lines: bool = typer.Option(True, "--keep-lines/--no-keep-lines", help="Multiply the sketch's own lines over the colour, at full resolution."),
    match_colors: MatchColors = typer.Option(MatchColors.auto, "--match-colors", help="After the network, move the colours onto the reference's: lab = each CIELAB channel's mean and spread; histogram = each RGB channel's values, rank for rank; palette = the colours as a whole moved onto the reference's (its colours in its proportions, none it lacks); off = the network's own; auto = palette when the colorizer's own training found it following its references loosely, else off (docs/colorize.md)."),
    invert: Invert = typer.Option(Invert.auto, "--invert", help="White lines on black: auto detects it from the paper's brightness."),
    max_side: Optional[int] = typer.Option(None, "--max-side", min=32, max=8192, help="Longest side the network colours at; the colour is scaled back to the sketch's size (lines stay exact with --keep-lines). [default: the scale the model was trained at (short side image-size x train-scale), else 1024]", show_default=False),
    fmt: Optional[Fmt] = typer.Option(None, "--format", help="Output format. Default: each sketch's own.", show_default=False),
    batch_size: int = typer.Option(4, "--batch-size", "-b", min=1, max=256, help="Sketches of equal size and reference per forward pass."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help="The colorizer's precision: auto = fp16 on CUDA, bf16 on CPUs that compute it natively, else fp32; a reduced precision chosen by auto is checked once against fp32 on the first sketch, and a batch that overflows is redone in fp32."),
    vgg_weights: Optional[str] = typer.Option(None, "--vgg-weights", help="VGG19 for the references' style vectors: imagenet, random or a PATH. [default: the one the model was trained with]", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that are already up to date."),
    max_pixels: Optional[float] = typer.Option(None, "--max-pixels", min=0.000001, help=MAX_PIXELS_HELP, show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or info lines (warnings still shown)."),
) -> None:
    """Colour line-art sketches in the colours of a reference image, with a Style2paints model.

    Any size, grayscale, RGBA or white-on-black sketches; outputs keep each sketch's name, are written
    atomically and never over an input; an output made from the same sketch, reference, weights and
    options is skipped, so a stopped run resumes and a changed option redoes what it changes.
    """
    from pipelines.inference.colorize import ColorizeOptions, colorize

    apply_max_pixels(max_pixels)
    opts = ColorizeOptions(
        reference=reference, weights=weights, out_dir=out, format=fmt.value if fmt else None, keep_lines=keep_lines,
        match_colors=match_colors.value, invert=invert.value, max_side=max_side, batch_size=batch_size,
        device=device.value, precision=precision.value, vgg_weights=vgg_weights, overwrite=overwrite,
    )
    with RichReporter(quiet=quiet) as reporter:
        summary = run(lambda: colorize(sketches, opts, reporter))
    if not quiet:
        out_console.print(f"{summary.done} colored, {summary.skipped} up to date, {summary.failed} failed -> {out}")


def register(app: typer.Typer) -> None:
    app.command("colorize")(colorize_cmd)

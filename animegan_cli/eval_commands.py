"""`animegan eval` and `animegan runs`: how good outputs are, and where each training run stands (docs/eval.md)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .console import RichReporter, out_console, run


class FlowChoice(str, Enum):
    dis = "dis"
    raft = "raft"


def eval_cmd(
    outputs: list[Path] = typer.Argument(..., help="Output images, videos or folders (as stylize or colorize wrote them)."),
    reference: Optional[list[Path]] = typer.Option(None, "--reference", "-r", help="The inputs the outputs were made from (files or folders, as stylize was given them; repeat for several), paired by relative path: PSNR, SSIM, MS-SSIM, edge correlation, colour shift; videos: flicker.", show_default=False),
    style: Optional[Path] = typer.Option(None, "--style", help="A dataset folder: distances of the outputs (and inputs) to its style set.", show_default=False),
    style_set: str = typer.Option("style", "--style-set", help="The dataset set --style and --fid-against compare with."),
    vgg_weights: Optional[str] = typer.Option(None, "--vgg-weights", help="With --style: also a VGG19 Gram-matrix distance (imagenet, random or a PATH, as for train).", show_default=False),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="The FID Inception file pt_inception-2015-12-05-6726825d.pth: adds FID and KID (needs the torch-fidelity package).", show_default=False),
    fid_against: Optional[Path] = typer.Option(None, "--fid-against", help="Folder of images (or a dataset: its --style-set) FID/KID compare with. Default: --style.", show_default=False),
    flow: FlowChoice = typer.Option(FlowChoice.dis, "--flow", help="Videos: optical flow for the warping error. dis: OpenCV's DIS (no weights); raft: torchvision RAFT from --flow-weights."),
    flow_weights: Optional[Path] = typer.Option(None, "--flow-weights", help="Videos: torchvision raft_large or raft_small state-dict file (with --flow raft).", show_default=False),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=2, help="Videos: measure at most this many frames of each.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: metrics (name -> mean), per-image and per-video values, protocol."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Measure outputs with figures published work uses: PSNR, SSIM, MS-SSIM, edges, colour shift, style distances, FID/KID; video flicker (warping error)."""
    from pipelines.evaluation.evaluate import EvalOptions, evaluate, format_table, require_outputs

    options = EvalOptions(references=tuple(reference or ()), style=style, style_set=style_set, vgg_weights=vgg_weights,
                          inception_weights=inception_weights, fid_against=fid_against, flow=flow.value,
                          flow_weights=flow_weights, max_frames=max_frames)
    with RichReporter(quiet=quiet or as_json) as reporter:
        result = run(lambda: evaluate(outputs, options, reporter))
        run(lambda: require_outputs(result))
    if as_json:
        out_console.print_json(json.dumps(result.to_json()))
    else:
        n = len(result.images) + len(result.videos)
        out_console.print(f"{n} output{'s' if n != 1 else ''} measured" + (f", {result.failed} unreadable" if result.failed else ""))
        for line in format_table(result):
            out_console.print(line, markup=False)
    if result.failed:
        raise typer.Exit(1)


def runs_cmd(
    folder: Path = typer.Argument(Path("runs"), help="A folder of run folders, or one run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of the table."),
) -> None:
    """Where each training run stands: model, style, steps, last losses and evaluation, state."""
    from pipelines.training.runs import list_runs

    runs = list_runs(folder)
    if as_json:
        out_console.print_json(json.dumps([r.to_json() for r in runs]))
        return
    if not runs:
        out_console.print(f"no training runs in {folder} (a run folder holds config.json)", markup=False)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("run", "model", "style", "steps", "G loss", "D loss", "edge", "PSNR", "state"):
        table.add_column(col, justify="right" if col in ("steps", "G loss", "D loss", "edge", "PSNR") else "left")
    for r in runs:
        g = r.losses.get("total_g", r.losses.get("total_g_init"))
        d = r.losses.get("total_d")
        table.add_row(
            Path(r.path).name, r.model + (" (fine-tune)" if r.init_weights else ""), r.style if r.model in ("animegan", "animeganv2") else "-",
            f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step),
            _num(g), _num(d), _num(r.eval.get("edge_corr"), ".3f"), _num(r.eval.get("psnr"), ".1f"),
            r.state + (f" ({', '.join(r.warnings)})" if r.warnings else ""),
        )
    out_console.print(table)


def _num(v: float | None, fmt: str = ".4g") -> str:
    return "-" if v is None else format(v, fmt)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("runs")(runs_cmd)

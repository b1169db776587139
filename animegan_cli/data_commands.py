"""`animegan dataset` and `animegan make-smooth`; see docs/make-smooth.md and docs/manifest.md."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from pipelines.errors import DatasetError
from pipelines.progress import plural

if TYPE_CHECKING:
    from pipelines.data.inspect import DatasetSummary, PruneResult

from .console import RichReporter, err_console, out_console, run
from .options import pick_dataset



class OutputFormat(str, Enum):
    same = "same"
    png = "png"
    jpg = "jpg"
    webp = "webp"
    bmp = "bmp"
    tif = "tif"


def dataset_command(
    dataset_arg: Optional[Path] = typer.Argument(None, metavar="DATASET", help="Dataset folder (default: ./dataset).", show_default=False),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Dataset folder; same as the argument.", show_default=False),
    check: bool = typer.Option(False, "--check", help="Re-hash every file; exit non-zero when anything is off."),
    prune: bool = typer.Option(False, "--prune", help="Repair the manifest after hand edits: drop records whose file was deleted (and their smooth twins), re-record edited files (their twins are remade by make-smooth), delete stale temporary files."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (for scripts) instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Summarize a dataset: images per set, pixel sizes, bytes on disk, missing or changed files,
    smooth images out of date. With --check, also verify every file's hash (exit code 3 on problems)."""
    from pipelines.data.inspect import MAX_LISTED_PROBLEMS, summarize
    from pipelines.data.inspect import prune as prune_dataset

    root = pick_dataset(dataset_arg, dataset)
    if prune:
        with RichReporter(quiet=quiet or as_json) as reporter:
            pruned = run(lambda: prune_dataset(root, reporter=reporter))
        _print_prune(pruned, root)
    with RichReporter(quiet=quiet or as_json) as reporter:
        summary = run(lambda: summarize(root, check=check, reporter=reporter))
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_summary(summary)
    if summary.problems:
        for line in summary.problems[:MAX_LISTED_PROBLEMS]:
            err_console.print(f"problem: {line}", style="yellow", markup=False, soft_wrap=True)
        if len(summary.problems) > MAX_LISTED_PROBLEMS:
            err_console.print(f"... and {plural(len(summary.problems) - MAX_LISTED_PROBLEMS, 'more problem')}", style="yellow", soft_wrap=True)
        if check:
            err_console.print(f"error: {summary.root}: {plural(len(summary.problems), 'problem')} found", style="bold red", markup=False, soft_wrap=True)
            raise typer.Exit(DatasetError.exit_code)


def make_smooth_command(
    dataset_arg: Optional[Path] = typer.Argument(None, metavar="DATASET", help="Dataset folder (default: ./dataset).", show_default=False),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Dataset folder; same as the argument.", show_default=False),
    size: Optional[int] = typer.Option(None, "--size", min=16, max=8192, help="Resize so the short side is SIZE before smoothing (aspect ratio kept). Default: keep the stored size.", show_default=False),
    fmt: OutputFormat = typer.Option(OutputFormat.png, "--format", "-f", help="Output format. png (lossless) keeps the smoothing exact; 'same' keeps each source's format (smaller files for JPEG frames, but JPEG re-encoding blurs the result)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, max=256, help="Worker processes. Default: all cores.", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write the edge-smoothed twin of every style image under DATASET/smooth/ (AnimeGAN's smooth set).

    Incremental: images whose twin is up to date (same source hash and options) are skipped; twins
    whose style record was removed (for example by `animegan dataset --prune` after style files were
    deleted) are deleted. Unreadable images are reported and skipped (exit code 1)."""
    from pipelines.data.smoothing import SmoothOptions, make_smooth

    root = pick_dataset(dataset_arg, dataset)
    options = SmoothOptions(size=size, format=None if fmt is OutputFormat.same else fmt.value, workers=workers)
    with RichReporter(quiet=quiet) as reporter:
        s = run(lambda: make_smooth(root, options, reporter))
        reporter.info(f"{s.smoothed} smoothed, {s.up_to_date} already up to date, {s.removed} removed ({plural(s.total, 'style image')})")


class Lines(str, Enum):
    thin = "thin"
    thick = "thick"


def make_sketch_command(
    dataset_arg: Optional[Path] = typer.Argument(None, metavar="DATASET", help="Dataset folder (default: ./dataset).", show_default=False),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Dataset folder; same as the argument.", show_default=False),
    source: str = typer.Option("illustration", "--from", help="The set to draw: illustration (add-images --set illustration), or style to use the frames of extract-frames."),
    lines: Lines = typer.Option(Lines.thin, "--lines", help="thin: XDoG lines about a pixel wide; thick: each line a pixel wider (ink rather than pencil)."),
    size: Optional[int] = typer.Option(None, "--size", min=16, max=8192, help="Resize so the short side is SIZE first (aspect ratio kept). [default: keep the stored size]", show_default=False),
    fmt: OutputFormat = typer.Option(OutputFormat.png, "--format", "-f", help="Output format (png keeps the hard black-and-white lines exact)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, max=256, help="Worker processes. [default: all cores]", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Draw the line-art twin of every illustration under DATASET/sketch/ (XDoG; docs/colorize.md).

    Incremental like make-smooth: sketches whose illustration and settings are unchanged are skipped;
    sketches whose illustration record was removed are deleted. Sketches you import yourself
    (`add-images --set sketch`, same relative paths as their illustrations) are left alone."""
    from pipelines.data.derived import DeriveOptions
    from pipelines.data.sketches import make_sketch

    root = pick_dataset(dataset_arg, dataset)
    options = DeriveOptions(size=size, format=None if fmt is OutputFormat.same else fmt.value, workers=workers,
                            params={"lines": lines.value})
    with RichReporter(quiet=quiet) as reporter:
        s = run(lambda: make_sketch(root, options, reporter, source_set=source))
        reporter.info(f"{s.made} drawn, {s.up_to_date} already up to date, {s.removed} removed ({plural(s.total, 'illustration')})")


def _print_prune(r: PruneResult, root: Path) -> None:
    def said(items: list[str], what: str) -> None:
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            err_console.print(f"{what} ({len(items)}): {shown}", markup=False, soft_wrap=True)

    said(r.removed, "dropped from the manifest, file gone")
    said(r.removed_twins, "derived twins deleted with their source")
    said(r.rerecorded, "re-recorded, file changed")
    said(r.stale_twins, "twins now out of date (run `animegan make-smooth` to remake them)")
    said(r.temporaries, "stale temporary files deleted")
    for line in r.unreadable:
        err_console.print(f"warning: {line} (left in the manifest)", style="yellow", markup=False, soft_wrap=True)
    if not r.changed:
        err_console.print(f"{root}: nothing to prune: every record matches its file", markup=False)


def _spread(s) -> str:
    if s.min == s.max:
        return str(s.min)
    med = int(s.median) if float(s.median).is_integer() else s.median
    return f"{s.min} / {med} / {s.max}"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_summary(s: DatasetSummary) -> None:
    # One column per set and one row per figure: datasets have a handful of sets, so this stays
    # narrow enough for an 80-column terminal.
    table = Table(title=f"{s.root}  (schema {s.schema_version}, updated {s.updated})", title_justify="left")
    table.add_column("")
    for st in s.sets:
        table.add_column(st.name, justify="right")
    rows = [
        ("images", lambda st: str(st.count)),
        ("width min / median / max", lambda st: _spread(st.width)),
        ("height min / median / max", lambda st: _spread(st.height)),
        ("on disk", lambda st: _bytes(st.bytes_on_disk)),
        ("missing files", lambda st: str(st.missing)),
        ("size changed (stale)", lambda st: str(st.stale)),
        ("contents changed", lambda st: "-" if st.modified is None else str(st.modified)),
        ("out of date with source", lambda st: "-" if st.out_of_date is None else str(st.out_of_date)),
        ("untracked image files", lambda st: str(st.untracked)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(st) for st in s.sets))
    if s.sets:
        out_console.print(table)
    else:
        out_console.print(f"{s.root}: the dataset has no images yet")
    if s.extractions:
        out_console.print(f"extract-frames state kept for {s.extractions} film(s)")
    if s.temporaries:
        n = s.temporaries
        out_console.print(f"{n} stale temporary file{'s' if n != 1 else ''} left by a killed command (--prune deletes them)")
    how = "hashes verified" if s.checked else "sizes compared (--check verifies hashes)"
    out_console.print(f"{how}: {'ok' if s.ok else plural(len(s.problems), 'problem')}")


def register(app: typer.Typer) -> None:
    app.command("dataset")(dataset_command)
    app.command("make-smooth")(make_smooth_command)
    app.command("make-sketch")(make_sketch_command)

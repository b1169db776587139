"""Data intake commands: `add-images` and `extract-frames` (see docs/data.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipelines.data import DEFAULT_DATASET

from .console import RichReporter, run
from .options import MAX_PIXELS_HELP, apply_max_pixels

DATASET_HELP = "Dataset folder (created if missing)."
QUIET_HELP = "No progress bars or summary lines; warnings and errors are still printed."


def add_images(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    set_name: str = typer.Option(..., "--set", help="Set to add to: photo, style, cartoon, illustration, sketch, or a set the dataset already has."),
    new_set: bool = typer.Option(False, "--new-set", help="Allow a set name that is neither known nor in the dataset yet (otherwise refused as a likely typo)."),
    dataset: Path = typer.Option(DEFAULT_DATASET, "--dataset", "-d", help=DATASET_HELP),
    size: Optional[int] = typer.Option(None, "--size", min=32, max=8192, help="Scale images whose short side is longer down to this many pixels (e.g. 512 for phone photos: training crops --image-size squares at the stored scale). Default: keep every size.", show_default=False),
    max_pixels: Optional[float] = typer.Option(None, "--max-pixels", min=0.000001, help=MAX_PIXELS_HELP, show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Copy images into a dataset set (DS/<set>/), skipping files already in it.

    JPEG, PNG, WebP, BMP and TIFF are read; EXIF rotation, grayscale, transparency and 16-bit are
    turned into upright 8-bit RGB. Unreadable files are reported and the rest imported (exit 1).
    """
    from pipelines.data.importing import add_images as add

    apply_max_pixels(max_pixels)
    with RichReporter(quiet=quiet) as reporter:
        run(lambda: add(paths, set_name, dataset, reporter, size=size, new_set=new_set))


def extract_frames(
    movies: list[Path] = typer.Argument(..., help="Video files (mp4, mkv, mov, avi, webm, ...)."),
    dataset: Path = typer.Option(DEFAULT_DATASET, "--dataset", "-d", help=DATASET_HELP),
    every: float = typer.Option(2.0, "--every", min=0.001, help="Seconds between sampled frames (ignored with --scenes)."),
    start: str = typer.Option("0", "--start", help="Where to begin: seconds or HH:MM:SS[.fff]."),
    end: Optional[str] = typer.Option(None, "--end", help="Where to stop (exclusive): seconds or HH:MM:SS[.fff]; default: the end."),
    size: int = typer.Option(720, "--size", min=0, max=8192, help="Short side of saved frames in pixels (never upscaled); 0 keeps the original size."),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="Skip frames that look like the last kept one (dHash)."),
    dedupe_distance: int = typer.Option(6, "--dedupe-distance", min=0, max=64, help="Max differing dHash bits (of 64) for a frame to count as a duplicate."),
    black_level: float = typer.Option(16.0, "--black-level", min=0.0, max=255.0, help="Skip frames whose mean brightness (0-255) is below this; 0 keeps all."),
    flat_fraction: float = typer.Option(0.9, "--flat-fraction", min=0.01, max=1.0, help="Skip frames with at least this share of pixels of one flat tone (fades, title cards); 1 keeps all."),
    scenes: bool = typer.Option(False, "--scenes/--no-scenes", help="One frame per shot (after each detected cut) instead of one every --every seconds."),
    scene_threshold: float = typer.Option(30.0, "--scene-threshold", min=1.0, max=255.0, help="Mean brightness change (0-255) between consecutive frames that counts as a cut."),
    settle: float = typer.Option(0.5, "--settle", min=0.0, max=60.0, help="With --scenes: seconds after a cut before the shot's frame is taken."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Sample frames of films into the style set (DS/style/<film>/), resumably.

    Re-running the same command adds nothing; an interrupted run continues where it stopped.
    A corrupt or unreadable film is reported and the others still processed (exit 1).
    """
    from pipelines.data.frames import ExtractOptions, extract_frames as extract

    with RichReporter(quiet=quiet) as reporter:
        run(lambda: extract(
            movies,
            dataset,
            ExtractOptions(
                every=every, start=start, end=end, size=size, dedupe=dedupe, dedupe_distance=dedupe_distance,
                black_level=black_level, flat_fraction=flat_fraction, scenes=scenes,
                scene_threshold=scene_threshold, settle=settle,
            ),
            reporter,
        ))


def register(app: typer.Typer) -> None:
    app.command("add-images")(add_images)
    app.command("extract-frames")(extract_frames)

"""`animegan demo`: the whole pipeline on sample photos shipped by scikit-image."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import RichReporter, out_console, run


def demo(
    out: Path = typer.Option(Path("animegan-demo"), "--out", help="Folder for the clip, dataset, run, stylized photos and contact sheet."),
    steps: int = typer.Option(80, "--steps", min=1, max=100_000, help="Training steps (generator updates, both phases)."),
    image_size: int = typer.Option(64, "--image-size", min=32, max=1024, help="Training crop side in pixels (a multiple of 4)."),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu."),
    vgg_weights: str = typer.Option(None, "--vgg-weights", help="imagenet, random or a PATH; default: imagenet when torch's cache has the file, else random (no download).", show_default=False),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars."),
) -> None:
    """Run the whole pipeline offline in a few minutes: clip -> frames -> smoothing -> training -> stylized photos.

    Uses real photos that ship with scikit-image, makes a short flat-shaded clip from them as the
    "film", trains a small AnimeGANv2 on the CPU (or GPU), and ends with a contact sheet of the
    photos beside their stylized versions. Running it again resumes where it stopped.
    """
    from pipelines.demo import DemoOptions, run_demo

    options = DemoOptions(out=out, steps=steps, image_size=image_size, device=device, vgg_weights=vgg_weights)
    with RichReporter(quiet=quiet) as reporter:
        result = run(lambda: run_demo(options, reporter))
    out_console.print(f"contact sheet:   {result.contact_sheet}")
    out_console.print(f"stylized photos: {result.stylized}")
    out_console.print(f"training run:    {result.run}  (samples/, metrics.jsonl, generator.safetensors)")
    out_console.print(f"dataset:         {result.dataset}  (animegan dataset {result.dataset})")
    if result.vgg_weights == "random":
        out_console.print("note: a few minutes of CPU training with random VGG weights shows the whole pipeline, not a "
                          "finished style; real styles need the ImageNet VGG weights and hours on a GPU (docs/training.md)")
    out_console.print(f"next: animegan stylize YOUR_PHOTOS --weights {result.run}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

"""`animegan demo`: the whole pipeline on sample photos shipped by scikit-image."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import RichReporter, out_console, run

DEMO_STEPS = 1300  # pipelines.demo.DemoOptions.steps (not imported here: the CLI starts without torch)


def demo(
    out: Path = typer.Option(Path("animegan-demo"), "--out", help="Folder for the clip, dataset, run, stylized photos and contact sheet."),
    steps: int = typer.Option(DEMO_STEPS, "--steps", min=1, max=100_000, help="Training steps (generator updates, both phases)."),
    image_size: int = typer.Option(64, "--image-size", min=32, max=1024, help="Training crop side in pixels (a multiple of 4)."),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu."),
    vgg_weights: str = typer.Option(None, "--vgg-weights", help="imagenet, random or a PATH; default: imagenet when torch's cache has the file, else random (no download).", show_default=False),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars."),
) -> None:
    """Run the whole pipeline offline in a few minutes: clip -> frames -> smoothing -> training -> stylized photos.

    Uses real photos that ship with scikit-image: a cartoon look computed from some of them becomes a short
    clip (the "film"), White-box Cartoonization learns it briefly on the CPU (or GPU), and photos it never
    trained on are stylized, measured (animegan eval, and how far each moved towards its known answer: the
    look applied to it) and shown in a labelled contact sheet: photo, output, answer. Running it again
    resumes where it stopped.
    """
    from pipelines.demo import DemoOptions, run_demo

    options = DemoOptions(out=out, steps=steps, image_size=image_size, device=device, vgg_weights=vgg_weights)
    with RichReporter(quiet=quiet) as reporter:
        result = run(lambda: run_demo(options, reporter))
    m = result.metrics
    out_console.print(f"measured:        edges kept {m['edge_corr']:.2f} (edge correlation, 1 = all), colour shift "
                      f"{m['color_shift']:.1f} (CIEDE2000), PSNR {m['psnr']:.1f} dB, SSIM {m['ssim']:.2f} against the photos")
    g = result.gaps
    out_console.print(f"learned:         colour gap closed {g['color_closed']:.2f}, outline gap closed {g['outline_closed']:.2f}, "
                      f"SSIM to the answer {g['ssim_output']:.2f} (photo {g['ssim_photo']:.2f}); 0 = the photo, 1 = the "
                      f"known answer, on photos it never trained on")
    out_console.print(f"contact sheet:   {result.contact_sheet}")
    out_console.print(f"stylized photos: {result.stylized}")
    out_console.print(f"training run:    {result.run}  (samples/, metrics.jsonl, generator.safetensors)")
    out_console.print(f"dataset:         {result.dataset}  (animegan dataset {result.dataset})")
    if result.vgg_weights == "random":
        out_console.print("note: a few minutes of CPU training with random VGG weights shows every stage and a first move "
                          "towards the style, not a finished style: that takes the ImageNet VGG weights, thousands of "
                          "frames and hours on a GPU (docs/training.md)")
    out_console.print(f"next: animegan stylize YOUR_PHOTOS --weights {result.run}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

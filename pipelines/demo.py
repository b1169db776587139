"""`animegan demo`: the whole pipeline, offline, learning a cartoon look whose right answer is known.

1. material: the real photos that ship with scikit-image, cut in quarters; one quarter of each photo is
   held out and never trained on. Of the rest, one share becomes the "film": the demo's own cartoon look
   (`data/cartoon.py`: flat regions, a warm saturated palette, thick dark outlines) of those quarters, as a
   short clip panning along them at their own scale; the other share is the photo set (`pipelines.known_answer`);
2. extract-frames from the clip into the dataset's style set;
3. make-smooth;
4. add-images: the photo share into the photo set;
5. train: a short White-box Cartoonization run (VGG19 ImageNet weights when torch's cache has them;
   otherwise random VGG weights scaled to unit variance, said in the log, since the demo must not
   download);
6. stylize the held-out quarters, and measure them: `animegan eval`'s figures against the photos, and how
   much of the way from each photo to its known answer (the look applied to it) the output went;
7. a contact sheet PNG: each held-out photo, its stylized version and its answer, labelled.

Why White-box for a few CPU minutes: its U-Net has full-resolution skips, so it reconstructs a photo
within ~100 steps (AnimeGANv2's encoder-decoder needs thousands), and every later step can move towards
the style. Its init phase (most of the demo's steps: they are cheap) reconstructs each photo graded to the style
set's colour statistics (training/palette.py) with the style's lines drawn along its edges (training/ink.py), so
palette and outlines are learned within minutes; the GAN phase then flattens regions (discriminators, structure
loss) and keeps both anchors.

Every stage is one of the real commands' pipelines, so a second `demo` run over the same folder
resumes: frames, smoothing, imports and stylized images that are done are skipped, and training
continues from its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .data.cartoon import LOOKS
from .data.frames import ExtractOptions, extract_frames
from .data.manifest import Dataset
from .evaluation.evaluate import EvalOptions, evaluate
from .evaluation.known_answer import gap_figures
from .fileio import atomic_path, read_image, write_image
from .inference.stylize import StylizeOptions, stylize
from .inference.video_encode import VideoWriter
from .known_answer import build_set, labelled_grid, skimage_quarters
from .models.vgg import imagenet_weights_path
from .progress import Reporter
from .training.loop import TrainRequest, run_train

LOOK = "warm"
SHORT_SIDE = 160  # quarters are scaled to this short side: 64 px crops then hold whole objects
CLIP_FPS = 12
CLIP_SIZE = (240, 160)  # width, height
SHOT_SECONDS = 1.0
FRAME_EVERY = 0.5  # seconds between extracted frames: two per shot

MODEL = "whitebox"
# Share of the steps spent in the init phase. Its steps are cheap (no discriminators, no VGG: ~0.07 s against ~0.27 s
# for a GAN step at 64 px on 2 cores) and, with the anchored preset, already learn the palette and the style's lines
# (training/ink.py); the GAN phase then flattens and refines. Measured, docs/benchmarks.md (thirteenth session).
INIT_SHARE = 1000 / 1300
# The White-box recipe's defaults (preset "anchored"), with a reconstruction phase sized for the demo.
WEIGHTS: dict[str, float] = {}


@dataclass
class DemoOptions:
    out: Path = Path("animegan-demo")
    steps: int = 1300  # generator steps, both phases
    init_steps: int | None = None  # reconstruction steps (None: INIT_SHARE of `steps`), rounded to whole epochs
    image_size: int = 64
    batch_size: int = 4
    device: str = "auto"
    vgg_weights: str | None = None  # None: imagenet when cached, else random
    seed: int = 0


@dataclass
class DemoResult:
    clip: Path
    dataset: Path
    run: Path
    stylized: Path
    contact_sheet: Path
    vgg_weights: str
    metrics: dict[str, float]  # eval means of the stylized photos against the photos
    steps: int
    gaps: dict[str, float] = field(default_factory=dict)  # known-answer figures (evaluation/known_answer.py)


def clip_frames(images: list[np.ndarray]):
    """Yield `[H, W, 3] uint8 RGB` frames of CLIP_SIZE: a camera panning along the images laid side by side, at
    their own scale (each scaled to the clip's height, which is their short side at the demo's SHORT_SIDE) and in
    whole-pixel steps. Scale is what matters: the style set must show the look's lines as thin as the held-out
    answers have them. An earlier zooming shot per image blew 80-pixel-wide halves up three times, so the frames'
    outlines were blurred bands three pixels wide, and a generator that learned them learned to blur."""
    w, h = CLIP_SIZE
    row = [art if art.shape[0] == h else cv2.resize(art, (max(1, round(art.shape[1] * h / art.shape[0])), h),
                                                     interpolation=cv2.INTER_AREA) for art in images]
    strip = np.concatenate(row, axis=1)
    if strip.shape[1] < w:
        strip = np.concatenate([strip] * -(-w // strip.shape[1]), axis=1)
    n = max(2, round(SHOT_SECONDS * CLIP_FPS * len(images)))
    for k in range(n):
        x0 = round(k * (strip.shape[1] - w) / (n - 1))
        yield np.ascontiguousarray(strip[:, x0:x0 + w])


def _clip_import(clip: Path):
    """A `known_answer.build_set` style import: the cartoon images as a clip, then `extract-frames`."""

    def run(files: list[Path], dataset: Path, reporter: Reporter) -> None:
        if not clip.exists():
            reporter.info(f"making a {len(files) * SHOT_SECONDS:.1f} s clip of the '{LOOK}' cartoon look: {clip}")
            with atomic_path(clip) as tmp:
                writer = VideoWriter(tmp, clip, *CLIP_SIZE, fps=Fraction(CLIP_FPS), copy_audio=False)
                try:
                    for k, frame in enumerate(clip_frames([read_image(f) for f in files])):
                        writer.write(frame, k / CLIP_FPS)
                except BaseException:
                    writer.abort()
                    raise
                writer.close()
        extract_frames([clip], dataset, ExtractOptions(every=FRAME_EVERY, size=0, dedupe=False), reporter)

    return run


def run_demo(options: DemoOptions, reporter: Reporter) -> DemoResult:
    out = options.out
    run_dir, stylized_dir = out / "runs" / "demo", out / "stylized"
    clip = out / "material" / "clip.mp4"

    # ---- 1-4. material and dataset -------------------------------------------------------------
    train_quarters, held_quarters = skimage_quarters()
    kas = build_set(train_quarters, LOOK, out, reporter, short_side=SHORT_SIDE, seed=options.seed,
                    held_photos=held_quarters, style_import=_clip_import(clip))

    # ---- 5. train ----------------------------------------------------------------------------
    vgg = options.vgg_weights
    if vgg is None:
        vgg = "imagenet" if imagenet_weights_path().exists() else "random"
        if vgg == "random":
            reporter.info(
                f"VGG19 ImageNet weights are not in torch's cache ({imagenet_weights_path()}); the demo trains with "
                "random VGG weights rather than download 548 MB. `animegan train` downloads them on first use."
            )
        else:
            reporter.info(f"VGG19 ImageNet weights found in torch's cache ({imagenet_weights_path()}): the demo uses them")
    frames = len(Dataset.open(kas.dataset).manifest.records("style"))
    init_steps = options.init_steps if options.init_steps is not None else round(INIT_SHARE * options.steps)
    steps_per_epoch = max(1, max(frames, len(kas.photo_names)) // options.batch_size)
    overrides = dict(
        dataset=str(kas.dataset), out=str(run_dir), model=MODEL, max_steps=options.steps, weights=dict(WEIGHTS),
        init_epochs=max(1, round(init_steps / steps_per_epoch)), epochs=10_000,  # --steps decides the length
        image_size=options.image_size, batch_size=options.batch_size,
        device=options.device, seed=options.seed, vgg_weights=vgg, workers=0, checkpoint_every=100,
    )
    resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("*.pt"))
    run_train(TrainRequest(overrides=overrides, resume=resume), reporter)

    # ---- 6. stylize the held-out photos and measure them ------------------------------------------
    held_dir = out / "heldout" / "photo"
    photo_files = [held_dir / f"{name}.png" for name in kas.held.names]
    stylize(photo_files, StylizeOptions(weights=run_dir, out_dir=stylized_dir, device=options.device), reporter)
    figures = evaluate([stylized_dir], EvalOptions(references=(held_dir,)), reporter).metrics
    outputs = [read_image(stylized_dir / p.name) for p in photo_files]
    gaps = gap_figures(kas.held.photos, outputs, kas.held.answers, kas.held.outlines)

    # ---- 7. contact sheet --------------------------------------------------------------------
    title = [f"animegan demo: White-box Cartoonization learns the demo's own cartoon look '{LOOK}' "
             f"({LOOKS[LOOK].description})",
             f"from a clip of it; {options.steps} steps, {options.image_size} px crops, {vgg} VGG19 weights. "
             f"Photos below were never trained on.",
             f"colour gap closed {gaps['color_closed']:.2f}, outline gap closed {gaps['outline_closed']:.2f} "
             f"(0 = the photo, 1 = the answer)"]
    rows = [[(f"{name}: photo", photo), (f"{name}: output", output), (f"{name}: answer", answer)]
            for name, photo, output, answer in zip(kas.held.names, kas.held.photos, outputs, kas.held.answers)]
    sheet = out / "contact-sheet.png"
    write_image(sheet, labelled_grid(rows, title, height=200))
    return DemoResult(clip, kas.dataset, run_dir, stylized_dir, sheet, vgg, figures, options.steps, gaps)

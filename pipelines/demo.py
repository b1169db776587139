"""`animegan demo`: the whole pipeline, offline, on sample photos that ship with scikit-image.

1. material: a few real photos from `skimage.data`, and a short "anime" clip made from flat-shaded,
   slowly panning versions of them (the only film-like footage a dependency can ship);
2. extract-frames from the clip into the dataset's style set;
3. make-smooth;
4. add-images: the photos into the photo set;
5. train: a short White-box Cartoonization run (VGG19 ImageNet weights when torch's cache has them;
   otherwise random VGG weights scaled to unit variance, said in the log, since the demo must not
   download);
6. stylize the photos, and measure them against their inputs (`animegan eval`'s figures);
7. a contact sheet PNG: each photo beside its stylized version, rows labelled.

Why White-box for a few CPU minutes: its U-Net has full-resolution skips, so it reconstructs a photo
within ~100 steps (AnimeGANv2's encoder-decoder needs thousands: 15 dB PSNR after 80 steps, 23 dB for
White-box; docs/benchmarks.md), and every later step can move towards the style set instead of
still learning to reproduce the photo. The structure and content weights are the paper's (10x the
released code's), for a visible flattening in few steps, and the colour loss of AnimeGAN anchors the
colours, which the discriminators otherwise pull off in a short run.

Every stage is one of the real commands' pipelines, so a second `demo` run over the same folder
resumes: frames, smoothing, imports and stylized images that are done are skipped, and training
continues from its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .fileio import read_image, write_image
from .evaluation.evaluate import EvalOptions, evaluate
from .data.frames import ExtractOptions, extract_frames
from .data.importing import add_images
from .models.vgg import imagenet_weights_path
from .progress import Reporter
from .data.smoothing import SmoothOptions, make_smooth
from .inference.stylize import StylizeOptions, stylize
from .training.loop import TrainRequest, run_train
from .fileio import atomic_path
from .inference.video_encode import VideoWriter

# skimage.data photos that need no download; (name, index into a tuple result).
PHOTOS = (("astronaut", None), ("chelsea", None), ("coffee", None), ("rocket", None), ("stereo_motorcycle", 0))
CLIP_FPS = 12
CLIP_SIZE = (320, 240)  # width, height
SHOT_SECONDS = 1.5


MODEL = "whitebox"
# Released White-box weights, with the paper's structure and content weights and a colour anchor
# (see the module doc); the contact sheet and docs/benchmarks.md say what these give.
WEIGHTS = {"structure": 2000.0, "content": 2000.0, "color": 2.0}


@dataclass
class DemoOptions:
    out: Path = Path("animegan-demo")
    steps: int = 300  # generator steps, both phases
    init_epochs: int = 12  # reconstruction epochs (about 100 steps on the demo's data)
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


def sample_photos() -> dict[str, np.ndarray]:
    """`{name: [H, W, 3] uint8 RGB}` from scikit-image's bundled data."""
    from skimage import data as skdata

    out = {}
    for name, index in PHOTOS:
        img = getattr(skdata, name)()
        if index is not None:
            img = img[index]
        out[name] = np.ascontiguousarray(img[:, :, :3])
    return out


def flat_shaded(rgb: np.ndarray) -> np.ndarray:
    """A cel-like look: edge-preserving smoothing, few colour levels, dark outlines."""
    flat = rgb
    for _ in range(2):
        flat = cv2.bilateralFilter(flat, 9, 40, 7)
    levels = 6
    flat = (np.floor(flat.astype(np.float32) / 256 * levels) + 0.5) * (256 / levels)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.dilate(cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 60, 140), np.ones((2, 2), np.uint8)) > 0
    flat[edges] *= 0.25
    return np.clip(flat, 0, 255).astype(np.uint8)


def clip_frames(photos: dict[str, np.ndarray]):
    """Yield `[H, W, 3] uint8 RGB` frames: one slowly zooming and panning shot per photo."""
    w, h = CLIP_SIZE
    n = round(SHOT_SECONDS * CLIP_FPS)
    for img in photos.values():
        art = flat_shaded(img)
        ih, iw = art.shape[:2]
        for k in range(n):
            t = k / max(1, n - 1)
            zoom = 1.0 + 0.25 * t  # crop shrinks as the shot goes on
            cw = min(iw, round(ih * w / h)) / zoom
            ch = cw * h / w
            x0 = (iw - cw) * (0.2 + 0.6 * t)
            y0 = (ih - ch) * 0.5
            M = np.array([[w / cw, 0, -x0 * w / cw], [0, h / ch, -y0 * h / ch]], np.float32)
            yield cv2.warpAffine(art, M, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101)


LABEL_HEIGHT = 22


def _label(lines: list[str], width: int) -> np.ndarray:
    """A white strip `[LABEL_HEIGHT * len(lines), width, 3] uint8` with each line in dark gray."""
    strip = np.full((LABEL_HEIGHT * len(lines), width, 3), 255, np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(strip, text, (4, LABEL_HEIGHT * (k + 1) - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
    return strip


def contact_sheet(pairs: list[tuple[str, np.ndarray, np.ndarray]], title: list[str], height: int = 200) -> np.ndarray:
    """`title` lines over rows of `input | output` for each (name, input, output), each image scaled to
    `height` and labelled "name: input" / "name: output"; `[H, W, 3] uint8 RGB`."""
    rows = []
    gap = np.full((height + LABEL_HEIGHT, 8, 3), 255, np.uint8)
    for name, a, b in pairs:
        cells = []
        for img, text in ((a, f"{name}: input"), (b, f"{name}: output")):
            x = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height), interpolation=cv2.INTER_AREA)
            cells.append(np.concatenate([_label([text], x.shape[1]), x], axis=0))
        rows.append(np.concatenate([cells[0], gap, cells[1]], axis=1))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate([_label(title, width), *padded], axis=0)


def run_demo(options: DemoOptions, reporter: Reporter) -> DemoResult:
    out = options.out
    dataset, run_dir, stylized_dir = out / "dataset", out / "runs" / "demo", out / "stylized"
    material = out / "material"

    # ---- 1. material -------------------------------------------------------------------------
    photos = sample_photos()
    photo_files = []
    for name, img in photos.items():
        p = material / "photos" / f"{name}.png"
        if not p.exists():
            write_image(p, img)
        photo_files.append(p)
    clip = material / "clip.mp4"
    if not clip.exists():
        reporter.info(f"making a {len(photos) * SHOT_SECONDS:.1f} s clip from scikit-image's sample photos: {clip}")
        with atomic_path(clip) as tmp:
            writer = VideoWriter(tmp, clip, *CLIP_SIZE, fps=Fraction(CLIP_FPS), copy_audio=False)
            try:
                for k, frame in enumerate(clip_frames(photos)):
                    writer.write(frame, k / CLIP_FPS)
            except BaseException:
                writer.abort()
                raise
            writer.close()

    # ---- 2-4. dataset ------------------------------------------------------------------------
    extract_frames([clip], dataset, ExtractOptions(every=0.25, size=0, dedupe=False), reporter)
    make_smooth(dataset, SmoothOptions(format=".png"), reporter)
    # At the clip frames' scale (240 px): crops of photos and frames then show things at the same size, and
    # training is not told its photos are far larger than its crops.
    add_images(photo_files, "photo", dataset, reporter, size=4 * options.image_size)

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
    overrides = dict(
        dataset=str(dataset), out=str(run_dir), model=MODEL, max_steps=options.steps, weights=dict(WEIGHTS),
        init_epochs=options.init_epochs, image_size=options.image_size, batch_size=options.batch_size,
        device=options.device, seed=options.seed, vgg_weights=vgg, workers=0, checkpoint_every=100,
    )
    resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("*.pt"))
    run_train(TrainRequest(overrides=overrides, resume=resume), reporter)

    # ---- 6. stylize --------------------------------------------------------------------------
    stylize(photo_files, StylizeOptions(weights=run_dir, out_dir=stylized_dir, device=options.device), reporter)

    figures = evaluate([stylized_dir], EvalOptions(reference=material / "photos"), reporter).metrics

    # ---- 7. contact sheet --------------------------------------------------------------------
    title = [f"animegan demo: White-box Cartoonization, {options.steps} training steps",
             f"({options.image_size} px crops, {vgg} VGG19 weights); left input, right output"]
    pairs = [(p.stem, photos[p.stem], read_image(stylized_dir / p.name)) for p in photo_files]
    sheet = out / "contact-sheet.png"
    write_image(sheet, contact_sheet(pairs, title))
    return DemoResult(clip, dataset, run_dir, stylized_dir, sheet, vgg, figures, options.steps)

"""The known-answer style benchmark: a style set made by a computed cartoon look, photos it was never
made from, and held-out photos whose right answer is known (`pipelines.data.cartoon`).

Photos are split deterministically by name into training and held-out photos. Each training photo is cut
in two: one half's look (`cartoonize`) goes to the style set (with its smooth twins), the other half to
the photo set, so the two sets show the same kinds of scenes and differ by the look alone; no pixel is in
both. The held-out photos never enter the dataset. Its photos, their answers and the
answers' outline masks are stored under `heldout/`, and `measure` runs a trained generator on them and
returns how much of each gap from photo to answer it closed (`evaluation.known_answer`).

Used by `bench/bench_style_learning.py` (every family, several looks), by `animegan demo`, and by
anything else that must show a trainer learning (fine-tuning, temporal terms).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .data.cartoon import Look, cartoonize, get_look, outline_mask
from .data.importing import add_images
from .data.smoothing import SmoothOptions, make_smooth
from .evaluation.known_answer import gap_figures
from .fileio import is_image_path, iter_files, read_image, write_image
from .inference.engine import Engine
from .models.weights import load_generator
from .progress import Reporter

LABEL_HEIGHT = 22


@dataclass
class HeldOut:
    """Held-out photos with their answers: `[H, W, 3] uint8 RGB` each, outline masks `[H, W] bool`."""

    names: list[str]
    photos: list[np.ndarray]
    answers: list[np.ndarray]
    outlines: list[np.ndarray]


@dataclass
class KnownAnswerSet:
    root: Path
    dataset: Path
    look: Look
    style_names: list[str]
    photo_names: list[str]
    held: HeldOut


@dataclass
class Measured:
    figures: dict[str, float]
    outputs: list[np.ndarray] = field(default_factory=list)


def split_names(names: Sequence[str], held_out: int) -> tuple[list[str], list[str]]:
    """(training, held-out) names: the held-out ones evenly spaced over the sorted names."""
    names = sorted(names)
    n = len(names)
    if n < held_out + 1:
        raise ValueError(f"need at least {held_out + 1} photos for {held_out} held out, got {n}")
    idx = {round(i * (n - 1) / max(1, held_out - 1)) for i in range(held_out)} if held_out > 1 else ({n // 2} if held_out else set())
    return [x for i, x in enumerate(names) if i not in idx], [names[i] for i in sorted(idx)]


def split_halves(photos: Mapping[str, np.ndarray], seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(style share, photo share): every photo cut in two along its long side, one half to each share (which
    half by a hash of seed and name). Both shares then hold the same kinds of scenes, so what tells them
    apart is the look alone, not a sky-heavy half against a forest-heavy one; no pixel is in both."""
    style, photo = {}, {}
    for name, img in photos.items():
        h, w = img.shape[:2]
        a, b = (img[:, : w // 2], img[:, w // 2:]) if w >= h else (img[: h // 2], img[h // 2:])
        if int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest(), 16) % 2:
            a, b = b, a
        style[f"{name}-s"], photo[f"{name}-p"] = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return style, photo


# skimage.data photos that need no download; (name, index into a tuple result).
SKIMAGE_PHOTOS = (("astronaut", None), ("chelsea", None), ("coffee", None), ("rocket", None), ("stereo_motorcycle", 0))


def skimage_photos() -> dict[str, np.ndarray]:
    """`{name: [H, W, 3] uint8 RGB}`: the real photos scikit-image ships (no download)."""
    from skimage import data as skdata

    out = {}
    for name, index in SKIMAGE_PHOTOS:
        img = getattr(skdata, name)()
        if index is not None:
            img = img[index]
        out[name] = np.ascontiguousarray(img[:, :, :3])
    return out


def skimage_quarters() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(training quarters, held-out quarters) of scikit-image's five photos: each photo cut 2x2; of each
    photo one quarter (a different one per photo) is held out, so every held-out picture is content the
    training never saw, and every photo contributes to both the style and the photo share."""
    train, held = {}, {}
    for k, (name, img) in enumerate(skimage_photos().items()):
        h, w = img.shape[0] // 2, img.shape[1] // 2
        for q in range(4):
            quarter = np.ascontiguousarray(img[(q // 2) * h:(q // 2 + 1) * h, (q % 2) * w:(q % 2 + 1) * w])
            (held if q == k % 4 else train)[f"{name}-{q}"] = quarter
    return train, held


def resize_short(rgb: np.ndarray, short: int) -> np.ndarray:
    """Scale `[H, W, 3]` so its short side is `short` (area filter down, cubic up)."""
    h, w = rgb.shape[:2]
    s = short / min(h, w)
    if s == 1:
        return rgb
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def import_style(files: list[Path], dataset: Path, reporter: Reporter) -> None:
    """The default way the style share enters the dataset: `add-images` of the cartoon images."""
    add_images(files, "style", dataset, reporter)


def benchmark_photos(folder: str | Path | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """(photos, held-out photos or None) for a benchmark: every image of `folder` (`build_set` holds some out), or
    without one scikit-image's quarters (`skimage_quarters`: the held-out quarters are given)."""
    if folder is None:
        return skimage_quarters()
    return {p.stem: read_image(p) for p, _ in iter_files([folder], is_image_path)}, None


def build_set(photos: Mapping[str, np.ndarray], look: Look | str, root: str | Path, reporter: Reporter,
              short_side: int = 192, held_out: int = 8, seed: int = 0,
              held_photos: Mapping[str, np.ndarray] | None = None,
              style_import: Callable[[list[Path], Path, Reporter], None] = import_style) -> KnownAnswerSet:
    """Write the dataset (`root/dataset`: style = look of the style share, smooth, photo = training share)
    and the held-out material (`root/heldout/`). Photos are scaled to `short_side` first. With
    `held_photos`, those are the held-out photos and every photo of `photos` is split into style and photo
    shares. `style_import(cartoon files, dataset, reporter)` fills the style set (the demo makes a clip of
    them and extracts its frames). Idempotent: a second call over the same folder reuses what exists."""
    look = get_look(look) if isinstance(look, str) else look
    root = Path(root)
    scaled = {k: resize_short(np.ascontiguousarray(v[:, :, :3]), short_side) for k, v in photos.items()}
    if held_photos is None:
        train_names, held_names = split_names(list(scaled), held_out)
        held_imgs = {k: scaled[k] for k in held_names}
    else:
        train_names = sorted(scaled)
        held_imgs = {k: resize_short(np.ascontiguousarray(v[:, :, :3]), short_side) for k, v in held_photos.items()}
        held_names = sorted(held_imgs)
    style_share, photo_share = split_halves({k: scaled[k] for k in train_names}, seed)
    style_names, photo_names = sorted(style_share), sorted(photo_share)
    material = root / "material"
    style_files = []
    for name in style_names:
        p = material / "style" / f"{name}.png"
        if not p.exists():
            write_image(p, cartoonize(style_share[name], look))
        style_files.append(p)
    for name in photo_names:
        p = material / "photo" / f"{name}.png"
        if not p.exists():
            write_image(p, photo_share[name])
    dataset = root / "dataset"
    style_import(style_files, dataset, reporter)
    make_smooth(dataset, SmoothOptions(format=".png"), reporter)
    add_images([material / "photo"], "photo", dataset, reporter)

    for name in held_names:
        photo = held_imgs[name]
        paths = [root / "heldout" / sub / f"{name}.png" for sub in ("photo", "answer", "outline")]
        if not all(p.exists() for p in paths):
            mask = outline_mask(photo, look)
            write_image(paths[0], photo)
            write_image(paths[1], cartoonize(photo, look))
            write_image(paths[2], np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2))
    return KnownAnswerSet(root, dataset, look, style_names, photo_names, load_held(root, held_names))


def load_held(root: str | Path, names: Sequence[str] | None = None) -> HeldOut:
    """The held-out photos, answers and outline masks that `build_set` wrote under `root/heldout/`
    (all of them, by name, unless `names` are given)."""
    base = Path(root) / "heldout"
    if names is None:
        names = sorted(p.stem for p in (base / "photo").glob("*.png"))
    held = HeldOut([], [], [], [])
    for name in names:
        held.names.append(name)
        held.photos.append(read_image(base / "photo" / f"{name}.png"))
        held.answers.append(read_image(base / "answer" / f"{name}.png"))
        held.outlines.append(read_image(base / "outline" / f"{name}.png")[:, :, 0] > 127)
    return held


def generate(weights: str | Path, images: Sequence[np.ndarray], device: str = "cpu") -> list[np.ndarray]:
    """A trained generator's outputs for `images` (`[H, W, 3] uint8 RGB` -> same), one image at a time, through
    stylize's engine in fp32 (so the figures do not depend on the CPU's bf16 support)."""
    engine = Engine(load_generator(weights, device).model, torch.device(device), torch.float32)
    return [engine.stylize_image(img) for img in images]


def measure(weights: str | Path, held: HeldOut, device: str = "cpu") -> Measured:
    """Gap figures of the generator at `weights` (a run folder or weights file) on the held-out photos."""
    outputs = generate(weights, held.photos, device)
    return Measured(gap_figures(held.photos, outputs, held.answers, held.outlines), outputs)


def photo_baseline(held: HeldOut) -> dict[str, float]:
    """The figures of the photo itself (the identity): 0 for every gap, by construction."""
    return gap_figures(held.photos, held.photos, held.answers, held.outlines)


# ---- labelled pictures ---------------------------------------------------------------------------


def label_strip(lines: Sequence[str], width: int) -> np.ndarray:
    """A white strip `[LABEL_HEIGHT * len(lines), width, 3] uint8` with each line in dark gray."""
    strip = np.full((LABEL_HEIGHT * len(lines), width, 3), 255, np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(strip, text, (4, LABEL_HEIGHT * (k + 1) - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1,
                    cv2.LINE_AA)
    return strip


def labelled_grid(rows: Sequence[Sequence[tuple[str, np.ndarray]]], title: Sequence[str], height: int = 160) -> np.ndarray:
    """`title` lines over one row per entry of `rows`, each a list of (label, `[H, W, 3] uint8` image); every
    image scaled to `height` with its label above it. Returns `[H, W, 3] uint8 RGB`."""
    gap = np.full((height + LABEL_HEIGHT, 6, 3), 255, np.uint8)
    built = []
    for cells in rows:
        parts = []
        for k, (text, img) in enumerate(cells):
            x = cv2.resize(img, (max(1, round(img.shape[1] * height / img.shape[0])), height), interpolation=cv2.INTER_AREA)
            if k:
                parts.append(gap)
            parts.append(np.concatenate([label_strip([text], x.shape[1]), x], axis=0))
        built.append(np.concatenate(parts, axis=1))
    text_width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for t in title) + 8 if title else 0
    width = max(text_width, *(r.shape[1] for r in built))  # the title is never cut off
    padded = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in built]
    return np.concatenate([label_strip(title, width), *padded], axis=0)

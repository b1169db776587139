"""Deterministic cartoon looks: a style whose right answer is computed.

`cartoonize(photo, look)` turns a photo into a flat-shaded cartoon in one of a few `LOOKS`: edge-preserving
flattening, a few lightness levels (cel shading), a palette grading in CIELAB (chroma gain, a shift of
a*/b*, a lightness curve) and dark outlines of a chosen width and darkness. It is a pure function of the
pixels (OpenCV's bilateral filter, Canny and morphology are deterministic), so for any photo its answer
T(photo) is known exactly. That makes learning measurable without a GPU or a human judge: train on T of
some photos as the (unpaired) style set and on other photos as the photo set, then compare what the
generator makes of photos it never saw with T of those photos (`pipelines.evaluation.known_answer`).

The looks differ in every part: palette direction (warm, cool, pink), chroma (more or less), levels, and
line style (thick and black, thin and grey). `LOOKS_HELD_OUT` are looks that no recipe default was tuned
on: the benchmark reports them separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Look:
    """One cartoon look. Lightness is CIELAB L* in [0, 100]; a*, b* shifts in CIELAB units."""

    name: str
    chroma: float  # gain on a* and b* (1: unchanged)
    shift_a: float  # + towards red/magenta, - towards green
    shift_b: float  # + towards yellow, - towards blue
    gamma: float  # L' = 100 (L/100)^gamma: < 1 lighter mid-tones
    levels: int  # lightness levels (cel shading)
    line_width: int  # outline width in pixels at 256 px short side (scaled with the image)
    line_darkness: float  # outline pixels keep this fraction of their lightness (0: black)
    flatten: int  # bilateral filter passes
    description: str


LOOKS: dict[str, Look] = {
    "warm": Look("warm", chroma=1.4, shift_a=6.0, shift_b=14.0, gamma=0.9, levels=6, line_width=2,
                 line_darkness=0.2, flatten=3, description="warm, saturated, thick black outlines"),
    "cool": Look("cool", chroma=1.2, shift_a=-5.0, shift_b=-14.0, gamma=1.1, levels=8, line_width=1,
                 line_darkness=0.45, flatten=2, description="cool, bluish, thin grey outlines"),
    "pastel": Look("pastel", chroma=0.75, shift_a=10.0, shift_b=2.0, gamma=0.75, levels=5, line_width=2,
                   line_darkness=0.35, flatten=3, description="light, pink-tinted pastel, medium outlines"),
}
#: looks that no default of any recipe was tuned on (the benchmark's check against overfitting)
LOOKS_HELD_OUT = ("pastel",)


def get_look(name: str) -> Look:
    try:
        return LOOKS[name]
    except KeyError:
        raise ValueError(f"unknown cartoon look {name!r}; known: {', '.join(LOOKS)}") from None


def _scaled(width_at_256: int, short_side: int) -> int:
    return max(1, round(width_at_256 * short_side / 256))


def outline_mask(rgb: np.ndarray, look: Look) -> np.ndarray:
    """`[H, W] bool`: where `cartoonize` draws outlines (Canny on the lightly smoothed luma, widened)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    short = min(rgb.shape[:2])
    sigma = 1.0 * short / 256
    edges = cv2.Canny(cv2.GaussianBlur(gray, (0, 0), max(0.6, sigma)), 70, 150)
    width = _scaled(look.line_width, short)
    if width > 1:
        edges = cv2.dilate(edges, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    return edges > 0


def cartoonize(rgb: np.ndarray, look: Look | str) -> np.ndarray:
    """`[H, W, 3] uint8 RGB` -> the same size in `look`: flat regions, graded palette, dark outlines."""
    look = get_look(look) if isinstance(look, str) else look
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected [H, W, 3] uint8 RGB, got {rgb.shape} {rgb.dtype}")
    short = min(rgb.shape[:2])
    d = max(3, _scaled(7, short) | 1)
    flat = rgb
    for _ in range(look.flatten):
        flat = cv2.bilateralFilter(flat, d, 35, d)
    lab = cv2.cvtColor(flat.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # L in [0, 100], a/b about +-100
    L, a, b = cv2.split(lab)
    L = 100.0 * np.power(np.clip(L / 100.0, 0, 1), look.gamma)
    # Cel shading: round lightness to `levels` steps, softened a little so bands stay smooth at their edges.
    step = 100.0 / look.levels
    L = np.clip((np.floor(L / step) + 0.5) * step, 0, 100)
    L = cv2.GaussianBlur(L, (0, 0), 0.5 * short / 256 + 0.3)
    a = a * look.chroma + look.shift_a
    b = b * look.chroma + look.shift_b
    mask = outline_mask(rgb, look)
    L = np.where(mask, L * look.line_darkness, L)
    out = cv2.cvtColor(cv2.merge([L.astype(np.float32), a.astype(np.float32), b.astype(np.float32)]), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

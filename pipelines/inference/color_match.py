"""Colour matching: move a colorized image's colours onto its reference's, after the network.

A Style2paints colorizer reads its reference through one 4096-number VGG19 fc1 vector. Trained at the scale a
CPU allows, that vector steers the overall cast (warm or cool, the hue) but not the palette's detail: held-out
outputs are nearest their own reference's colour histogram in 2 of 5 cases (chance 1 in 5; docs/benchmarks.md,
issue 19). The network places colours (which region is light, dark, warm, cool: its output's order of values);
this stage then gives those places the reference's colours:

- `lab`: each CIELAB channel's mean and deviation set to the reference's (Reinhard et al., 2001). Gentle: keeps
  the network's relative colours, moves the cast and contrast.
- `histogram`: each RGB channel's values replaced by the reference's at the same rank (scikit-image's
  `match_histograms`): the output takes the reference's palette value by value, in the proportions the reference
  has them. A reference that is mostly sky makes the output mostly that blue, whatever the sketch shows.
- `off`: the network's colours as they are.

Both work on whole images' statistics; they never move a colour from one place to another, so the sketch's
layout (and, with `keep_lines`, its lines, multiplied afterwards) is the network's.
"""

from __future__ import annotations

import cv2
import numpy as np

MATCH_CHOICES = ("off", "lab", "histogram")


def lab_match(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`image` `[H, W, 3] uint8` RGB with each CIELAB channel's mean and deviation moved to `reference`'s
    (`[h, w, 3] uint8` RGB, any size)."""
    a = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB).astype(np.float32)
    b = cv2.cvtColor(np.ascontiguousarray(reference), cv2.COLOR_RGB2LAB).astype(np.float32)
    # A flat channel (a grey output has a = b = 128 everywhere) takes the reference's mean and stays flat,
    # rather than dividing by zero.
    out = (a - a.mean((0, 1))) / np.maximum(a.std((0, 1)), 1e-3) * b.std((0, 1)) + b.mean((0, 1))
    return cv2.cvtColor(np.clip(np.rint(out), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def histogram_match(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`image` `[H, W, 3] uint8` RGB with each channel's histogram matched to `reference`'s (`[h, w, 3] uint8`)."""
    from skimage.exposure import match_histograms  # scikit-image's import is slow; only runs that match pay it

    matched = match_histograms(np.ascontiguousarray(image), np.ascontiguousarray(reference), channel_axis=-1)
    return np.clip(np.rint(matched), 0, 255).astype(np.uint8)


def match_colors(image: np.ndarray, reference: np.ndarray, mode: str) -> np.ndarray:
    """`image` `[H, W, 3] uint8` with its colours matched to `reference`'s by `mode` (one of MATCH_CHOICES)."""
    if mode == "off":
        return image
    if mode == "lab":
        return lab_match(image, reference)
    if mode == "histogram":
        return histogram_match(image, reference)
    raise ValueError(f"colour matching {mode!r}: expected one of {', '.join(MATCH_CHOICES)}")

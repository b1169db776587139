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
  has them. A reference that is mostly sky makes the output mostly that blue, whatever the sketch shows. The
  channels are matched one by one, so a colour can come out that the reference never has: where a grey-ish
  output's red and blue rise together, a red-and-blue reference gives magenta.
- `palette`: the output's colours, as points in RGB space, moved onto the reference's as a whole (iterative
  distribution transfer, Pitie et al., 2005: the 1-D histograms of the colours along random axes matched in turn,
  which converges to the reference's 3-D colour distribution). The output takes the reference's colours and
  their proportions, and only colours the reference has. A distribution transfer stretches whatever small
  variations the output has: an under-trained network's faint stripes and speckle in a flat sky become bands of
  the reference's whole range. So the fine detail (finer than a Gaussian of PALETTE_DETAIL of the long side) is
  then taken back from the network's output as it was (the aim of Pitie et al.'s 2007 "grain reduction": the
  output's fine structure kept, its colours the transferred ones).
- `off`: the network's colours as they are.

All work on whole images' colour statistics; they never move a colour from one place to another, so the sketch's
layout (and, with `keep_lines`, its lines, multiplied afterwards) is the network's.
"""

from __future__ import annotations

import cv2
import numpy as np

MATCH_CHOICES = ("off", "lab", "histogram", "palette")

# Iterative distribution transfer converges gradually. The transfer alone (detail=0) on the colorize bench's trained
# network (five held-out sketches, each with another's illustration as reference): the Bhattacharyya distance of
# the outputs' 8x8x8 colour histograms to the reference's is 0.37 / 0.19 / 0.11 / 0.09 / 0.06 after 5 / 10 / 20 /
# 30 / 50 rotations (per-channel `histogram`: 0.62); its other figures are the same from 10 on (within 0.005). 20
# cost about 1.6 s for a 1024x768 photo here. The 1-D maps are estimated on at most PALETTE_SAMPLES pixels of each
# image and applied to the output's distinct colours, each once.
PALETTE_ITERATIONS = 20
PALETTE_SAMPLES = 1 << 16
PALETTE_QUANTILES = 1024
PALETTE_SEED = 0  # the random axes are the same on every run: the same output for the same inputs
# Detail finer than a Gaussian of this share of the long side is the network's own (keep_detail): 2.6 px at the
# 256 px colorize works at. 0.005 left the stretched stripes of a 300-step network's sky visible; 0.02 gave more of the
# colours back to the network (bench: nearest 0.85, lines 41.8 against 1.00 and 46.0 with 0.01).
PALETTE_DETAIL = 0.01


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


def _quantiles(values: np.ndarray, count: int) -> np.ndarray:
    ordered = np.sort(values)
    return ordered[np.rint(np.linspace(0, len(ordered) - 1, count)).astype(np.int64)]


def _monotone_map(source: np.ndarray, target: np.ndarray, count: int):
    """The 1-D map sending `source`'s distribution onto `target`'s (matched quantiles, linear between them)."""
    xs, ys = _quantiles(source, count), _quantiles(target, count)
    # A value many source pixels share (a flat region) is one quantile repeated: it goes to the mean of the
    # target quantiles it spans, and np.interp gets the strictly increasing abscissae it needs.
    xs, first, counts = np.unique(xs, return_index=True, return_counts=True)
    ys = np.add.reduceat(ys, first) / counts
    return lambda v: np.interp(v, xs, ys)


def keep_detail(matched: np.ndarray, original: np.ndarray, sigma: float) -> np.ndarray:
    """`matched` `[H, W, 3]` with its detail finer than a Gaussian of `sigma` pixels replaced by `original`'s
    (same shape): matched's coarse part plus original's fine part. A Gaussian's response falls fast past its
    cut-off, so the transfer's stretched stripes do not leak back (a screened-Poisson blend, tried first: the
    image nearest matched whose gradients are original's, let 13% of a row-by-row stripe's stretch through)."""
    def coarse(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    out = coarse(matched) + original.astype(np.float32) - coarse(original)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def palette_match(image: np.ndarray, reference: np.ndarray, iterations: int = PALETTE_ITERATIONS,
                  detail: float = PALETTE_DETAIL) -> np.ndarray:
    """`image` `[H, W, 3] uint8` RGB whose colours, as a 3-D distribution, are moved onto `reference`'s
    (`[h, w, 3] uint8` RGB, any size), by iterative distribution transfer; detail finer than a Gaussian of `detail`
    times the long side is then the image's own (0: none kept)."""
    rng = np.random.default_rng(PALETTE_SEED)
    pixels = image.reshape(-1, 3)
    codes = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    distinct, where = np.unique(codes, return_inverse=True)
    colours = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], 1).astype(np.float32)  # [K, 3]
    ref = reference.reshape(-1, 3).astype(np.float32)
    sample = pixels[rng.choice(len(pixels), PALETTE_SAMPLES, replace=False)] if len(pixels) > PALETTE_SAMPLES else pixels
    sample = sample.astype(np.float32)
    if len(ref) > PALETTE_SAMPLES:
        ref = ref[rng.choice(len(ref), PALETTE_SAMPLES, replace=False)]
    count = min(PALETTE_QUANTILES, len(sample), len(ref))
    for _ in range(iterations):
        axes, _ = np.linalg.qr(rng.standard_normal((3, 3)))  # a random orthonormal basis of RGB space
        s, r, c = sample @ axes, ref @ axes, colours @ axes
        for k in range(3):
            move = _monotone_map(s[:, k], r[:, k], count)
            s[:, k], c[:, k] = move(s[:, k]), move(c[:, k])
        sample, colours = s @ axes.T, c @ axes.T
    out = np.clip(np.rint(colours), 0, 255).astype(np.uint8)[where.reshape(-1)].reshape(image.shape)
    return keep_detail(out, image, detail * max(image.shape[:2])) if detail > 0 else out


def match_colors(image: np.ndarray, reference: np.ndarray, mode: str) -> np.ndarray:
    """`image` `[H, W, 3] uint8` with its colours matched to `reference`'s by `mode` (one of MATCH_CHOICES)."""
    if mode == "off":
        return image
    if mode == "lab":
        return lab_match(image, reference)
    if mode == "histogram":
        return histogram_match(image, reference)
    if mode == "palette":
        return palette_match(image, reference)
    raise ValueError(f"colour matching {mode!r}: expected one of {', '.join(MATCH_CHOICES)}")

"""`make-smooth`: the edge-smoothed twin of every style image (AnimeGAN's `e` set).

AnimeGAN's discriminator learns that blurred edges are "not anime" from copies of the style frames
whose edges were smoothed. The recipe (CartoonGAN's, shared by every AnimeGAN repository) is fixed:

1. gray = RGB->gray of the decoded colour image; edges = Canny(gray, 100, 200);
2. mask = edges dilated with a 5x5 ones kernel;
3. inside the mask, each channel gets the 5x5 Gaussian-weighted sum (`getGaussianKernel(5, 0)`
   outer product) over a reflect-101 padded copy, computed in float64 and stored by truncation;
   outside the mask the original pixel is kept.

`smooth_edges` reproduces the reference's per-pixel loop bit for bit with one separable float32
filter, which is exact for this kernel (see `_DYADIC`); a slower exact path keeps the result
identical should the kernel ever stop being dyadic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..progress import Reporter
from .derived import (  # noqa: F401  (re-exported: the make-smooth names callers and tests use)
    DeriveOptions,
    DeriveSummary,
    Derivation,
    _init_worker,
    _mp_context,
    available_cores,
    derive,
    derive_params,
    resize_short_side,
)
from .derived import twin_path as _twin_path

OPERATION = "smooth"
# Bumped if the recipe or its implementation ever changes output, so that old twins are rebuilt.
RECIPE = "cartoongan-edge-smooth/1"
STYLE_SET = "style"
SMOOTH_SET = "smooth"

_GAUSS_1D = cv2.getGaussianKernel(5, 0)  # [5, 1] float64, sigma 1.1, sums to 1
_GAUSS_2D = _GAUSS_1D * _GAUSS_1D.T  # [5, 5] float64, the reference's kernel
_DILATE = np.ones((5, 5), np.uint8)
_PAD = 2
# For ksize 5 and sigma 0, OpenCV returns the fixed binomial kernel [1, 4, 6, 4, 1] / 16. With
# such dyadic weights every product and partial sum (multiples of 1/256 below 256) is exact in
# float32 and float64 alike, so the order of additions cannot matter and a float32 separable
# filter followed by truncation equals the reference exactly.
_DYADIC = bool(np.all(_GAUSS_1D * 16 == np.round(_GAUSS_1D * 16)))
# Should an OpenCV ever return other weights, sums are rounded and order-dependent: values whose
# float32 result lies this close to an integer (float32 error is below ~3e-4 here) are then
# recomputed in the reference's float64 order.
_NEAR_INT = 2e-3


def edge_mask(rgb: np.ndarray) -> np.ndarray:
    """`[H, W] bool`: the dilated Canny edges of `rgb` (`[H, W, 3] uint8 RGB`)."""
    return _edge_mask_u8(rgb) != 0


def _edge_mask_u8(rgb: np.ndarray) -> np.ndarray:
    # RGB2GRAY on RGB equals BGR2GRAY on BGR: the weights follow the channel names, so the
    # reference's BGR order and our RGB order see the same gray image.
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.dilate(cv2.Canny(gray, 100, 200), _DILATE)  # [H, W] uint8, 0 or 255


def _exact_sums(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """`[n, 3] float64`: the 5x5 weighted sums at (ys, xs), added in exactly the order `np.sum`
    adds a contiguous 25-element array (eight running partial sums over strides of 8, combined
    pairwise, then the 25th term), which is what the reference loop computes."""
    terms = [
        padded[ys + dy, xs + dx].astype(np.float64) * _GAUSS_2D[dy, dx]  # [n, 3]
        for dy in range(5)
        for dx in range(5)
    ]
    r = [terms[j] + terms[8 + j] + terms[16 + j] for j in range(8)]
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + terms[24]


def smooth_edges(rgb: np.ndarray) -> np.ndarray:
    """Edge-smooth `[H, W, 3] uint8 RGB` (any size >= 1x1); returns a new `[H, W, 3] uint8 RGB`.

    Bit-exact to the reference per-pixel recipe (see the module docstring). The channels are
    filtered independently, so their order does not matter beyond the gray conversion.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"smooth_edges expects [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    mask = _edge_mask_u8(rgb)
    out = rgb.copy()
    if not cv2.countNonZero(mask):
        return out
    k = _GAUSS_1D.astype(np.float32)
    # BORDER_REFLECT_101 is numpy's 'reflect', the reference's padding (also for sides < 5 px).
    fast = cv2.sepFilter2D(rgb, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)  # [H, W, 3] >= 0
    smoothed = fast.astype(np.uint8)  # truncation = floor for non-negative values
    if not _DYADIC:
        _fix_near_integers(rgb, mask, fast, smoothed)
    cv2.copyTo(smoothed, mask, out)
    return out


def _fix_near_integers(rgb: np.ndarray, mask: np.ndarray, fast: np.ndarray, smoothed: np.ndarray) -> None:
    """Recompute, in the reference's float64 order, the values whose fast result lies within
    _NEAR_INT of an integer (their floor is uncertain); needed only for a non-dyadic kernel."""
    padded = np.pad(rgb, ((_PAD, _PAD), (_PAD, _PAD), (0, 0)), mode="reflect")
    # Shifted by one so that nothing is negative, the two sides of a nearby integer truncate differently.
    near = (fast + np.float32(1 + _NEAR_INT)).astype(np.uint16) != (fast + np.float32(1 - _NEAR_INT)).astype(np.uint16)
    flat = np.unique(np.flatnonzero(near) // 3)  # pixel indices
    if flat.size:
        ys, xs = np.divmod(flat, rgb.shape[1])
        keep = mask[ys, xs] != 0
        ys, xs = ys[keep], xs[keep]
        smoothed[ys, xs] = np.floor(_exact_sums(padded, ys, xs)).astype(np.uint8)


# -- make-smooth -----------------------------------------------------------------------


def _smooth(rgb: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The derivation's compute function (module level, so worker processes can receive it)."""
    return smooth_edges(rgb)


SMOOTH = Derivation(OPERATION, STYLE_SET, SMOOTH_SET, RECIPE, _smooth, noun="style image",
                    hint="add some with `animegan extract-frames` or `animegan add-images --set style`")

SmoothOptions = DeriveOptions  # make-smooth has no settings of its own beyond size, format and workers
SmoothSummary = DeriveSummary


def smooth_params(options: DeriveOptions, suffix: str) -> dict[str, Any]:
    """What a twin depends on besides its source bytes; stored in `DerivedSource.params`."""
    return derive_params(SMOOTH, options, suffix)


def twin_path(style_path: str, suffix: str) -> str:
    """`style/a/b.jpg` -> `smooth/a/b<suffix>` (the same path relative to the set folder)."""
    return _twin_path(SMOOTH, style_path, suffix)


def make_smooth(dataset_root: str | Path, options: DeriveOptions, reporter: Reporter | None = None) -> DeriveSummary:
    """Write the smooth twin of every style record that lacks an up-to-date one, and drop twins whose
    style record is gone (see `derived.derive`). Raises `PartialFailure` if any image failed."""
    return derive(dataset_root, SMOOTH, options, reporter, task="smoothing edges")

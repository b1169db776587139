"""Reference images for colorization training: a thin-plate-spline warp and a colour jitter.

With the illustration itself as reference (the Style2paints paper's way), a colorizer can learn to copy
colours position by position from the reference, and then gives every sketch the reference's layout of
colours. `--reference augmented` (the idea of SCFT, CVPR 2020) breaks that: the illustration's colours
are jittered first (target and reference alike, so the model learns that colours come from the
reference), then the reference alone is warped by a random thin-plate spline, so positions no longer line
up with the sketch.
"""

from __future__ import annotations

import cv2
import numpy as np

TPS_GRID = 4  # control points per side
TPS_SHIFT = 0.12  # standard deviation of each control point's shift, in units of the half side
HUE_SHIFT = 12  # at most this many degrees (of 360) either way
SAT_VALUE = (0.75, 1.25)  # saturation and brightness factors


def _u(r2: np.ndarray) -> np.ndarray:
    # The thin-plate kernel r^2 log r^2 (0 at r = 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, r2 * np.log(r2), 0.0)


def tps_maps(height: int, width: int, rng: np.random.Generator, grid: int = TPS_GRID,
             shift: float = TPS_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Maps for `cv2.remap` (`[H, W] float32` x and y source coordinates) of a random thin-plate-spline warp.

    Control points on a `grid` x `grid` lattice over [-1, 1]^2 move by N(0, shift); the spline maps every
    output pixel to where it samples the input (the interpolating TPS: the moved points land exactly
    on the lattice points).
    """
    g = np.linspace(-1.0, 1.0, grid)
    src = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)  # [P, 2] (x, y)
    dst = src + rng.normal(0.0, shift, src.shape)
    p = len(src)
    # Solve for the spline that takes dst (output positions) to src (input positions).
    k = _u(((dst[:, None, :] - dst[None, :, :]) ** 2).sum(-1))
    pmat = np.concatenate([np.ones((p, 1)), dst], axis=1)
    lhs = np.zeros((p + 3, p + 3))
    lhs[:p, :p], lhs[:p, p:], lhs[p:, :p] = k, pmat, pmat.T
    rhs = np.zeros((p + 3, 2))
    rhs[:p] = src
    coef = np.linalg.solve(lhs, rhs)  # [P + 3, 2]
    # The spline is smooth: evaluate it every ~8 pixels and interpolate (16x less work than per pixel).
    ch, cw = min(height, height // 8 + 2), min(width, width // 8 + 2)
    ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, ch), np.linspace(-1.0, 1.0, cw), indexing="ij")
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)  # [H*W, 2]
    u = _u(((pts[:, None, :] - dst[None, :, :]) ** 2).sum(-1))  # [H*W, P]
    mapped = u @ coef[:p] + coef[p] + pts @ coef[p + 1:]  # [H*W, 2] in [-1, 1] units
    map_x = ((mapped[:, 0] + 1.0) * 0.5 * (width - 1)).reshape(ch, cw).astype(np.float32)
    map_y = ((mapped[:, 1] + 1.0) * 0.5 * (height - 1)).reshape(ch, cw).astype(np.float32)
    if (ch, cw) != (height, width):
        map_x, map_y = (_upsample(m, height, width) for m in (map_x, map_y))
    return map_x, map_y


def _upsample(m: np.ndarray, height: int, width: int) -> np.ndarray:
    # Corner-aligned bilinear upsampling (the coarse grid's corners are the image's corner pixels).
    yi = np.linspace(0, m.shape[0] - 1, height)
    xi = np.linspace(0, m.shape[1] - 1, width)
    y0 = np.minimum(yi.astype(int), m.shape[0] - 2)
    x0 = np.minimum(xi.astype(int), m.shape[1] - 2)
    fy, fx = (yi - y0)[:, None], (xi - x0)[None, :]
    a, b = m[y0][:, x0], m[y0][:, x0 + 1]
    c, d = m[y0 + 1][:, x0], m[y0 + 1][:, x0 + 1]
    return ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy).astype(np.float32)


def tps_warp(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`[H, W, 3] uint8` -> the same image under a random thin-plate-spline warp (edges reflected)."""
    map_x, map_y = tps_maps(rgb.shape[0], rgb.shape[1], rng)
    return cv2.remap(rgb, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def jitter_colours(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`[H, W, 3] uint8` -> hue turned by up to HUE_SHIFT degrees, saturation and brightness scaled."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)  # H in 0..255 for 0..360 degrees
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-HUE_SHIFT, HUE_SHIFT) * 256.0 / 360.0) % 256.0
    hsv[..., 1] *= rng.uniform(*SAT_VALUE)
    hsv[..., 2] *= rng.uniform(*SAT_VALUE)
    hsv = np.clip(np.rint(hsv), 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)

"""Reference images for colorization training: crops, a thin-plate-spline warp and colour changes.

With the illustration itself as reference (the Style2paints paper's way), a colorizer can learn to copy
colours position by position from the reference (VGG19's fc1 keeps a coarse 7x7 layout of the image), and
then gives every sketch the reference's layout of colours, or learns the training set's average colours and
ignores the reference. Two remedies (the idea of SCFT, CVPR 2020):

- `augmented`: the illustration's colours are jittered a little (target and reference alike), then the
  reference alone is warped by a random thin-plate spline (about 6% of the side: less than one fc1 cell);
- `crop` (the default): the reference is another crop of the same illustration, at another zoom, flipped on
  its own and warped more strongly, and target and reference share a strong random palette change (hue
  turn, saturation, brightness and a warm/cool white balance), so that the only way to get the target's
  colours right is to read them from the reference.
"""

from __future__ import annotations

import cv2
import numpy as np

TPS_GRID = 4  # control points per side
TPS_SHIFT = 0.12  # standard deviation of each control point's shift, in units of the half side
HUE_SHIFT = 12  # at most this many degrees (of 360) either way
SAT_VALUE = (0.75, 1.25)  # saturation and brightness factors

# `crop` references: a palette change shared by target and reference, strong enough to move colours further
# than the illustrations' own variety, and a reference crop that shares little position with the target's.
PALETTE_HUE = 90.0  # degrees either way
PALETTE_SAT = (0.5, 1.5)
PALETTE_VALUE = (0.8, 1.2)
PALETTE_BALANCE = 0.3  # red gain exp(+b), blue gain exp(-b), b in [-0.3, 0.3]: warm to cool white balance
PALETTE_KEEP = 0.2  # this share of samples keep the illustration's own colours
REFERENCE_ZOOM = (0.7, 1.4)  # the reference crop's side against the target's
REFERENCE_TPS_SHIFT = 0.2


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


def draw_palette(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Random palette-change parameters (hue turn in degrees, saturation, value, balance) for `apply_palette`;
    the identity for PALETTE_KEEP of the draws."""
    hue, sat, val, bal = (float(rng.uniform(-PALETTE_HUE, PALETTE_HUE)), float(rng.uniform(*PALETTE_SAT)),
                          float(rng.uniform(*PALETTE_VALUE)), float(rng.uniform(-PALETTE_BALANCE, PALETTE_BALANCE)))
    if rng.random() < PALETTE_KEEP:
        return 0.0, 1.0, 1.0, 0.0
    return hue, sat, val, bal


def apply_palette(rgb: np.ndarray, palette: tuple[float, float, float, float]) -> np.ndarray:
    """`[H, W, 3] uint8` -> hue turned, saturation and value scaled, then white balance moved warm (b > 0) or
    cool (b < 0). The same parameters give the same change to any image (target and reference alike)."""
    hue, sat, val, bal = palette
    if (hue, sat, val, bal) == (0.0, 1.0, 1.0, 0.0):
        return rgb
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue * 256.0 / 360.0) % 256.0
    hsv[..., 1] *= sat
    hsv[..., 2] *= val
    out = cv2.cvtColor(np.clip(np.rint(hsv), 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
    out[..., 0] *= np.exp(bal)
    out[..., 2] *= np.exp(-bal)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def random_square(h: int, w: int, side: int, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a random `side` x `side` window in an `h` x `w` image."""
    return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))


def reference_crop(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Another view of the (already scaled) illustration `rgb` `[H, W, 3] uint8`: a random square at a random
    zoom (REFERENCE_ZOOM times `size`, within the image), resized to `size`, flipped half the time, then warped
    by a thin-plate spline of REFERENCE_TPS_SHIFT. `[size, size, 3] uint8`."""
    h, w = rgb.shape[:2]
    side = int(min(min(h, w), max(8, round(size * rng.uniform(*REFERENCE_ZOOM)))))
    top, left = random_square(h, w, side, rng)
    view = rgb[top:top + side, left:left + side]
    view = cv2.resize(view, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    map_x, map_y = tps_maps(size, size, rng, shift=REFERENCE_TPS_SHIFT)
    return cv2.remap(np.ascontiguousarray(view), map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT_101)


def square_reference(rgb: np.ndarray) -> np.ndarray:
    """The centre square of a reference `[H, W, 3]`: what fc1 sees at 224x224 without squashing its aspect ratio."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(rgb[top:top + side, left:left + side])

"""Where tiles go and how their outputs are blended: numpy only, shared by both engines.

The PyTorch engine (`tiling.stylize_tiled`) runs its tiles with the whole image's normalization statistics;
the ONNX engine runs each tile as it is. Both place tiles with `plan_axis` and blend them with `blend_tiles`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def plan_axis(length: int, tile: int, overlap: int, align: int = 4) -> list[tuple[int, int]]:
    """Tile spans `[start, end)` covering `[0, length)`; neighbours overlap by at least `overlap`.

    Starts are multiples of `align` (the networks' total stride): a tile starting elsewhere would
    see its strided convolutions sample the image at another phase than the whole-image run does,
    and its output would differ everywhere, not only near its edges. The last span is stretched by
    up to `align - 1` pixels to reach the end.
    """
    if length <= tile:
        return [(0, length)]
    step = max(1, tile - overlap)
    n = max(2, math.ceil((length - overlap) / step))
    starts = sorted({(round(i * (length - tile) / (n - 1)) // align) * align for i in range(n)})
    return [(s, s + tile) for s in starts[:-1]] + [(starts[-1], length)]


def _window(spans: list[tuple[int, int]], i: int) -> np.ndarray:
    """1-D blend weights for span i: 0 near an edge shared with a neighbour, raised cosine up to 1."""
    s, e = spans[i]
    w = np.ones(e - s, np.float32)
    pos = np.arange(e - s, dtype=np.float32) + 0.5
    if i > 0:
        ov = spans[i - 1][1] - s
        m = ov / 4.0  # the outermost quarter of an overlap sees reflect padding: weight 0
        w *= _ramp((pos - m) / max(ov - 2 * m, 1.0))
    if i < len(spans) - 1:
        ov = e - spans[i + 1][0]
        m = ov / 4.0
        w *= _ramp(((e - s) - pos - m) / max(ov - 2 * m, 1.0))
    return w


def _ramp(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32) + 1e-6  # never exactly 0: no 0/0


def blend_tiles(rgb: np.ndarray, ys: list[tuple[int, int]], xs: list[tuple[int, int]],
                run_tile: Callable[[np.ndarray], np.ndarray], on_tile: Callable[[], None] | None = None) -> np.ndarray:
    """Stylize `rgb` (`[H, W, 3]` uint8) tile by tile over the spans `ys` x `xs` (`plan_axis`) and blend the tiles
    with raised-cosine windows; returns `[H, W, 3]` uint8. `run_tile(crop uint8 [th, tw, 3]) -> [th, tw, 3]`
    float in [-1, 1]; `on_tile()` after each tile (progress). Memory: two float32 accumulators of the image's size."""
    h, w = rgb.shape[:2]
    acc_img = np.zeros((h, w, 3), np.float32)
    acc_w = np.zeros((h, w, 1), np.float32)
    for i, (y0, y1) in enumerate(ys):
        wy = _window(ys, i)
        for j, (x0, x1) in enumerate(xs):
            arr = run_tile(rgb[y0:y1, x0:x1])
            win = (wy[:, None] * _window(xs, j)[None, :])[:, :, None]
            acc_img[y0:y1, x0:x1] += arr * win
            acc_w[y0:y1, x0:x1] += win
            if on_tile:
                on_tile()
    acc_img /= acc_w
    del acc_w
    # [-1, 1] -> uint8, in place to keep peak memory at the accumulators' size
    acc_img += 1.0
    acc_img *= 127.5
    acc_img += 0.5
    np.clip(acc_img, 0, 255, out=acc_img)
    return acc_img.astype(np.uint8)


def tile_spans(h: int, w: int, tile: int, overlap: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The row and column spans of the tiles of an `h` x `w` image (tiles of at least 16 px; overlap at most half
    a tile)."""
    tile = max(16, int(tile))
    overlap = max(0, min(int(overlap), tile // 2))
    return plan_axis(h, tile, overlap), plan_axis(w, tile, overlap)


def tiles_for(h: int, w: int, tile: int, overlap: int) -> int:
    ys, xs = tile_spans(h, w, tile, overlap)
    return len(ys) * len(xs)

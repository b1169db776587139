"""The ink term: outlines along the photo's strongest edges, as much ink as the style set shows.

What the known-answer benchmark found (docs/benchmarks.md, issue #18): at CPU scale the unpaired losses never
lead a generator to draw a style's outlines, although the same generator draws them within minutes when it is
told the answer. The discriminators see patches; a patch with dense dark strokes is "cartoon" to them wherever
the strokes lie, so the generator lays strokes as a texture (grids, ripples) or, with the colour anchor, none
at all. Nothing in the losses says where a cartoon's lines go.

This term says it, with no knowledge of how a style draws its lines beyond what its images show:
- "ink" is the morphological black-hat of the luma (closing minus image, a `INK_KERNEL` square): how much
  darker a pixel is than its surroundings once thin dark structures are filled in. A flat region or a step
  edge has none; a drawn line has its contrast.
- the style set gives the distribution of ink values (its quantile function), the photo set the distribution of
  edge scores (gradient magnitude of the lightly blurred luma; ridge pixels, Canny's non-maximum suppression,
  rank first, so a line is one ridge wide and not the blur's width);
- the target (`InkMap`, fitted once per run) puts the style's ink on the photo's pixels in the order of their edge
  score (the monotone, one-dimensional optimal transport between the two distributions): the strongest edges
  get the darkest lines, a style with a tenth of its pixels inked inks a tenth of the photo, a style without
  lines asks for none.
The generator's raw output pays for ink missing below the target, and `STRAY_INK` as much for ink above both the
target and the photo's own ink: dark details of the photo (an eye, a window frame) may stay, a stroke the photo
does not have and the target does not ask for may not. Sharpness, width and darkness of the lines follow the
style set; their position follows the photo.

White-box's init phase reconstructs the photo with the target drawn in (`draw_ink`, on the palette-graded photo)
and pays the same term, so the GAN phase starts from a generator that already draws lines: within the demo's
minutes the GAN phase alone does not get there (docs/benchmarks.md, thirteenth session).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import read_image
from .losses import fp32, luma
from .palette import evenly_spaced
from .representations import tensor_to_uint8, uint8_to_tensor

INK_KERNEL = 5  # closes lines up to 4 px wide at the training crop's scale
EDGE_SIGMA = 1.0  # px: the blur before the photo's gradient, so noise and fine texture are not "edges"
# Stray ink (above both the target and the photo's own ink) costs half of ink missing where the target asks for it.
# Measured on the benchmark's warm look (docs/benchmarks.md, twelfth session): charged in full, and everywhere, the
# generator met the term by blurring away every dark detail (outline gap 0.12 at weight 50); at 0.2 it filled the
# photo with a maze of strokes; 0.5 draws lines along edges (0.20), and sparing the photo's own ink keeps it sharp.
STRAY_INK = 0.5
QUANTILES = 1024  # rows of the InkMap's tables
FIT_IMAGES = 64  # images of each set the InkMap is fitted on, evenly spaced over the set
FIT_PIXELS = 65536  # at most about this many pixels of each (whole images at native scale; film frames are large)
RIDGE_RANK = 10.0  # added to a ridge pixel's edge score; gradient magnitudes of the luma in [-1, 1] stay below 2


def black_hat(y: torch.Tensor, k: int = INK_KERNEL) -> torch.Tensor:
    """`[N, 1, H, W]` -> `[N, 1, H, W]` >= 0: closing (dilation then erosion, a k x k square, edges replicated)
    minus `y`."""
    p = k // 2
    dilated = F.max_pool2d(F.pad(y, (p, p, p, p), mode="replicate"), k, stride=1)
    closed = -F.max_pool2d(F.pad(-dilated, (p, p, p, p), mode="replicate"), k, stride=1)
    return closed - y


def _gaussian_blur(y: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=y.dtype, device=y.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def edge_strength(photo: torch.Tensor, sigma: float = EDGE_SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """`[N, 3, H, W]` RGB in [-1, 1] -> (magnitude, ridge), each `[N, 1, H, W]`: the gradient magnitude (central
    differences) of the blurred luma, and whether a pixel is its local maximum across the edge (Canny's non-maximum
    suppression, the gradient direction in four bins), so that lines are one ridge wide, not the blur's width."""
    y = F.pad(_gaussian_blur(luma(photo), sigma), (1, 1, 1, 1), mode="replicate")
    gx = (y[:, :, 1:-1, 2:] - y[:, :, 1:-1, :-2]) / 2
    gy = (y[:, :, 2:, 1:-1] - y[:, :, :-2, 1:-1]) / 2
    mag = torch.sqrt(gx * gx + gy * gy)
    m = F.pad(mag, (1, 1, 1, 1), mode="replicate")
    h, w = mag.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return m[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    # direction bin of the gradient (across the edge): 0 horizontal, 1 diagonal /, 2 vertical, 3 diagonal \
    angle = torch.remainder(torch.atan2(gy, gx), torch.pi)
    bins = torch.remainder(torch.round(angle / (torch.pi / 4)), 4)
    neighbours = ((at(0, 1), at(0, -1)), (at(1, 1), at(-1, -1)), (at(1, 0), at(-1, 0)), (at(1, -1), at(-1, 1)))
    ridge = torch.zeros_like(mag, dtype=torch.bool)
    for k, (a, b) in enumerate(neighbours):
        ridge |= (bins == k) & (mag >= a) & (mag >= b)
    return mag, ridge & (mag > 0)


def edge_score(photo: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` RGB in [-1, 1] -> `[N, 1, H, W]`: the gradient magnitude, plus `RIDGE_RANK` on ridge pixels so that
    every ridge pixel ranks above every other (a line is one ridge wide, not the blur's width)."""
    mag, ridge = edge_strength(photo)
    return mag + ridge * RIDGE_RANK


class InkMap:
    """The ink each photo pixel should carry: a fixed monotone map from a pixel's edge score to an ink value, fitted
    once so that the photo set's distribution of edge scores lands on the style set's distribution of ink (the
    one-dimensional optimal transport between the two, as quantile tables).

    Fitted on whole images at their own scale (training crops are cut at native scale), so the same pixel gets the same
    target at every step. An earlier target re-ranked each batch against the current style batch: with a sparse style
    a pixel was inked in some steps and not in others, and a generator that regresses to it learns the median, no line
    (docs/benchmarks.md, thirteenth session)."""

    def __init__(self, scores: torch.Tensor, ink: torch.Tensor):
        # `[QUANTILES]` each, ascending: quantile q of the photos' edge scores and of the cartoons' ink
        self.scores = scores.float() + torch.arange(scores.numel()) * 1e-7  # strictly increasing, for the lookup
        self.ink = ink.float()
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, photos: Sequence[Path], style: Sequence[Path], limit: int = FIT_IMAGES) -> "InkMap":
        def values(paths: Sequence[Path], fn) -> torch.Tensor:
            out = []
            for path in evenly_spaced(paths, limit):
                rgb = uint8_to_tensor(read_image(path)[None])  # [1, 3, H, W] in [-1, 1]
                v = fn(rgb).flatten()
                out.append(v[:: max(1, v.numel() // FIT_PIXELS)])  # a film frame's millions of pixels: a strided share
            v = torch.cat(out).double().sort().values
            return v[(torch.linspace(0, 1, QUANTILES, dtype=torch.float64) * (v.numel() - 1)).round().long()]

        return cls(values(photos, edge_score), values(style, lambda x: black_hat(luma(x))))

    @torch.no_grad()
    @fp32
    def __call__(self, photo: torch.Tensor) -> torch.Tensor:
        """`[N, 3, H, W]` RGB in [-1, 1] -> `[N, 1, H, W]` >= 0, linear between the table's quantiles."""
        on = self._on.get(photo.device)
        if on is None:
            on = self._on[photo.device] = (self.scores.to(photo.device), self.ink.to(photo.device))
        xs, ys = on
        score = edge_score(photo)
        flat = score.flatten().contiguous()
        i = torch.searchsorted(xs, flat).clamp(1, xs.numel() - 1)
        w = ((flat - xs[i - 1]) / (xs[i] - xs[i - 1])).clamp(0, 1)
        return (ys[i - 1] + w * (ys[i] - ys[i - 1])).view_as(score)

    def describe(self) -> str:
        """One line: the share of pixels the map inks (target above 0.3, about a fifth of the luma range)."""
        share = float((self.ink > 0.3).double().mean())
        return f"ink above 0.3 on {100 * share:.0f} % of pixels, on the photos' strongest edges"


@torch.no_grad()
def lift_ink(rgb: np.ndarray) -> np.ndarray:
    """`[H, W, 3] uint8 RGB` -> the same with its ink lifted out: each pixel's luma raised, all channels alike, by its
    black-hat (the inverse of `draw_ink`), so thin dark lines take their surroundings' lightness and keep their hue.

    The colour anchor's palette is fitted on images passed through this when ink is drawn separately: fitted on the
    style's pixels as they are, the palette already darkens by the style's lines, and the ink drawn on top darkens
    again (held-out pastel look, target itself: colour 0.462 and a 16.5-level cast; with both sets' ink lifted
    before the fit 0.575 and 8.1; docs/benchmarks.md, fourteenth session)."""
    x = uint8_to_tensor(rgb[None])  # [1, 3, H, W] in [-1, 1]
    return tensor_to_uint8(x + black_hat(luma(x)))[0]


@torch.no_grad()
def draw_ink(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`image` `[N, 3, H, W]` RGB in [-1, 1] with `target` (`[N, 1, H, W]`, an `InkMap` output) drawn in: each pixel's
    luma lowered, all channels alike, until its ink (black-hat) is at least the target's; `[N, 3, H, W]` in [-1, 1]."""
    y = luma(image)
    lowered = torch.minimum(y, y + black_hat(y) - target)  # closing minus target
    return (image - (y - lowered)).clamp(-1, 1)


@fp32
def ink_loss(fake: torch.Tensor, photo: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The ink of `fake` (G(`photo`), both `[N, 3, H, W]` RGB in [-1, 1]) against `target` (`InkMap`,
    `[N, 1, H, W]`): per pixel, the ink missing below the target plus `STRAY_INK` times the ink above both the
    target and the photo's own ink (a dark detail of the photo, an eye or a window frame, may stay)."""
    ink = black_hat(luma(fake))
    with torch.no_grad():
        allowed = torch.maximum(target, black_hat(luma(photo)))
    return (F.relu(target - ink) + STRAY_INK * F.relu(ink - allowed)).mean()

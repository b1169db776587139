"""Differentiable augmentation of everything a discriminator sees (DiffAugment, Zhao et al. 2020).

A style set of tens of images is small enough for a discriminator to learn by heart within a few hundred steps;
its gradients then describe those images' particulars more than their look, and a generator that follows them
fits the images (on the known-answer benchmark, a White-box fine-tune on 10 style images lost colour-gap progress
the longer it ran: 0.371 at 333 steps, 0.356 at 1000; with this, 0.385 and 0.387; docs/benchmarks.md). The same
random translation and cutout applied to real and generated images before the discriminator (in its own update
and in the generator's) keep it from memorizing positions, while what makes the style (its palette, flat regions,
outlines) survives them. Colour is not augmented: it is part of the style.

Random draws come from torch's global generator, which checkpoints save, so a resumed run draws the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSLATION = 1 / 8  # of the side, each way (DiffAugment's default)
CUTOUT = 1 / 2  # side of the cut-out square, as a share of the image's side


def translate(x: torch.Tensor, ratio: float = TRANSLATION) -> torch.Tensor:
    """Shift each image of `[N, C, H, W]` by its own whole-pixel offset of up to `ratio` of its side each way,
    filling with zeros (mid-grey in [-1, 1])."""
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio)), max(1, int(w * ratio))
    dy = torch.randint(-sy, sy + 1, (n,)).tolist()
    dx = torch.randint(-sx, sx + 1, (n,)).tolist()
    padded = F.pad(x, (sx, sx, sy, sy))
    return torch.stack([padded[i, :, sy - dy[i]:sy - dy[i] + h, sx - dx[i]:sx - dx[i] + w] for i in range(n)])


def cutout(x: torch.Tensor, ratio: float = CUTOUT) -> torch.Tensor:
    """Zero one random square of `ratio` of the side in each image of `[N, C, H, W]` (it may reach past an edge)."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio)), max(1, int(w * ratio))
    cy = torch.randint(0, h, (n, 1, 1)).to(x.device)  # the square's centre
    cx = torch.randint(0, w, (n, 1, 1)).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - cy + ch // 2  # 0 .. ch-1 inside the square
    xs = torch.arange(w, device=x.device).view(1, 1, w) - cx + cw // 2
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)  # [N, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


def augment(x: torch.Tensor, policy: str | None) -> torch.Tensor:
    """`x` (`[N, C, H, W]`, any range centred on 0) as `policy` (`TrainConfig.augment`: "none", "translation" or
    "translation,cutout") transforms it; "none" (or None: a config not resolved against a recipe's defaults)
    returns it as it is."""
    if policy in (None, "none"):
        return x
    parts = policy.split(",")
    if "translation" in parts:
        x = translate(x)
    if "cutout" in parts:
        x = cutout(x)
    return x

"""The colour anchor's target: photos graded to the style set's colour statistics.

AnimeGAN's colour loss ties G(photo) to the photo's own colours (L1 on Y, Huber on U and V). That keeps
a short run from drifting, but it also forbids the one thing a style's palette is: the same scene in other
colours (warmer, more saturated, lighter). The discriminator alone has to pull against it, slowly, and
in a short run the pull mostly shows as a cast.

Here the anchor's target is the photo moved to the style set's colour statistics: the linear
Monge-Kantorovich map between the two sets' YUV distributions (the affine map that moves the photos'
mean and covariance onto the style set's with the least displacement; colour transfer in the manner
of Reinhard et al. 2001 and Pitie & Kokaram 2007), computed once from the training sets at the start.
Per pixel, the generator is still anchored to the photo's layout of colours (which region is which
colour), at the style's palette. A style set coloured like the photos gives the identity map, and
AnimeGAN's loss unchanged; `--color-target photo` keeps the reference loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ..fileio import read_image

# RGB in [0, 1] -> YUV rows, as losses._YUV (the colour loss's space)
_YUV = np.array([
    [0.299, 0.587, 0.114],
    [-0.14714119, -0.28886916, 0.43601035],
    [0.61497538, -0.51496512, -0.10001026],
])
STAT_IMAGES = 256  # at most this many images per set, evenly spaced over the sorted list
STAT_SIDE = 64  # each scaled so its short side is this (statistics of colours, not of detail)


def color_stats(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(mean `[3]`, covariance `[3, 3]`) of the YUV pixels of up to STAT_IMAGES of `paths`."""
    if not paths:
        raise ValueError("no images to measure")
    idx = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), STAT_IMAGES)).round().astype(int))
    pixels = []
    for i in idx:
        rgb = read_image(paths[i])
        s = STAT_SIDE / min(rgb.shape[:2])
        if s < 1:
            rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        pixels.append(rgb.reshape(-1, 3).astype(np.float64) / 255.0 @ _YUV.T)
    yuv = np.concatenate(pixels)
    return yuv.mean(0), np.cov(yuv, rowvar=False)


def _sqrtm(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def transfer_map(src: tuple[np.ndarray, np.ndarray], dst: tuple[np.ndarray, np.ndarray],
                 eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """(A `[3, 3]`, b `[3]`) with y' = A y + b moving the distribution `src` (mean, cov) onto `dst`: the
    linear Monge-Kantorovich solution A = S^-1/2 (S^1/2 D S^1/2)^1/2 S^-1/2."""
    (mu_s, cov_s), (mu_d, cov_d) = src, dst
    cov_s = cov_s + eps * np.eye(3)
    cov_d = cov_d + eps * np.eye(3)
    s_half = _sqrtm(cov_s)
    s_inv_half = np.linalg.inv(s_half)
    a = s_inv_half @ _sqrtm(s_half @ cov_d @ s_half) @ s_inv_half
    return a, mu_d - a @ mu_s


class PaletteMap:
    """The fitted map, applied to YUV tensors `[N, 3, H, W]` on any device."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, photos: Sequence[Path], style: Sequence[Path]) -> "PaletteMap":
        return cls(*transfer_map(color_stats(photos), color_stats(style)))

    def __call__(self, yuv: torch.Tensor) -> torch.Tensor:
        on = self._on.get(yuv.device)
        if on is None:
            on = self._on[yuv.device] = (torch.tensor(self.a, dtype=torch.float32, device=yuv.device),
                                         torch.tensor(self.b, dtype=torch.float32, device=yuv.device))
        a, b = on
        return torch.einsum("ij,njhw->nihw", a, yuv.float()) + b.view(1, 3, 1, 1)

    def describe(self) -> str:
        """One line: the mean shift of Y, U, V and the chroma gain (geometric mean of the UV block's scale)."""
        gain = float(np.sqrt(abs(np.linalg.det(self.a[1:, 1:]))))
        return (f"luma x{self.a[0, 0]:.2f} {self.b[0]:+.3f}, chroma x{gain:.2f}, "
                f"U {self.b[1]:+.3f}, V {self.b[2]:+.3f}")


def fit_for(config, groups, photo_set: str, style_set: str, log) -> PaletteMap | None:
    """The anchor's map for a run (`config.color_target == "style"`) from the training files of
    `photo_set` and `style_set` in `groups` (`batches.GroupFiles`, held-out photos already left out);
    None for the reference loss. Logs the map in one line."""
    if getattr(config, "color_target", "photo") != "style":
        return None
    files = {s: f for g in groups for s, f in g.files.items()}
    palette = PaletteMap.fit(files[photo_set], files[style_set])
    log(f"colour anchor: photos graded to the '{style_set}' set's colour statistics ({palette.describe()}); "
        f"--color-target photo anchors to the photos' own colours")
    return palette

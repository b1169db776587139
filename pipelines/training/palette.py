"""The colour anchor's target: photos graded to the style set's colour statistics.

AnimeGAN's colour loss ties G(photo) to the photo's own colours (L1 on Y, Huber on U and V). That keeps
a short run from drifting, but it also forbids the one thing a style's palette is: the same scene in other
colours (warmer, more saturated, lighter). The discriminator alone has to pull against it, slowly, and
in a short run the pull mostly shows as a cast.

Here the anchor's target is the photo moved to the style set's colour statistics: the linear
Monge-Kantorovich map between the two sets' CIELAB distributions (the affine map that moves the photos'
mean and covariance onto the style set's with the least displacement; colour transfer in the manner
of Reinhard et al. 2001 and Pitie & Kokaram 2007), computed once from the training sets at the start.
Per pixel, the generator is still anchored to the photo's layout of colours (which region is which
colour), at the style's palette. A style set coloured like the photos gives the identity map, and
AnimeGAN's loss unchanged; `--color-target photo` keeps the reference loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ..fileio import read_image

STAT_IMAGES = 256  # at most this many images per set, evenly spaced over the sorted list
STAT_SIDE = 64  # each scaled so its short side is this (statistics of colours, not of detail)

# sRGB (D65) <-> CIE XYZ, and the D65 white point: CIELAB as scikit-image and OpenCV define it.
_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE = torch.tensor([0.950456, 1.0, 1.088754], dtype=torch.float64)
_EPS, _KAPPA = (6 / 29) ** 3, (29 / 6) ** 2 / 3


def rgb_to_lab(rgb01: torch.Tensor) -> torch.Tensor:
    """`[..., 3]` sRGB in [0, 1] -> CIELAB `[..., 3]` (L in [0, 100], a/b about +-100)."""
    x = rgb01.double().clamp(0, 1)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = lin @ _RGB2XYZ.to(x.device).T / _WHITE.to(x.device)
    f = torch.where(xyz > _EPS, xyz.clamp_min(1e-12) ** (1 / 3), _KAPPA * xyz + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB `[..., 3]` -> sRGB `[..., 3]` in [0, 1] (out-of-gamut colours clipped)."""
    lab = lab.double()
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], dim=-1)
    xyz = torch.where(f > 6 / 29, f ** 3, (f - 4 / 29) / _KAPPA) * _WHITE.to(lab.device)
    lin = (xyz @ _XYZ2RGB.to(lab.device).T).clamp(0, 1)
    return torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055, 12.92 * lin).clamp(0, 1)


def evenly_spaced(paths: Sequence[Path], limit: int) -> list[Path]:
    """Up to `limit` of `paths`, evenly spaced over the list (the set's statistics without reading all of it)."""
    if not paths:
        raise ValueError("no images to measure")
    idx = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), limit)).round().astype(int))
    return [paths[i] for i in idx]


Prepare = Callable[[np.ndarray], np.ndarray]  # `[H, W, 3] uint8 RGB` -> the same, before the statistics


def color_stats(paths: Sequence[Path], prepare: Prepare | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean `[3]`, covariance `[3, 3]`) of the CIELAB pixels of up to STAT_IMAGES of `paths`, each passed through
    `prepare` first (at its own scale) when given."""
    pixels = []
    for path in evenly_spaced(paths, STAT_IMAGES):
        rgb = read_image(path)
        if prepare is not None:
            rgb = prepare(rgb)
        s = STAT_SIDE / min(rgb.shape[:2])
        if s < 1:
            rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        pixels.append(rgb_to_lab(torch.from_numpy(rgb.reshape(-1, 3)) / 255.0).numpy())
    lab = np.concatenate(pixels)
    return lab.mean(0), np.cov(lab, rowvar=False)


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
    """The fitted map in CIELAB, applied to RGB images `[N, 3, H, W]` in [0, 1] on any device."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, photos: Sequence[Path], style: Sequence[Path], prepare: Prepare | None = None) -> "PaletteMap":
        """The map from the photos' colour statistics to the style's, both sets' images passed through `prepare`
        first when given (the White-box recipe lifts the dark lines out of both: `ink.lift_ink`)."""
        return cls(*transfer_map(color_stats(photos, prepare), color_stats(style, prepare)))

    @torch.no_grad()
    def __call__(self, rgb01: torch.Tensor) -> torch.Tensor:
        """`[N, 3, H, W]` RGB in [0, 1] -> the same image at the style's palette, `[N, 3, H, W]` float32 in [0, 1]."""
        on = self._on.get(rgb01.device)
        if on is None:
            on = self._on[rgb01.device] = (torch.tensor(self.a, dtype=torch.float64, device=rgb01.device),
                                           torch.tensor(self.b, dtype=torch.float64, device=rgb01.device))
        a, b = on
        lab = rgb_to_lab(rgb01.permute(0, 2, 3, 1)) @ a.T + b
        return lab_to_rgb(lab).permute(0, 3, 1, 2).float()

    def describe(self) -> str:
        """One line: the lightness gain and shift, the chroma gain (geometric mean of the a*b* block's scale) and
        the a*, b* shifts of a neutral grey (L 50)."""
        gain = float(np.sqrt(abs(np.linalg.det(self.a[1:, 1:]))))
        grey = self.a @ np.array([50.0, 0.0, 0.0]) + self.b
        return (f"lightness x{self.a[0, 0]:.2f} {self.b[0]:+.1f}, chroma x{gain:.2f}, "
                f"a* {grey[1]:+.1f}, b* {grey[2]:+.1f} at mid grey")


def fit_for(config, groups, photo_set: str, style_set: str, log,
            prepare: Prepare | None = None) -> PaletteMap | None:
    """The anchor's map for a run (`config.color_target == "style"`) from the training files of
    `photo_set` and `style_set` in `groups` (`batches.GroupFiles`, held-out photos already left out), the images
    passed through `prepare` first when given; None for the reference loss. Logs the map in one line."""
    if getattr(config, "color_target", "photo") != "style":
        return None
    files = {s: f for g in groups for s, f in g.files.items()}
    palette = PaletteMap.fit(files[photo_set], files[style_set], prepare)
    log(f"colour anchor: photos graded to the '{style_set}' set's colour statistics ({palette.describe()}); "
        f"--color-target photo anchors to the photos' own colours")
    return palette

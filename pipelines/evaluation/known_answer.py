"""How much of the way from a photo to its known answer an output went (`pipelines.data.cartoon`).

For a held-out photo P, its answer A = T(P) and a generator's output O (all `[H, W, 3] uint8 RGB`, one
size), each figure is 0 for O = P and 1 for O = A:

- colour: 1 - dE(O, A) / dE(P, A), dE the mean CIEDE2000 difference after a light blur of both
  (`metrics.color_shift`: texture and lines count less than the overall colour). Negative: the output
  is further from the answer's colours than the photo was (a colour cast).
- outlines: how much darker than their surroundings the output is on the answer's outline pixels,
  relative to the answer's own contrast there: (c(O) - c(P)) / (c(A) - c(P)), where c(X) is the
  mean luma of X in a ring around the outlines minus its mean on them.
- structure: SSIM to the answer, (s(O) - s(P)) / (1 - s(P)), s(X) = SSIM(X, A); reported with s(O)
  and s(P) themselves.
- cast: per RGB channel, the output's mean minus the answer's, in levels; `max_cast` the largest.

Set figures are ratios of sums over the set (a photo already close to its answer weighs less), so one
near-zero denominator cannot dominate them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .metrics import color_shift, ssim

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def outline_contrast(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Mean luma of `rgb` in a ring (3 px at 256 px short side) around `mask` minus its mean on `mask`."""
    if not mask.any():
        return 0.0
    short = min(mask.shape)
    k = max(3, round(3 * short / 256) * 2 + 1)
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~mask
    if not ring.any():
        return 0.0
    y = _luma(rgb)
    return float(y[ring].mean() - y[mask].mean())


@dataclass
class GapTerms:
    """The raw sums behind the gap figures of one or more images."""

    de_out: float = 0.0
    de_photo: float = 0.0
    c_out: float = 0.0
    c_photo: float = 0.0
    c_answer: float = 0.0
    s_out: float = 0.0
    s_photo: float = 0.0
    cast: np.ndarray | None = None  # [3] sum of per-image channel mean differences
    n: int = 0

    def add(self, other: "GapTerms") -> None:
        self.de_out += other.de_out
        self.de_photo += other.de_photo
        self.c_out += other.c_out
        self.c_photo += other.c_photo
        self.c_answer += other.c_answer
        self.s_out += other.s_out
        self.s_photo += other.s_photo
        self.cast = other.cast.copy() if self.cast is None else self.cast + other.cast
        self.n += other.n

    def figures(self) -> dict[str, float]:
        n = max(1, self.n)
        cast = self.cast / n if self.cast is not None else np.zeros(3)
        s_out, s_photo = self.s_out / n, self.s_photo / n
        return {
            "color_closed": 1.0 - self.de_out / max(self.de_photo, 1e-9),
            "outline_closed": (self.c_out - self.c_photo) / max(self.c_answer - self.c_photo, 1e-9),
            "ssim_closed": (s_out - s_photo) / max(1.0 - s_photo, 1e-9),
            "ssim_output": s_out,
            "ssim_photo": s_photo,
            "de_output": self.de_out / n,
            "de_photo": self.de_photo / n,
            "cast_r": float(cast[0]), "cast_g": float(cast[1]), "cast_b": float(cast[2]),
            "max_cast": float(np.abs(cast).max()),
        }


def gap_terms(photo: np.ndarray, output: np.ndarray, answer: np.ndarray, outlines: np.ndarray) -> GapTerms:
    """The sums for one image; `outlines` is the answer's `[H, W] bool` outline mask (`cartoon.outline_mask`)."""
    if not (photo.shape == output.shape == answer.shape):
        raise ValueError(f"photo, output and answer differ in size: {photo.shape}, {output.shape}, {answer.shape}")
    cast = output.reshape(-1, 3).astype(np.float64).mean(0) - answer.reshape(-1, 3).astype(np.float64).mean(0)
    return GapTerms(
        de_out=color_shift(answer, output), de_photo=color_shift(answer, photo),
        c_out=outline_contrast(output, outlines), c_photo=outline_contrast(photo, outlines),
        c_answer=outline_contrast(answer, outlines),
        s_out=ssim(answer, output), s_photo=ssim(answer, photo), cast=cast, n=1,
    )


def gap_figures(photos: Sequence[np.ndarray], outputs: Sequence[np.ndarray], answers: Sequence[np.ndarray],
                outlines: Sequence[np.ndarray]) -> dict[str, float]:
    """Set figures (see the module doc) over aligned lists of images."""
    total = GapTerms()
    for p, o, a, m in zip(photos, outputs, answers, outlines, strict=True):
        total.add(gap_terms(p, o, a, m))
    return total.figures()

"""Does a colorizer follow its reference? Figures that see "the reference is ignored" and "every sketch gets the
same colours", which the same-reference protocol (a warped copy of the ground truth) cannot see.

All take `colorize(sketches, references)`: sketches `[N, H, W] uint8` (dark lines on white), references
`[N, S, S, 3] uint8` RGB, returning `[N, H, W, 3] uint8` RGB, so that they measure a trained network
(`network_colorizer`) or anything else with that contract.

- `tint_following`: a warm and a cool tint of each held-out illustration as references; the outputs'
  red-minus-blue balance difference as a fraction of the references' own (1: follows fully, 0: ignores,
  < 0: the wrong way).
- `hue_following`: the illustration's hue turned by +60 and -60 degrees; the signed difference of the outputs'
  mean hues, as a fraction of the references' 120 (saturation-weighted circular means).
- `cross_reference`: every sketch with every other held-out illustration as reference; the share of outputs
  whose colour histogram (8x8x8 RGB, Bhattacharyya distance: `metrics`) is nearer their own reference's than any other's (chance: 1/N), the
  mean distance itself (0: the reference's colours in its proportions, 1: none of them), and how much outputs of
  one sketch differ between references (levels).
- `line_contrast`: how much darker the outputs are on the sketch's lines than off them (levels): lines kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .metrics import color_histogram, histogram_distance

Colorize = Callable[[np.ndarray, np.ndarray], np.ndarray]

TINT_GAIN = 0.4  # warm: red x1.4, blue x0.6; cool: the reverse
HUE_TURN = 60.0


def tint(rgb: np.ndarray, warm: bool) -> np.ndarray:
    """`[..., 3] uint8` with red and blue scaled apart: warm (red up, blue down) or cool."""
    g = np.array([1 + TINT_GAIN, 1.0, 1 - TINT_GAIN] if warm else [1 - TINT_GAIN, 1.0, 1 + TINT_GAIN], np.float32)
    return np.clip(np.rint(rgb.astype(np.float32) * g), 0, 255).astype(np.uint8)


def turn_hue(rgb: np.ndarray, degrees: float) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + degrees * 256.0 / 360.0) % 256.0
    return cv2.cvtColor(np.clip(np.rint(hsv), 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def red_minus_blue(rgb: np.ndarray) -> float:
    return float(rgb[..., 0].astype(np.float64).mean() - rgb[..., 2].astype(np.float64).mean())


def mean_hue(rgb: np.ndarray) -> float:
    """Saturation-weighted circular mean hue in degrees."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV_FULL).astype(np.float64)
    angle = hsv[..., 0] * (2 * np.pi / 256.0)
    weight = hsv[..., 1] * hsv[..., 2] / 255.0
    return float(np.degrees(np.arctan2((weight * np.sin(angle)).sum(), (weight * np.cos(angle)).sum())))


def _signed_degrees(a: float, b: float) -> float:
    return float((a - b + 180.0) % 360.0 - 180.0)


@dataclass
class ReferenceFollowing:
    tint: float  # share of the references' red-minus-blue difference that the outputs show
    hue: float  # share of the references' 120-degree hue difference that the outputs show
    nearest: float  # share of cross-reference outputs nearest their own reference's histogram
    chance: float  # what `nearest` would be by chance
    distance: float  # mean Bhattacharyya distance of those outputs' colour histograms to their own reference's
    spread: float  # mean difference (levels) between outputs of one sketch under different references
    lines: float  # output darkness on the sketch's lines against off them (levels)

    def as_dict(self) -> dict[str, float]:
        return {"ref_tint": self.tint, "ref_hue": self.hue, "ref_nearest": self.nearest, "ref_chance": self.chance,
                "ref_distance": self.distance, "ref_spread": self.spread, "line_contrast": self.lines}


def tint_following(colorize: Colorize, sketches: np.ndarray, illustrations: np.ndarray) -> float:
    warm = colorize(sketches, tint(illustrations, True))
    cool = colorize(sketches, tint(illustrations, False))
    got = [red_minus_blue(w) - red_minus_blue(c) for w, c in zip(warm, cool)]
    want = [red_minus_blue(tint(i, True)) - red_minus_blue(tint(i, False)) for i in illustrations]
    return float(np.mean([g / max(1.0, w) for g, w in zip(got, want)]))


def hue_following(colorize: Colorize, sketches: np.ndarray, illustrations: np.ndarray) -> float:
    plus = colorize(sketches, np.stack([turn_hue(i, HUE_TURN) for i in illustrations]))
    minus = colorize(sketches, np.stack([turn_hue(i, -HUE_TURN) for i in illustrations]))
    return float(np.mean([_signed_degrees(mean_hue(p), mean_hue(m)) / (2 * HUE_TURN) for p, m in zip(plus, minus)]))


def cross_reference(colorize: Colorize, sketches: np.ndarray,
                    illustrations: np.ndarray) -> tuple[float, float, float, float]:
    """(nearest share, chance, distance to the own reference, spread in levels) with every illustration as every
    sketch's reference."""
    n = len(sketches)
    ref_hists = [color_histogram(r) for r in illustrations]
    hits, distances, spreads = [], [], []
    for i in range(n):
        outs = colorize(np.repeat(sketches[i:i + 1], n, 0), illustrations)  # sketch i under each reference
        for j in range(n):
            if j == i:
                continue  # the sketch's own illustration is the same-reference protocol's case
            h = color_histogram(outs[j])
            d = [histogram_distance(h, r) for r in ref_hists]
            hits.append(float(int(np.argmin(d)) == j))
            distances.append(d[j])
        others = [outs[j].astype(np.float32) for j in range(n) if j != i]
        spreads += [float(np.abs(a - b).mean()) for k, a in enumerate(others) for b in others[k + 1:]]
    return float(np.mean(hits)), 1.0 / n, float(np.mean(distances)), float(np.mean(spreads)) if spreads else 0.0


def line_contrast(outputs: np.ndarray, sketches: np.ndarray) -> float:
    gray = outputs.astype(np.float32).mean(-1)
    on = sketches < 128
    return float(gray[~on].mean() - gray[on].mean()) if on.any() and (~on).any() else 0.0


def reference_following(colorize: Colorize, sketches: np.ndarray, illustrations: np.ndarray) -> ReferenceFollowing:
    """All the figures above for held-out `sketches` `[N, H, W]` and their `illustrations` `[N, H, W, 3]` (N >= 2)."""
    nearest, chance, distance, spread = cross_reference(colorize, sketches, illustrations)
    same = colorize(sketches, illustrations)
    return ReferenceFollowing(tint=tint_following(colorize, sketches, illustrations),
                              hue=hue_following(colorize, sketches, illustrations),
                              nearest=nearest, chance=chance, distance=distance, spread=spread, lines=line_contrast(same, sketches))


def network_colorizer(generator, style_network, device="cpu") -> Colorize:
    """`Colorize` over a colorizer network (`generator(sketch [N,1,H,W], style [N,4096]) -> [N,3,H,W]`, all in
    [-1, 1]) and its VGG19 fc1 (`style_network([N,3,S,S] in [-1, 1]) -> [N, 4096]`)."""
    import torch

    def run(sketches: np.ndarray, references: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(sketches).float().div(127.5).sub(1)[:, None].to(device)
            r = torch.from_numpy(np.ascontiguousarray(references)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
            y = generator(x, style_network(r))
            return ((y.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    return run

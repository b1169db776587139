"""`make-sketch`: line art for every colour illustration (Style2paints' training sketches), by XDoG.

XDoG (Winnemoeller et al. 2012), the difference-of-Gaussians form used by colorization projects
(FACTS 7), on the grayscale image `I` in 0..255:

    D = G_sigma(I) - gamma * G_(k sigma)(I)
    S = 255                                       where D >= eps
    S = 255 * (1 + tanh(phi * (D - eps)))         elsewhere (clipped to 0..255)

Flat areas give D = (1 - gamma) I >= 0 > eps: white. Across an edge the wider blur reaches further into
the other side, so D dips below eps on the darker side of the edge: a line. Defaults: sigma 0.4 px
(lines about one pixel wide at the 256-512 px illustrations train at; FACTS: 0.35-0.45), k 2.5 (the
middle of 2-3), gamma 0.98 (flat areas stay white), eps -3 (on the 0-255 scale; FACTS' -0.5 drew
30% of the pixels of textured anime frames (foliage, stone walls) as lines, -3 about 13%, which reads
as line art), phi 1e9 (a hard threshold, as FACTS describes: black lines on white, no grey halos).
`--lines thick` widens every line by a pixel (a 2x2 minimum filter), the look of ink rather than pencil.

The sketch is stored as a 3-channel gray image (the manifest's images are RGB), PNG by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..progress import Reporter
from .derived import DeriveOptions, DeriveSummary, Derivation, derive

OPERATION = "sketch"
RECIPE = "xdog/1"  # bumped when the output of the same parameters changes
ILLUSTRATION_SET = "illustration"
SKETCH_SET = "sketch"
LINE_STYLES = ("thin", "thick")

XDOG_DEFAULTS: dict[str, float] = {"sigma": 0.4, "k": 2.5, "gamma": 0.98, "eps": -3.0, "phi": 1e9}


def xdog(rgb: np.ndarray, sigma: float = 0.4, k: float = 2.5, gamma: float = 0.98, eps: float = -3.0,
         phi: float = 1e9) -> np.ndarray:
    """`[H, W, 3] uint8 RGB` -> `[H, W] uint8` line art (0 lines, 255 paper), see the module doc."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g1 = cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    g2 = cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma * k, borderType=cv2.BORDER_REFLECT_101)
    d = g1 - gamma * g2
    soft = 255.0 * (1.0 + np.tanh(np.clip(phi * (d - eps), -20.0, 0.0)))  # clip: no overflow for a huge phi
    out = np.where(d >= eps, 255.0, soft)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def thicken(lines: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Dark lines `pixels` wider (a (pixels+1)-square minimum filter): `[H, W] uint8` -> same."""
    if pixels <= 0:
        return lines
    return cv2.erode(lines, np.ones((pixels + 1, pixels + 1), np.uint8))


def sketch(rgb: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The derivation's compute function: `[H, W, 3] uint8 RGB` -> its sketch as `[H, W, 3] uint8` gray."""
    xd = {k: float(params.get(k, v)) for k, v in XDOG_DEFAULTS.items()}
    lines = xdog(rgb, **xd)
    if params.get("lines", "thin") == "thick":
        lines = thicken(lines, 1)
    return np.repeat(lines[:, :, None], 3, axis=2)


def sketch_derivation(source_set: str = ILLUSTRATION_SET) -> Derivation:
    hint = (f"add colour illustrations with `animegan add-images IMAGES... --set {source_set}`"
            if source_set == ILLUSTRATION_SET else f"fill the '{source_set}' set first")
    return Derivation(OPERATION, source_set, SKETCH_SET, RECIPE, sketch, noun="illustration", hint=hint)


def make_sketch(dataset_root: str | Path, options: DeriveOptions, reporter: Reporter | None = None,
                source_set: str = ILLUSTRATION_SET) -> DeriveSummary:
    """Write the sketch twin of every record of `source_set` (default `illustration`; `style` uses the
    frames of extract-frames) under DS/sketch/, incrementally; `options.params` holds `lines`
    ("thin" or "thick") and any XDoG parameter to override. Raises `PartialFailure` if any image failed."""
    lines = options.params.get("lines", "thin")
    if lines not in LINE_STYLES:
        from ..errors import InputError

        raise InputError(None, f"--lines must be one of {', '.join(LINE_STYLES)}, not {lines!r}")
    params = {"lines": lines, **{k: float(options.params.get(k, v)) for k, v in XDOG_DEFAULTS.items()}}
    opts = DeriveOptions(size=options.size, format=options.format, workers=options.workers, batch=options.batch,
                         params=params)
    return derive(dataset_root, sketch_derivation(source_set), opts, reporter, task="drawing sketches")


# ---- per-sample variation (training) -----------------------------------------------------------
# Ranges around the defaults, so the colorizer sees many line styles and overfits to none (FACTS 7).
VARIATION = {
    "sigma": (0.3, 0.5),  # line width
    "k": (2.0, 3.0),
    "eps": (-5.0, -1.5),  # how much texture becomes lines
    "thick": 0.35,  # chance of a line a pixel wider
    "intensity": (0.55, 1.0),  # darkness of the lines: 1 black, 0.55 mid-grey pencil
    "recorded": 0.5,  # chance of using the dataset's own sketch (when it has one) instead of a fresh XDoG
}


def vary_sketch(rgb: np.ndarray, rng: np.random.Generator, recorded: np.ndarray | None = None) -> np.ndarray:
    """A freshly varied sketch of the illustration crop `[H, W, 3] uint8` -> `[H, W] uint8` (0 lines, 255 paper).

    XDoG with sigma, k and eps drawn around the defaults (or, half the time when the dataset has one, the
    recorded sketch `recorded` `[H, W, 3] uint8`: users' own extractors), then a random line thickness and
    intensity. Everything comes from `rng`, so a sample is the same on a resumed run.
    """
    v = VARIATION
    use_recorded = recorded is not None and rng.random() < v["recorded"]
    params = {k: float(rng.uniform(*v[k])) for k in ("sigma", "k", "eps")}
    thick = rng.random() < v["thick"]
    intensity = float(rng.uniform(*v["intensity"]))
    if use_recorded:
        lines = cv2.cvtColor(recorded, cv2.COLOR_RGB2GRAY) if recorded.ndim == 3 else recorded
    else:
        lines = xdog(rgb, **params)
    if thick:
        lines = thicken(lines, 1)
    ink = (255.0 - lines.astype(np.float32)) * intensity
    return np.clip(np.rint(255.0 - ink), 0, 255).astype(np.uint8)

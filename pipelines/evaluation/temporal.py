"""Temporal consistency of a stylized video: the warping error of Lai et al. (ECCV 2018).

For each pair of consecutive frames t, t+1 of the *input* video: optical flow both ways
(`pipelines.models.flow`), pixels failing Ruder et al.'s forward-backward and motion-boundary tests left
out, then the mean squared RGB difference (in [0, 1], averaged over the kept pixels and the three
channels) between output frame t and output frame t+1 warped back onto t. The video's figure is the mean
over its frame pairs.

The same figure of the input video itself is its floor: what the flow's errors, lighting changes and the
source's compression leave even for a perfectly stable result. `added = output - input` is the flicker the
stylization added. Flow always comes from the input frames (scaled to the output's size), so the
output's own artefacts cannot hide themselves by confusing the flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..models.flow import FlowEstimator, reliable, warp


@dataclass
class WarpingError:
    output: float  # warping error of the output frames
    input: float  # the same figure of the input frames (the floor)
    added: float  # output - input: the flicker the stylization added
    pairs: int  # frame pairs measured
    kept: float  # mean fraction of pixels the flow test kept


def pair_error(out_a: np.ndarray, out_b_on_a: np.ndarray, mask: np.ndarray) -> float:
    """Mean over `mask` pixels and channels of the squared difference in [0, 1] (0 when nothing is kept)."""
    n = int(mask.sum())
    if n == 0:
        return 0.0
    d = (out_a.astype(np.float32) - out_b_on_a.astype(np.float32)) / 255.0
    return float((d[mask] ** 2).mean())


def warping_error(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], flow: FlowEstimator) -> WarpingError:
    """Warping error of `outputs` with flow from `inputs` (both `[H, W, 3] uint8 RGB`, paired in order; an
    input of another size is resized to its output's). Stops at the shorter sequence."""
    out_errs, in_errs, kept = [], [], []
    prev_in = prev_out = None
    for inp, out in zip(inputs, outputs):
        if inp.shape != out.shape:
            inp = cv2.resize(inp, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_AREA)
        if prev_in is not None:
            forward, backward = flow(prev_in, inp), flow(inp, prev_in)  # t -> t+1 and back
            mask = reliable(forward, backward)
            out_errs.append(pair_error(prev_out, warp(out, forward), mask))
            in_errs.append(pair_error(prev_in, warp(inp, forward), mask))
            kept.append(float(mask.mean()))
        prev_in, prev_out = inp, out
    if not out_errs:
        return WarpingError(0.0, 0.0, 0.0, 0, 0.0)
    o, i = float(np.mean(out_errs)), float(np.mean(in_errs))
    return WarpingError(o, i, o - i, len(out_errs), float(np.mean(kept)))


def video_frames(path: str | Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video file, `[H, W, 3] uint8 RGB`, upright, at most `limit`."""
    from ..data.video import iter_frames

    for k, fr in enumerate(iter_frames(Path(path))):
        if limit is not None and k >= limit:
            return
        yield fr.image


def video_warping_error(output: str | Path, reference: str | Path, flow: FlowEstimator,
                        limit: int | None = None) -> WarpingError:
    """Warping error of the video `output` made from the video `reference` (frames paired in order)."""
    return warping_error(video_frames(reference, limit), video_frames(output, limit), flow)

"""Temporal stabilization of a video stylized frame by frame.

A generator stylizes each frame on its own, so textures and outlines that depend on small input changes
shimmer from frame to frame. The stabilizer keeps a running result and, for each new frame:

1. computes optical flow between the *input* frames t and t-1, both ways (`pipelines.models.flow`);
2. trusts a pixel where the flow passes Ruder et al.'s forward-backward and motion-boundary tests and
   where the input itself did not change along it (the previous input warped onto this one differs by
   less than `INPUT_TOLERANCE` levels): occlusions, disocclusions, new content and lighting changes take
   the current frame's output;
3. blends the previous *result*, warped along the flow, into the current frame's output with weight
   `strength` on trusted pixels (the trust map is softened over a few pixels so no seams appear):
   `result_t = w * warp(result_{t-1}) + (1 - w) * styled_t`.

The blend is recursive: a pixel's value is an exponential average along its motion path, whose weight on
frames k steps back is `strength^k`, so history fades (no error or blur accumulates beyond a few frames:
at the default 0.7, half the weight is on the last two frames).

A cut is a frame where fewer than `CUT_KEPT` of the pixels are trusted: the result restarts from the
current frame's output, unblended. The first frame is always the per-frame output.

Frames are `[H, W, 3] uint8 RGB`; the input frame must be the one the generator was given (same size).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..models.flow import DisFlow, FlowEstimator, reliable, warp

DEFAULT_STRENGTH = 0.7
# Input change (levels, max over RGB) along the flow above which a pixel is new content, not flicker.
INPUT_TOLERANCE = 24.0
# Fewer trusted pixels than this fraction: a cut (or motion too fast to follow); restart.
CUT_KEPT = 0.35
# Flow is computed with the short side at most this (then scaled up): DIS's cost grows with the pixels,
# and at 270 px it still removes 0.89 of the flicker that 360 px removes 0.92 of, for half the time (bench_video_flicker.py).
FLOW_SIDE = 270
SOFTEN_SIGMA = 1.5


@dataclass
class StepInfo:
    cut: bool  # restarted at this frame
    kept: float  # fraction of pixels blended from the previous result


class FlowPair:
    """Flow between consecutive input frames at a reduced size, both ways, and the trust map on it."""

    def __init__(self, flow: FlowEstimator | None = None, side: int = FLOW_SIDE):
        self.flow = flow or DisFlow("medium")
        self.side = side

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(`[H, W, 2]` flow from `cur` to `prev` at full size, `[H, W] float32` trust in [0, 1])."""
        h, w = cur.shape[:2]
        s = min(1.0, self.side / min(h, w))
        if s < 1.0:
            size = (max(8, round(w * s)), max(8, round(h * s)))
            a = cv2.resize(cur, size, interpolation=cv2.INTER_AREA)
            b = cv2.resize(prev, size, interpolation=cv2.INTER_AREA)
        else:
            a, b = cur, prev
        back, fwd = self.flow(a, b), self.flow(b, a)  # cur -> prev, prev -> cur
        ok = reliable(back, fwd)
        # The input must not have changed along the flow either (lighting, reflections, new content).
        diff = np.abs(a.astype(np.int16) - warp(b, back).astype(np.int16)).max(-1)
        trust = (ok & (diff <= INPUT_TOLERANCE)).astype(np.float32)
        if s < 1.0:
            back = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR) / s
            trust = cv2.resize(trust, (w, h), interpolation=cv2.INTER_LINEAR)
        return back, trust


class Stabilizer:
    """Feed frames in order with `step(input, styled)`; `reset()` between videos."""

    def __init__(self, strength: float = DEFAULT_STRENGTH, flow: FlowEstimator | None = None,
                 flow_side: int = FLOW_SIDE):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"stabilizer strength must be in [0, 1), not {strength}")
        self.strength = strength
        self.pair = FlowPair(flow, flow_side)
        self.reset()

    def reset(self) -> None:
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None  # float32, kept unrounded so rounding cannot accumulate

    def motion(self, cur_in: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Flow and trust from the previous input to `cur_in` (None for the first frame); the part of a step
        that does not need the styled frame, so a caller can run it beside the generator."""
        prev, self._prev_in = self._prev_in, cur_in
        if prev is None or prev.shape != cur_in.shape:
            return None
        return self.pair(prev, cur_in)

    def blend(self, styled: np.ndarray, motion: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, StepInfo]:
        """The stabilized frame for `styled` given `motion` from `motion()` for the same frame."""
        cur = styled.astype(np.float32)
        info = StepInfo(cut=True, kept=0.0)
        if motion is not None and self._prev_out is not None and self._prev_out.shape == cur.shape and self.strength > 0:
            back, trust = motion
            kept = float((trust > 0.5).mean())
            if kept >= CUT_KEPT:
                w = cv2.GaussianBlur(trust, (0, 0), SOFTEN_SIGMA) * trust * self.strength
                cur += w[..., None] * (warp(self._prev_out, back) - cur)
                info = StepInfo(cut=False, kept=kept)
        self._prev_out = cur
        return np.clip(cur + 0.5, 0, 255).astype(np.uint8), info

    def step(self, cur_in: np.ndarray, styled: np.ndarray) -> np.ndarray:
        out, _ = self.blend(styled, self.motion(cur_in))
        return out

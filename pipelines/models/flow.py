"""Optical flow between video frames: estimators, warping, and which pixels a flow can be trusted on.

Shared by the video evaluation (`pipelines.evaluation.temporal`: the warping error) and the video
stabilizer (`pipelines.inference.stabilize`).

Convention: `flow = estimator(a, b)` is `[H, W, 2] float32` (x, y) in pixels such that
`a(p) ~ b(p + flow(p))`: for each pixel of `a`, where it is in `b`. `warp(b, flow)` then brings `b` onto
`a`'s grid. Frames are `[H, W, 3] uint8 RGB`.

Estimators:
- `DisFlow`: OpenCV's DIS (Kroeger et al. 2016), which ships with opencv (no weights to download). Fast
  enough to run twice per frame beside a generator on a CPU.
- `RaftFlow`: torchvision's RAFT (Teed and Deng 2020) from a weights file the user gives (torchvision's
  `raft_large` or `raft_small` state dict; loaded with `weights_only=True`). More accurate on large motion;
  too slow on a CPU for the stabilizer, meant for evaluation. Needs torchvision (not a dependency: its
  build must match torch's exactly; docs/dependencies.md).

`reliable(forward, backward)` is Ruder et al. (2016)'s test: a pixel is left out when the backward flow
does not lead it back to where it started (occlusion, disocclusion) or when it sits on a motion
boundary, where flow is least accurate.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import InputError

FLOWS = ("dis", "raft")
# Ruder, Dosovitskiy and Brox (2016), "Artistic style transfer for videos", section 3.2.
FB_RELATIVE, FB_ABSOLUTE = 0.01, 0.5  # |w + w'|^2 > 0.01 (|w|^2 + |w'|^2) + 0.5: occluded
MB_RELATIVE, MB_ABSOLUTE = 0.01, 0.002  # |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002: motion boundary


class FlowEstimator(Protocol):
    name: str

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...  # [H, W, 3] uint8 x2 -> [H, W, 2] f32


class DisFlow:
    """OpenCV DIS optical flow on the luma of two frames. `preset`: "fast" or "medium" (OpenCV's presets)."""

    def __init__(self, preset: str = "medium"):
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        self.name = f"dis-{preset}"
        self._dis = cv2.DISOpticalFlow.create(presets[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ga = a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
        gb = b if b.ndim == 2 else cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        return self._dis.calc(ga, gb, None)


class RaftFlow:
    """torchvision RAFT from a local state-dict file (large or small, told apart by its keys)."""

    def __init__(self, weights: str | Path, device: str = "cpu"):
        import torch

        try:
            from torchvision.models.optical_flow import raft_large, raft_small
        except ImportError:
            raise InputError(None, "--flow raft needs torchvision, the build that matches your torch (pip install "
                                   "torchvision); --flow dis needs nothing more") from None
        path = Path(weights)
        if not path.is_file():
            raise InputError(path, "RAFT weights file not found (torchvision's raft_large or raft_small state dict)")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(path, f"cannot read RAFT weights ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict):
            raise InputError(path, "not a state dict of tensors")
        errors = []
        for build in (raft_large, raft_small):
            model = build(weights=None)
            try:
                model.load_state_dict(state)
                break
            except RuntimeError as exc:
                errors.append(exc)
        else:
            raise InputError(path, "not torchvision RAFT weights (neither raft_large's nor raft_small's keys)")
        self.name = f"raft-{'large' if len(errors) == 0 else 'small'}"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = a.shape[:2]
        # RAFT needs sides divisible by 8: pad by replication, crop the flow back.
        ph, pw = -h % 8, -w % 8

        def prep(img: np.ndarray) -> torch.Tensor:  # [1, 3, H', W'] in [-1, 1]
            t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(127.5).sub(1)
            return F.pad(t, (0, pw, 0, ph), mode="replicate").to(self.device)

        with torch.inference_mode():
            flow = self.model(prep(a), prep(b))[-1]  # [1, 2, H', W']
        return flow[0, :, :h, :w].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def make_flow(name: str = "dis", weights: str | Path | None = None, device: str = "cpu") -> FlowEstimator:
    if name == "dis":
        return DisFlow()
    if name == "raft":
        if weights is None:
            raise InputError(None, "--flow raft needs --flow-weights PATH (torchvision's raft_large or raft_small "
                                   "state dict); nothing is downloaded")
        return RaftFlow(weights, device)
    raise InputError(None, f"unknown flow '{name}' (choose from {', '.join(FLOWS)})")


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of an h x w frame (read-only: cached, as every frame of a video asks for the same)."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def warp(img: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`img` (any dtype, `[H, W]` or `[H, W, C]`) sampled at `p + flow(p)`; pixels that land outside are
    replicated from the border (the caller's mask decides whether they count)."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    return cv2.remap(img, xs + flow[..., 0], ys + flow[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def reliable(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """`[H, W] bool`: pixels of `a` whose flow to `b` (`forward`) is confirmed by the flow back (`backward`,
    `b` to `a`), that stay inside `b`, and that are not on a motion boundary (Ruder et al. 2016)."""
    h, w = forward.shape[:2]
    back_at_target = warp(backward, forward)  # w'(p + w(p))
    s = forward + back_at_target
    fb_ok = (s ** 2).sum(-1) <= FB_RELATIVE * ((forward ** 2).sum(-1) + (back_at_target ** 2).sum(-1)) + FB_ABSOLUTE
    gu = np.gradient(forward[..., 0])
    gv = np.gradient(forward[..., 1])
    grad2 = gu[0] ** 2 + gu[1] ** 2 + gv[0] ** 2 + gv[1] ** 2
    mb_ok = grad2 <= MB_RELATIVE * (forward ** 2).sum(-1) + MB_ABSOLUTE
    xs, ys = _grid(h, w)
    tx, ty = xs + forward[..., 0], ys + forward[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return fb_ok & mb_ok & inside

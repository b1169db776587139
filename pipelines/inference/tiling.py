"""Stylizing images larger than memory allows, tile by tile, without seams or colour shifts.

The AnimeGAN generators normalize each feature map over the whole image (v1: InstanceNorm, per
channel; v2: GroupNorm(1, C), over all channels). Run naively on tiles, every tile gets its own
mean and variance, so tiles come out with different colours and visible seams. Here the norm
layers are temporarily patched so that tiles are normalized with statistics of the *whole* image:

1. a pass over a copy of the whole image, downscaled only as far as needed to fit in memory,
   records each norm layer's per-channel mean and variance, in call order;
2. every tile is run with those statistics frozen, and overlapping tiles are blended with a
   raised-cosine window that is zero where a tile's edge (reflect padding instead of real
   context) would show (`tile_blend`, numpy, shared with the ONNX engine).

With the statistics of the full-resolution image, tiled output is within about 1.5 levels (of
255) of untiled output on average. (Re-estimating the statistics from full-resolution tiles run
with the downscaled estimate was tried: the layers' statistics then disagree with each other and
the result gets worse, not better.)

Networks without normalization (White-box) need only step 2.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

from .tile_blend import blend_tiles, tile_spans

# Norm layers whose statistics are computed over the spatial extent of the image. Their
# `forward` is patched on the instance, so state dicts and module structure never change.
_NORM_TYPES = (nn.GroupNorm, nn.InstanceNorm2d)


def _groups(module: nn.Module, channels: int) -> int:
    if isinstance(module, nn.GroupNorm):
        return module.num_groups
    return channels  # InstanceNorm: every channel is its own group


@dataclass
class _Moments:
    """Per-channel count, mean and sum of squared deviations (float64)."""

    n: float
    mean: torch.Tensor  # [C] float64
    m2: torch.Tensor  # [C] float64


def _moments(x: torch.Tensor) -> _Moments:
    # x: [N, C, h, w] (any dtype/layout) -> per-channel moments over N, h, w.
    var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
    n = float(x.shape[0] * x.shape[2] * x.shape[3])
    return _Moments(n, mean.double().cpu(), (var.double() * n).cpu())


@dataclass
class _Frozen:
    """What a patched norm layer applies: y = x * scale + shift, per channel."""

    scale: torch.Tensor  # [C] float64
    shift: torch.Tensor  # [C] float64


def _freeze(module: nn.Module, m: _Moments) -> _Frozen:
    c = m.mean.numel()
    g = _groups(module, c)
    # Group statistics from per-channel ones (every channel of a group has the same count).
    mean_c = m.mean.view(g, c // g)
    ex2_c = m.m2.view(g, c // g) / m.n + mean_c * mean_c
    mean_g = mean_c.mean(dim=1, keepdim=True)
    var_g = (ex2_c.mean(dim=1, keepdim=True) - mean_g * mean_g).clamp_min(0.0)
    inv = 1.0 / torch.sqrt(var_g + module.eps)
    scale = inv.expand(g, c // g).reshape(c)
    shift = (-mean_g * inv).expand(g, c // g).reshape(c)
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    if weight is not None:
        scale = scale * weight.detach().double().cpu()
        shift = shift * weight.detach().double().cpu()
    if bias is not None:
        shift = shift + bias.detach().double().cpu()
    return _Frozen(scale, shift)


@dataclass
class _State:
    mode: str = "off"  # "record" | "frozen"
    frozen: list[_Frozen] = field(default_factory=list)
    moments: list[_Moments | None] = field(default_factory=list)
    modules: list[nn.Module] = field(default_factory=list)  # the norm layer behind each call index
    calls: int = 0


@contextlib.contextmanager
def patched_norms(model: nn.Module, state: _State) -> Iterator[int]:
    """Patch every GroupNorm / InstanceNorm2d in `model` to follow `state`; yields their count."""
    norms = [m for m in model.modules() if isinstance(m, _NORM_TYPES)]

    def make(module: nn.Module, original: Callable[[torch.Tensor], torch.Tensor]):
        def forward(x: torch.Tensor) -> torch.Tensor:
            i = state.calls
            state.calls += 1
            if state.mode == "record":
                state.modules.append(module)
                _add(state, i, _moments(x))
                return original(x)
            if state.mode == "frozen":
                f = state.frozen[i]
                shape = (1, -1, 1, 1)
                scale = f.scale.to(device=x.device, dtype=x.dtype).view(shape)
                shift = f.shift.to(device=x.device, dtype=x.dtype).view(shape)
                return torch.addcmul(shift, x, scale)
            return original(x)

        return forward

    for m in norms:
        m.forward = make(m, m.forward)  # instance attribute shadows the class method
    try:
        yield len(norms)
    finally:
        for m in norms:
            m.__dict__.pop("forward", None)


def _add(state: _State, i: int, m: _Moments) -> None:
    while len(state.moments) <= i:
        state.moments.append(None)
    state.moments[i] = m


@dataclass
class TileReport:
    tiles: int
    norm_layers: int
    passes: int


def stylize_tiled(
    model: nn.Module,
    rgb: np.ndarray,
    tile: int,
    overlap: int = 64,
    *,
    run: Callable[[torch.Tensor], torch.Tensor] | None = None,
    to_input: Callable[[np.ndarray], torch.Tensor],
    stats_pixels: int = 1024 * 1024,
    on_tile: Callable[[], None] | None = None,
) -> tuple[np.ndarray, TileReport]:
    """Stylize `rgb` (`[H, W, 3] uint8 RGB`) tile by tile; returns `[H, W, 3] uint8 RGB` of the same size.

    - `model`: the network whose norm layers are patched (an `InferenceModel` or bare generator).
    - `run(x)`: calls the network on `[1, 3, h, w]` in [-1, 1] and returns the same shape in
      [-1, 1] (default: `model(x)`); lets the caller add autocast or other settings.
    - `to_input(rgb_uint8)`: builds the network input tensor (device, dtype, layout) for a crop.
    - `stats_pixels`: the copy for the statistics pass has at most this many pixels (pass the
      most that fits in memory: the closer to full resolution, the closer to untiled output).
    - `on_tile()`: called after every tile (progress).
    Memory: the tiles' activations plus two float32 accumulators of the image's size.
    """
    run = run or model
    h, w = rgb.shape[:2]
    ys, xs = tile_spans(h, w, tile, overlap)
    state = _State()
    passes = 1
    with torch.inference_mode(), patched_norms(model, state) as n_norms:
        if n_norms:
            # 1. statistics of a downscaled copy of the whole image
            s = min(1.0, math.sqrt(stats_pixels / float(h * w)))
            small = rgb if s >= 1.0 else cv2.resize(
                rgb, (max(16, round(w * s)), max(16, round(h * s))), interpolation=cv2.INTER_AREA)
            state.mode, state.calls = "record", 0
            run(to_input(small))
            state.frozen = _frozen_all(state)
            passes += 1
            state.mode = "frozen"
        # 2. tiles with frozen statistics, blended

        def run_tile(crop: np.ndarray) -> np.ndarray:
            state.calls = 0
            return run(to_input(crop))[0].float().permute(1, 2, 0).cpu().numpy()  # [th, tw, 3] in [-1, 1]

        out = blend_tiles(rgb, ys, xs, run_tile, on_tile)
    return out, TileReport(len(ys) * len(xs), n_norms, passes)


def _frozen_all(state: _State) -> list[_Frozen]:
    if len(state.moments) != len(state.modules) or any(m is None for m in state.moments):
        raise RuntimeError("norm layers were called differently in the statistics passes")
    return [_freeze(mod, mom) for mod, mom in zip(state.modules, state.moments)]  # type: ignore[arg-type]

"""Inference engines: a loaded generator that turns uint8 images into uint8 images.

Two engines share one interface (`stylize_batch`, `stylize_image`, `needs_tiling`, `tile_side`,
`batch_limit`, `source`, `device`), which is all `stylize` and the video stage use once an engine is made:

- `Engine` (here): a PyTorch generator. On CUDA channels_last with fp16/bf16 autocast; on a CPU
  that computes bf16 natively, the generator's weights are cast to bf16 once (autocast re-casts
  every weight on every call: measured 0.73 s against 0.39 s for AnimeGANv2 at 512x512); elsewhere
  fp32, with NNPACK where it pays off (`pipelines.models.cpu_speed`).
- `OnnxEngine` (`pipelines.inference.onnx_engine`): an ONNX image-to-image graph run by ONNX Runtime.

Both budget memory the same way (`Sizing`): images that would not fit are stylized tile by tile.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..models.cpu_speed import accelerate, emulated_bf16_warning, native_cpu_bf16, tune_allocator
from .sizing import BYTES_PER_PIXEL_FP32, DEFAULT_CPU_TILE, DEFAULT_OVERLAP, DEVICES, HEAP_PEAK_FACTOR, Sizing, check_sample
from .tiling import stylize_tiled

PRECISIONS = ("auto", "fp32", "fp16", "bf16")

# Mean absolute difference (levels of 255) above which an automatically chosen bf16/fp16 output is taken as
# broken by the reduced precision; AnimeGANv2 in bf16 on CPU differs from fp32 by about 0.4 levels.
REDUCED_PRECISION_TOLERANCE = 1.5


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise InputError(None, f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA; on CPU bf16 where the CPU computes it natively (`cpu_speed.native_cpu_bf16`), else fp32."""
    if name not in PRECISIONS:
        raise InputError(None, f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if native_cpu_bf16() else torch.float32
    if name == "fp16" and device.type != "cuda":
        raise InputError(None, "--precision fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def emulated_precision_warning(name: str, device: torch.device) -> str | None:
    """The one line to say when `--precision bf16` was asked for on a CPU that only emulates bf16 (run as asked)."""
    if name != "bf16" or device.type != "cpu" or (line := emulated_bf16_warning("--precision bf16")) is None:
        return None
    return line + " (--precision auto picks fp32 on this CPU)"


def uint8_to_input(rgb: np.ndarray, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """`[H, W, 3]` or `[N, H, W, 3]` uint8 RGB -> `[N, 3, H, W]` float32 in [-1, 1] on `device` (converted there)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb))
    if t.ndim == 3:
        t = t[None]
    t = t.to(device, non_blocking=True).permute(0, 3, 1, 2).float().mul_(1 / 127.5).sub_(1.0)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def precision_verdict(reduced: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype, what: str = "model",
                      tolerance: float = REDUCED_PRECISION_TOLERANCE) -> str | None:
    """None when `reduced` (an output in [-1, 1] computed in `dtype`) is finite and within `tolerance` levels of
    `exact` (fp32's) on average; else the one line that says fp32 is used instead."""
    diff = (reduced.float() - exact.float()).abs().mul(127.5)
    if bool(torch.isfinite(reduced).all()) and float(diff.mean()) <= tolerance:
        return None
    return (f"{str(dtype).replace('torch.', '')} changes this {what}'s output by {float(diff.mean()):.1f} levels on "
            f"average (max {float(diff.max()):.0f}) against fp32: using fp32 (choose with --precision)")


class _Cast(nn.Module):
    """`inner` with its weights cast once to `dtype`: casts its input to `dtype`, returns float32.

    Wraps only the generator, so that a post-process (White-box's guided filter, whose box-filter variances
    cancel catastrophically in 8-bit mantissas) stays in fp32."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype)).float()


class Engine(Sizing):
    """A loaded PyTorch generator on a device: uint8 images in, uint8 images out.

    `stylize_batch([N, H, W, 3] uint8 RGB) -> [N, H, W, 3] uint8 RGB`; `stylize_image` picks
    batching or tiling by size. The model inside takes `[N, 3, H, W]` in [-1, 1].
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                 fast_cpu: bool = True, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 pixel_budget: int | None = None, memory_budget: int | None = None):
        self.dtype = dtype
        self.model = model.to(device).eval()
        self.model.requires_grad_(False)
        self._exact: nn.Module | None = None  # the fp32 model, while a cast one runs (for check_precision)
        # NHWC: cuDNN's fast kernels, and oneDNN's bf16 ones on CPU (plain NCHW fp32 is faster there).
        self.channels_last = device.type == "cuda" or dtype == torch.bfloat16
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if device.type == "cpu" and dtype == torch.bfloat16:
            self._exact = self.model
            self.model = self._cast(copy.deepcopy(self.model), dtype)
        self.nnpack_convs, heap_factor = 0, 1.0
        # The allocator setting matters to every CPU precision: bf16 at 528x528 (AnimeGANv2, channels_last)
        # takes 0.29 s a forward with it and 0.50 s without (glibc mmaps and page-faults every activation).
        if device.type == "cpu" and fast_cpu and tune_allocator():
            heap_factor = HEAP_PEAK_FACTOR
        if device.type == "cpu" and fast_cpu and dtype == torch.float32:
            self.nnpack_convs = accelerate(self.model)
        super().__init__(device, int(BYTES_PER_PIXEL_FP32 * heap_factor // (2 if dtype != torch.float32 and device.type == "cuda" else 1)),
                         tile, overlap, pixel_budget, memory_budget, cpu_tile_cap=int(DEFAULT_CPU_TILE / heap_factor ** 0.5))

    @staticmethod
    def _cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
        if isinstance(getattr(model, "generator", None), nn.Module):
            model.generator = _Cast(model.generator, dtype)
            return model
        return _Cast(model, dtype)

    def to_input(self, rgb: np.ndarray) -> torch.Tensor:
        """`[H, W, 3]` or `[N, H, W, 3]` uint8 -> `[N, 3, H, W]` float32 in [-1, 1] on the device."""
        return uint8_to_input(rgb, self.device, self.channels_last)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        # [N, 3, H, W] in [-1, 1] -> same
        with torch.inference_mode():
            if self.dtype == torch.float32 or self._exact is not None:  # fp32, or weights already cast
                return self.model(x).float()
            with torch.autocast(self.device.type, dtype=self.dtype):
                return self.model(x).float()

    def check_precision(self, rgb: np.ndarray, tolerance: float = REDUCED_PRECISION_TOLERANCE) -> str | None:
        """Compare this engine's reduced-precision output for `rgb` (`[H, W, 3]` uint8, scaled to at most
        CHECK_SIDE px) with fp32's; when they differ by more than `tolerance` levels on average (or are not
        finite), switch to fp32 and return one line saying so. None when the precision is kept (or is fp32)."""
        if self.dtype == torch.float32:
            return None
        x = self.to_input(check_sample(rgb))
        reduced = self.run(x).float()
        exact_model = self._exact if self._exact is not None else self.model
        with torch.inference_mode():
            exact = exact_model(x).float()
        verdict = precision_verdict(reduced, exact, self.dtype, tolerance=tolerance)
        if verdict is None:
            return None
        self.dtype = torch.float32
        self.model, self._exact = exact_model, None
        if self.device.type == "cpu":
            self.nnpack_convs = accelerate(self.model)
        return verdict

    @staticmethod
    def to_uint8(y: torch.Tensor) -> np.ndarray:
        """`[N, 3, H, W]` in [-1, 1] -> `[N, H, W, 3]` uint8 RGB (converted on the device)."""
        y = y.float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def stylize_batch(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.to_uint8(self.run(self.to_input(images)))

    def stylize_image(self, rgb: np.ndarray, on_tile: Callable[[], None] | None = None) -> np.ndarray:
        h, w = rgb.shape[:2]
        if not self.needs_tiling(h, w):
            return self.stylize_batch(rgb[None])[0]
        out, _ = stylize_tiled(self.model, rgb, self.tile_side(h, w), self.overlap, run=self.run,
                               to_input=self.to_input, stats_pixels=self.pixel_budget, on_tile=on_tile)
        return out

    def batch_limit(self, h: int, w: int, batch_size: int) -> int:
        if self.device.type == "cpu" and self.dtype == torch.bfloat16:
            # Measured (bench_precision.py): bf16 in channels_last is about 2x fp32 one image at a time, and no
            # faster per image in batches of 2 or 4 512x512 images on the same CPU.
            return 1
        return max(1, min(batch_size, self.pixel_budget // max(1, h * w)))

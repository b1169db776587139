"""What fits in memory: the memory budget both inference engines share, without PyTorch.

`Sizing` decides between one pass over a whole image and tiles (and their side) from the device's free memory,
`--max-memory` or `--tile`; `engine.Engine` (PyTorch) and `onnx_engine.OnnxEngine` (ONNX Runtime) build on it.
A device is a `torch.device` or, for ONNX Runtime, the strings "cpu" / "cuda".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..memory import available_ram

# Engines are checked (reduced precision against fp32, PyTorch against ONNX Runtime) on the first image scaled to
# this long side: large enough for every layer of the generators to see real content, small enough that its fp32
# pass costs little (AnimeGANv2 at 160 px: about 0.07 s on 2 cores, against 0.19 s at 256 px).
CHECK_SIDE = 160


def check_sample(rgb: np.ndarray, side: int = CHECK_SIDE) -> np.ndarray:
    """`rgb` (`[H, W, 3]` uint8) scaled down so that its long side is at most `side` (never below 16 px)."""
    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(16, round(w * s)), max(16, round(h * s))), interpolation=cv2.INTER_AREA)

DEVICES = ("auto", "cuda", "cpu")  # --device

# Peak memory per input pixel of a forward pass in fp32 (activations, and what the process's heap
# keeps around them): 2400 B from peak activations measured on CPU at 768x768 (v2 1.8 KB, v1 2.2 KB,
# White-box 0.8 KB), raised to 3400 B because whole stylize runs under `--max-memory` measured 1.3-1.4x
# over a 2400 B estimate (bench/bench_stylize_memory.py; docs/benchmarks.md).
BYTES_PER_PIXEL_FP32 = 3400
# On CPU at most this much memory goes to one forward pass (less when less is available).
CPU_ACTIVATION_BYTES = 4 << 30
DEFAULT_CPU_TILE = 1024
# With the CPU allocator setting (cpu_speed.tune_allocator) freed activations stay in the heap, where
# they fragment: one forward pass peaks about 1.46x higher than with mmap'd blocks (v2 at 1024x1024:
# 4.23 vs 2.89 GiB), so the memory estimate grows and the CPU tile shrinks by the square root.
HEAP_PEAK_FACTOR = 1.5
DEFAULT_OVERLAP = 64
# A tiled image also holds two float32 accumulators of its size (the blended output and the weights)
# and the decoded input: 16 + 3 bytes per pixel, part of the same budget as the activations.
TILED_BYTES_PER_IMAGE_PIXEL = 19
MIN_TILE = 64


def device_type(device: Any) -> str:
    """"cpu" or "cuda" for a `torch.device` or a device string."""
    return str(getattr(device, "type", device)).split(":")[0]


class Sizing:
    """What fits in memory: whole-image passes up to `pixel_budget` pixels, tiles of `tile_side()` beyond.

    `bytes_per_pixel` is the engine's peak memory per input pixel of one forward pass; `memory_budget`
    (`--max-memory`, else what the device has free) bounds activations, the tiled pass's statistics copy and
    the tiles' accumulators together.
    """

    def __init__(self, device: Any, bytes_per_pixel: int, tile: int | None, overlap: int,
                 pixel_budget: int | None, memory_budget: int | None, cpu_tile_cap: int = DEFAULT_CPU_TILE):
        self.device = device
        self.source: Path | None = None  # the weights file it runs, for summaries
        self.bytes_per_pixel = int(bytes_per_pixel)
        self.tile, self.overlap = tile, overlap
        if memory_budget is None and tile:  # --tile alone bounds memory too: one tile's worth per pass
            memory_budget = tile * tile * self.bytes_per_pixel
        self.memory_budget = memory_budget or self._memory_budget()
        self.pixel_budget = pixel_budget or max(64 * 64, self.memory_budget // self.bytes_per_pixel)
        self.cpu_tile_cap = cpu_tile_cap

    def _memory_budget(self) -> int:
        if device_type(self.device) == "cuda":
            try:
                import torch

                free, _ = torch.cuda.mem_get_info(self.device)
                return int(free * 0.7)
            except (ImportError, RuntimeError, AssertionError):
                # ONNX Runtime's CUDA beside a PyTorch without it: the GPU's free memory is not known here
                return CPU_ACTIVATION_BYTES
        # the machine's free memory, or less where a cgroup or `ulimit -v` leaves this process less (memory.py)
        return min(CPU_ACTIVATION_BYTES, available_ram() // 2)

    def needs_tiling(self, h: int, w: int) -> bool:
        return bool(self.tile) or h * w > self.pixel_budget

    def tile_side(self, h: int = 0, w: int = 0) -> int:
        """The tile side for an `h` x `w` image: `--tile` or what the budget allows once the image's
        accumulators are paid for, whichever is smaller (never below MIN_TILE)."""
        left = self.memory_budget - TILED_BYTES_PER_IMAGE_PIXEL * h * w
        side = int(min(max(0, left // self.bytes_per_pixel), self.pixel_budget) ** 0.5 // 8 * 8)
        if device_type(self.device) == "cpu":
            side = min(side, self.cpu_tile_cap // 8 * 8)
        if self.tile:
            side = min(side, self.tile)
        return max(MIN_TILE, side)

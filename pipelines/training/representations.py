"""The three White-box cartoon representations (FACTS 6).

- surface: the image guided-filtered by itself (r 5, eps 0.2) -- flat colour regions, no texture.
- structure: superpixels coloured by each segment's mean colour -- the global layout as flat areas.
  Computed on CPU numpy (`slic` or `felzenszwalb` from scikit-image); `StructurePool` runs it on
  background threads so that the training step keeps the accelerator busy meanwhile.
- texture: a random-weight grayscale -- luminance detail with colour and brightness cues removed.

Tensors: `[N, 3, H, W]` float in [-1, 1] unless noted. Numpy images: `[H, W, 3] uint8 RGB`.
"""

from __future__ import annotations

import os
import time
import weakref
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..models.guided_filter import guided_filter
from ..processes import die_with

SURFACE_RADIUS = 5
SURFACE_EPS = 0.2

# Ranges of the grayscale weights (FACTS 6), drawn uniformly then normalized to sum 1.
TEXTURE_WEIGHT_RANGES = {"r": (0.199, 0.399), "g": (0.487, 0.687), "b": (0.014, 0.214)}

SuperpixelMethod = Literal["slic", "felzenszwalb"]


@dataclass(frozen=True)
class StructureOptions:
    method: SuperpixelMethod = "slic"
    segments: int = 200  # slic: target number of segments
    scale: float = 10.0  # felzenszwalb
    sigma: float = 0.8  # felzenszwalb
    min_size: int = 100  # felzenszwalb


# ---------------------------------------------------------------- surface


def surface(x: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` in [-1, 1] -> same shape: the image filtered with itself as guide."""
    return guided_filter(x, x, SURFACE_RADIUS, SURFACE_EPS)


# ---------------------------------------------------------------- texture


def random_gray_weights(n: int = 1, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """`[n, 3]` RGB weights, each row drawn from the FACTS ranges and normalized to sum 1."""
    lo = torch.tensor([TEXTURE_WEIGHT_RANGES[c][0] for c in "rgb"])
    hi = torch.tensor([TEXTURE_WEIGHT_RANGES[c][1] for c in "rgb"])
    w = lo + (hi - lo) * torch.rand(n, 3, generator=generator)
    w = w / w.sum(dim=1, keepdim=True)
    return w.to(device) if device is not None else w


def texture(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` in [-1, 1] and weights `[1 or N, 3]` -> `[N, 1, H, W]` in [-1, 1].

    The same weights must be used for the real cartoons and the generated images of one step, so
    the texture discriminator cannot tell them apart by their grayscale mix.
    """
    w = weights.to(device=x.device, dtype=x.dtype)[:, :, None, None]
    return (x * w).sum(dim=1, keepdim=True)


# ---------------------------------------------------------------- structure


def superpixel_labels(rgb: np.ndarray, options: StructureOptions = StructureOptions()) -> np.ndarray:
    """`[H, W, 3] uint8` -> `[H, W]` int segment labels."""
    from skimage import segmentation

    if options.method == "slic":
        # Parameters of the released code: Lab colour space, sigma 1, compactness 10.
        return segmentation.slic(rgb, n_segments=options.segments, sigma=1, compactness=10,
                                 convert2lab=True, start_label=0)
    if options.method == "felzenszwalb":
        return segmentation.felzenszwalb(rgb, scale=options.scale, sigma=options.sigma, min_size=options.min_size)
    raise ValueError(f"unknown superpixel method {options.method!r}; use slic or felzenszwalb")


def segment_mean_colors(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Paint every segment with its mean colour (what `label2rgb(kind='avg')` does, vectorized).

    `[H, W, 3] uint8`, `[H, W]` int -> `[H, W, 3] uint8`.
    """
    flat = labels.ravel()
    _, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse).astype(np.float64)
    pix = rgb.reshape(-1, 3).astype(np.float64)
    means = np.stack([np.bincount(inverse, weights=pix[:, c]) for c in range(3)], axis=1) / counts[:, None]
    return np.clip(np.rint(means), 0, 255).astype(np.uint8)[inverse].reshape(rgb.shape)


def structure_image(rgb: np.ndarray, options: StructureOptions = StructureOptions()) -> np.ndarray:
    """`[H, W, 3] uint8` -> `[H, W, 3] uint8`: superpixels coloured by segment means."""
    return segment_mean_colors(rgb, superpixel_labels(rgb, options))


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """`[N, 3, H, W]` in [-1, 1] (any device) -> `[N, H, W, 3] uint8` numpy."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def uint8_to_tensor(a: np.ndarray, device=None) -> torch.Tensor:
    """`[N, H, W, 3] uint8` -> `[N, 3, H, W]` float32 in [-1, 1] on `device`."""
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return t.to(device) if device is not None else t


def structure_batch(images: np.ndarray, options: StructureOptions = StructureOptions()) -> np.ndarray:
    """`[N, H, W, 3] uint8` -> `[N, H, W, 3] uint8`, one image after the other."""
    return np.stack([structure_image(im, options) for im in images])


def _structure_job(im: np.ndarray, options: StructureOptions) -> tuple[np.ndarray, float]:
    # Module level so that process workers can unpickle it.
    t0 = time.perf_counter()
    out = structure_image(im, options)
    return out, time.perf_counter() - t0


class StructurePool:
    """Computes structure representations of a batch in the background, one image per task.

    `submit(x)` copies the batch to the CPU and returns at once with a future of the
    `[N, 3, H, W]` float32 [-1, 1] CPU tensor; the caller queues its other accelerator work, then
    calls `.result()`. `kind="process"` (spawned workers, safe beside CUDA) is independent of the
    GIL; `kind="thread"` starts instantly and is what CPU training uses, where the cores are busy
    with the step anyway. `seconds` accumulates the CPU seconds of segmentation (for the run's
    metrics) and `wait_seconds` the time a caller actually blocked in `result`.
    """

    def __init__(self, options: StructureOptions = StructureOptions(), workers: int | None = None,
                 kind: Literal["thread", "process"] = "thread"):
        self.options = options
        self.kind = kind
        # Per machine, not per process: DDP ranks on one machine share its cores (LOCAL_WORLD_SIZE is set by
        # torchrun), and each rank's data loader has workers of its own.
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        self.workers = workers or max(1, min(8, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                  else (os.cpu_count() or 2)) // ranks - 1))
        self._pool: Executor
        if kind == "process":
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=die_with, initargs=(os.getpid(),))
        else:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="structure")
        # Idle workers go away with the pool object even when nobody calls close().
        weakref.finalize(self, self._pool.shutdown, wait=False)
        self.seconds = 0.0
        self.wait_seconds = 0.0
        self.images = 0

    def submit(self, x: torch.Tensor) -> "StructureFuture":
        """`x`: `[N, 3, H, W]` in [-1, 1] (detached here)."""
        images = tensor_to_uint8(x)
        return StructureFuture(self, [self._pool.submit(_structure_job, im, self.options) for im in images])

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        return self.submit(x).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __getstate__(self):  # a pool cannot be pickled; a copy builds its own
        return {"options": self.options, "workers": self.workers, "kind": self.kind}

    def __setstate__(self, state):
        self.__init__(state["options"], state["workers"], state["kind"])


class StructureFuture:
    def __init__(self, pool: StructurePool, futures: list[Future]):
        self._pool = pool
        self._futures = futures

    def result(self) -> torch.Tensor:
        """`[N, 3, H, W]` float32 in [-1, 1], on the CPU."""
        t0 = time.perf_counter()
        parts = [f.result() for f in self._futures]
        self._pool.wait_seconds += time.perf_counter() - t0
        self._pool.seconds += sum(s for _, s in parts)
        self._pool.images += len(parts)
        return uint8_to_tensor(np.stack([p for p, _ in parts]))

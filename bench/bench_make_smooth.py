"""Benchmark edge smoothing against its baselines, measured in the same run.

1. `smooth_edges` vs the per-pixel reference loop, per image (target: >= 200x faster).
2. `make_smooth` end to end vs only reading, decoding, encoding and atomically writing the same
   images with the same worker pool (target: within 1.5x).

Usage: python bench/bench_make_smooth.py [--style-dir /work/shared/data/style_hayao] [--workers N]
       [--reference-images 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from pipelines.fileio import decode_image, is_image_path, read_image, write_image
from pipelines.data.manifest import Dataset, ImportedSource, make_record
from pipelines.data.smoothing import SmoothOptions, _init_worker, _mp_context, available_cores, make_smooth, smooth_edges


def reference_per_pixel(bgr: np.ndarray) -> np.ndarray:
    """The reference scripts' loop (on a BGR image), minus their double decode and square resize."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    mask = cv2.dilate(cv2.Canny(gray, 100, 200), np.ones((5, 5), np.uint8))
    padded = np.pad(bgr, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    g = cv2.getGaussianKernel(5, 0)
    kernel = g * g.T
    out = bgr.copy()
    for y, x in zip(*np.where(mask != 0)):
        for c in range(3):
            out[y, x, c] = np.sum(np.multiply(padded[y : y + 5, x : x + 5, c], kernel))
    return out


def build_dataset(root: Path, files: list[Path]) -> Dataset:
    if root.exists():
        shutil.rmtree(root)
    ds = Dataset.open(root, create=True)
    (root / "style").mkdir()
    with ds.transaction() as m:
        for f in files:
            data = f.read_bytes()
            rel = f"style/{f.name}"
            (root / rel).write_bytes(data)
            h, w = decode_image(data, f).shape[:2]
            m.put("style", make_record(rel, data, w, h, ImportedSource(original=str(f))))
    return ds


def _read_write(job: tuple[str, str]) -> int:
    src, dst = job
    return len(write_image(dst, read_image(src)))


def read_write_all(ds: Dataset, workers: int, suffix: str | None) -> None:
    """The I/O floor of make-smooth: the same reads, decodes, encodes and atomic writes, same pool."""
    jobs = []
    for r in ds.manifest.records("style"):
        dst = ds.root / "copy" / Path(r.path).name
        jobs.append((str(ds.abspath(r.path)), str(dst.with_suffix(suffix) if suffix else dst)))
    if workers <= 1:
        for j in jobs:
            _read_write(j)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        list(pool.map(_read_write, jobs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style-dir", type=Path, default=Path("/work/shared/data/style_hayao"))
    ap.add_argument("--workers", type=int, default=available_cores())
    ap.add_argument("--reference-images", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    files = sorted(f for f in args.style_dir.iterdir() if is_image_path(f))
    if not files:
        print(f"{args.style_dir}: no images", file=sys.stderr)
        return 2
    print(f"{len(files)} images from {args.style_dir}; {available_cores()} cores available; workers {args.workers}")
    print("note: the machine may be shared with other jobs; compare ratios, not absolute times")

    # 1. per image, reference loop vs smooth_edges
    cv2.setNumThreads(1)  # one core each, as in a worker process
    sample = [read_image(f) for f in files[: args.reference_images]]
    ref_t, fast_t = [], []
    for rgb in sample:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        t0 = time.perf_counter()
        expected = reference_per_pixel(bgr)
        ref_t.append(time.perf_counter() - t0)
        got = smooth_edges(rgb)
        assert np.array_equal(got[:, :, ::-1], expected), "smooth_edges is not bit-exact on this image"
        n = 20
        t0 = time.perf_counter()
        for _ in range(n):
            smooth_edges(rgb)
        fast_t.append((time.perf_counter() - t0) / n)
    h, w = sample[0].shape[:2]
    print(f"\n[1] per image ({len(sample)} images, e.g. {w}x{h}; bit-exact checked)")
    print(f"  per-pixel reference : {np.mean(ref_t) * 1e3:9.1f} ms")
    print(f"  smooth_edges        : {np.mean(fast_t) * 1e3:9.2f} ms")
    print(f"  speed-up            : {np.mean(ref_t) / np.mean(fast_t):9.0f}x   (target >= 200x)")

    # 2. end to end vs read+write
    print(f"\n[2] make-smooth end to end vs read+decode+encode+write, {len(files)} images, best of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="bench_smooth_") as tmp:
        root = Path(tmp) / "ds"
        for label, fmt in (("same format (jpg)", None), ("png", "png")):
            smooth_best = io_best = float("inf")
            for _ in range(args.repeats):
                ds = build_dataset(root, files)
                t0 = time.perf_counter()
                make_smooth(root, SmoothOptions(format=fmt, workers=args.workers))
                smooth_best = min(smooth_best, time.perf_counter() - t0)
                t0 = time.perf_counter()
                read_write_all(ds, args.workers, "." + fmt if fmt else None)
                io_best = min(io_best, time.perf_counter() - t0)
            print(f"  {label:18s} make-smooth {smooth_best:6.2f} s   read+write {io_best:6.2f} s   "
                  f"ratio {smooth_best / io_best:4.2f}   (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the stylize path on CPU (run: `python bench/bench_stylize.py [--big 6000x4000]`).

1. AnimeGANv2 (random weights; speed does not depend on their values) at 512x512: seconds per
   image of the stylize engine (uint8 in -> uint8 out; `pipelines.models.cpu_speed`: allocator setting,
   NNPACK convolutions) against a plain eager fp32 NCHW forward of the same weights under
   `torch.no_grad`, measured in the same run. The plain forward runs in child processes of its
   own (before and after the engine), so that the engine's process-wide allocator setting does
   not reach it. Prints the ratio (target >= 2x) and the largest output difference.
2. Peak memory (RSS) of stylizing a big photo with automatic tiling, in a child process, against
   the estimate for an untiled forward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.models.registry import InferenceModel  # noqa: E402
from pipelines.models.cpu_speed import nnpack_usable, tune_allocator  # noqa: E402
from pipelines.inference.engine import BYTES_PER_PIXEL_FP32, Engine  # noqa: E402


def _plain_child(size: int, repeats: int, out: str) -> None:
    """Times of the plain forward, and its output, from a process with default settings."""
    torch.manual_seed(0)
    base = InferenceModel.for_architecture("animegan_v2").eval()
    rgb = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    times = []
    with torch.no_grad():
        ref = base(x)  # warm-up (weight packing, allocator)
        for _ in range(repeats):
            a = time.perf_counter()
            ref = base(x)
            times.append(time.perf_counter() - a)
    ref_u8 = ((ref[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    np.save(out, ref_u8)
    print(json.dumps(times))


def _plain_times(size: int, repeats: int, out: Path) -> list[float]:
    res = subprocess.run([sys.executable, __file__, "--plain-child", str(size), "--repeats", str(repeats),
                          "--plain-out", str(out)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def speed(size: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = InferenceModel.for_architecture("animegan_v2").eval()  # same seed: same weights as the child's
    engine = Engine(model, torch.device("cpu"))
    rgb = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "plain.npy"
        tp = _plain_times(size, (repeats + 1) // 2, ref_path)
        engine.stylize_batch(rgb[None])  # warm-up
        tf = []
        for _ in range(repeats):
            a = time.perf_counter()
            got = engine.stylize_batch(rgb[None])
            tf.append(time.perf_counter() - a)
        tp += _plain_times(size, repeats // 2 or 1, ref_path)
        ref_u8 = np.load(ref_path)
    diff = np.abs(got[0].astype(int) - ref_u8.astype(int)).max()
    print(f"v2 {size}x{size} CPU, {torch.get_num_threads()} threads, NNPACK {'used' if engine.nnpack_convs else 'not used'} "
          f"({engine.nnpack_convs} convs; CPU capability {torch.backends.cpu.get_cpu_capability()}, NNPACK "
          f"{'works' if nnpack_usable() else 'missing'}), allocator tuned: {tune_allocator()}")
    print(f"  plain eager fp32 NCHW: best {min(tp):.3f} s, median {np.median(tp):.3f} s  (child processes)")
    print(f"  stylize engine       : best {min(tf):.3f} s, median {np.median(tf):.3f} s")
    print(f"  speed-up: {min(tp) / min(tf):.2f}x (best), {np.median(tp) / np.median(tf):.2f}x (median); "
          f"max output difference {diff} levels")


def big_child(w: int, h: int) -> None:
    import cv2
    from skimage import data

    torch.manual_seed(0)
    model = InferenceModel.for_architecture("animegan_v2").eval()
    rgb = cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC)
    engine = Engine(model, torch.device("cpu"))
    t = time.perf_counter()
    out = engine.stylize_image(rgb)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak, "seconds": secs, "shape": list(out.shape), "tile": engine.tile_side(h, w),
                      "budget_px": engine.pixel_budget}))


def big(w: int, h: int) -> None:
    res = subprocess.run([sys.executable, __file__, "--child", f"{w}x{h}"], capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    est = w * h * BYTES_PER_PIXEL_FP32
    print(f"{w}x{h} photo, auto tiling (tile {r['tile']} px, pixel budget {r['budget_px']:,}): "
          f"{r['seconds']:.0f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB; "
          f"untiled estimate {est / 2**30:.1f} GiB ({est / r['peak_rss']:.0f}x more)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big", default="6000x4000", help="WxH of the tiled-memory test; 'none' to skip")
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes competing for the CPU during the speed test "
                                                        "(a loaded machine: the engine must not fall behind plain)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--plain-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--plain-out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.plain_child:
        _plain_child(a.plain_child, a.repeats, a.plain_out)
    elif a.child:
        big_child(*map(int, a.child.split("x")))
    else:
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.load)]
        try:
            time.sleep(2 if hogs else 0)
            print(f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
                  f"{f', {a.load} busy-loop processes running' if hogs else ''} (shared machine: figures are noisy)")
            speed(a.size, a.repeats)
        finally:
            for hog in hogs:
                hog.kill()
        if a.big != "none":
            big(*map(int, a.big.split("x")))

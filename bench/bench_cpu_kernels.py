"""NNPACK against PyTorch's own CPU convolutions, per generator, on this machine.

    python bench/bench_cpu_kernels.py [--size 256] [--batch 4]

For AnimeGANv2, White-box and Style2paints: a training step (forward and backward) and a forward pass of
the generator with PyTorch's kernels (oneDNN) and with every eligible conv forced through NNPACK
(`cpu_speed.accelerate(force=True)`), in the same process, allocator tuned for both. Prints the ratios
and what `cpu_speed.nnpack_pays_off()` decides here: NNPACK's kernels are AVX2, so where PyTorch runs
AVX-512 kernels they lose.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipelines.models.cpu_speed import accelerate, nnpack_pays_off, nnpack_usable, tune_allocator  # noqa: E402
from pipelines.models.registry import build_generator  # noqa: E402


def best_of(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    tune_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, NNPACK {'works' if nnpack_usable() else 'missing'}, "
          f"nnpack_pays_off() = {nnpack_pays_off()}")
    if not nnpack_usable():
        return
    n, s = args.batch, args.size
    for arch in ("animegan_v2", "whitebox", "style2paints_v1"):
        colorizer = arch == "style2paints_v1"
        x = torch.rand(n, 1 if colorizer else 3, s, s) * 2 - 1
        style = torch.rand(n, 4096)
        row = {}
        for kind in ("pytorch", "nnpack"):
            torch.manual_seed(0)
            g = build_generator(arch)
            if kind == "nnpack":
                accelerate(g, force=True)
            run = (lambda: g(x, style)) if colorizer else (lambda: g(x))

            def step() -> None:
                run().mean().backward()

            def forward() -> None:
                with torch.no_grad():
                    run()

            row[kind] = (best_of(step, 2), best_of(forward))
        (ts, tf), (ns, nf) = row["pytorch"], row["nnpack"]
        print(f"{arch:<16} step {ts:.2f} s (PyTorch) vs {ns:.2f} s (NNPACK): NNPACK {ts / ns:.2f}x; "
              f"forward {tf:.3f} vs {nf:.3f} s: NNPACK {tf / nf:.2f}x", flush=True)


if __name__ == "__main__":
    main()

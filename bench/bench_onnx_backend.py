"""Which engine should run an ONNX graph on this CPU: ONNX Runtime or PyTorch? (`stylize --onnx-backend`)

    python bench/bench_onnx_backend.py [--sides 160 256 528] [--jobs 2 16] [--photo-side 512] [--repeats 1]
                                       [--graph AnimeGANv3_tiny_Cute.onnx ...]

Exports two generators of seeded random weights with `animegan export` (speed does not depend on the values):
AnimeGANv2, heavy per pixel, and White-box (32-128 channels), light; `--graph` adds graphs of your own (AnimeGANv3's
releases: NHWC, 16-channel convolutions at full size). Then:

1. one forward in one process, best of 3 at each `--sides` square, through the stylize engine (`OnnxEngine`: the
   graph's layout and size multiple handled): ONNX Runtime against the same graph on PyTorch (`onnx_torch.TorchGraph`,
   with NNPACK convolutions where they pay off on this CPU);
2. `animegan stylize` as whole processes on jobs of `--jobs` photos (scikit-image's, scaled to `--photo-side`
   squares), with `--onnx-backend onnxruntime`, `pytorch` and `auto`, best of `--repeats`, and which engine `auto`
   took ("race: X" when the job raced the two on its first forwards and X ran the rest).

What it re-checks: the defaults of `pipelines.inference.stylize`: PYTORCH_FROM_ORT_SECONDS (auto considers PyTorch
when ONNX Runtime's estimated time for the job reaches it) and RACE_FROM_IMAGES (from this many images auto races the
two engines instead of taking PyTorch on the CPU's rule). `auto` should be within a few percent of the faster of the
two forced backends for each network and job size; the last column says how far it is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_cpu_kernels import best_of  # noqa: E402  (this folder is the script's: first on sys.path)


def stylize_time(cmd: list[str], repeats: int) -> tuple[float, str]:
    """Best wall seconds of `cmd` over `repeats` runs, and the engine its output names."""
    best, engine = float("inf"), "?"
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
        took = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
        best = min(best, took)
        out = " ".join((res.stdout + res.stderr).split())  # lines wrapped by the console joined again
        if "runs the rest of the job" in out:
            engine = "race: " + ("pytorch" if "PyTorch runs the rest" in out else "onnxruntime")
        else:
            engine = "pytorch" if "run by PyTorch" in out else "onnxruntime"
    return best, engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", type=int, nargs="+", default=[160, 256, 528])
    ap.add_argument("--jobs", type=int, nargs="+", default=[2, 16], help="photos per stylize job")
    ap.add_argument("--photo-side", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--graph", type=Path, action="append", default=[], help="another .onnx graph to compare")
    args = ap.parse_args()

    import cv2
    import onnxruntime as ort
    import torch
    from skimage import data

    from pipelines.errors import InputError
    from pipelines.fileio import write_image
    from pipelines.inference.onnx_engine import OnnxEngine
    from pipelines.inference.onnx_torch import UnsupportedGraph
    from pipelines.inference.stylize import PYTORCH_FROM_ORT_SECONDS, RACE_FROM_IMAGES
    from pipelines.models.cpu_speed import native_cpu_bf16, nnpack_pays_off
    from pipelines.models.registry import build_generator
    from pipelines.models.weights import save_generator

    work = Path(tempfile.mkdtemp(prefix="bench-onnx-backend-"))
    graphs = {}
    for arch, kwargs in (("animegan_v2", {}), ("whitebox", {})):
        torch.manual_seed(0)
        save_generator(build_generator(arch, **kwargs), arch, kwargs, work / arch, postprocess=False)
        graphs[arch] = work / f"{arch}.onnx"
        subprocess.run([sys.executable, "-m", "animegan_cli", "export", str(work / arch), str(graphs[arch])], check=True,
                       stdout=subprocess.DEVNULL)
    for path in args.graph:
        try:
            OnnxEngine(path, "cpu")  # a graph stylize cannot run is one line, before any timing
        except InputError as exc:
            raise SystemExit(f"--graph {exc}") from None
        graphs[path.stem] = path.resolve()
    print(f"CPU: NNPACK pays off {nnpack_pays_off()}, native bf16 {native_cpu_bf16()}; torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {torch.get_num_threads()} threads; auto's thresholds "
          f"{PYTORCH_FROM_ORT_SECONDS:g} s of ONNX Runtime, a race from {RACE_FROM_IMAGES} images")

    print("\n1. one forward, best of 3 (seconds): ONNX Runtime / PyTorch graph = PyTorch's speed-up")
    sample = np.ascontiguousarray(data.astronaut())
    width = max(len(name) for name in graphs)
    for name, path in graphs.items():
        on_ort = OnnxEngine(path, "cpu")
        on_torch = OnnxEngine(path, "cpu")
        try:
            on_torch.use_pytorch(sample, "auto")
        except UnsupportedGraph as exc:
            print(f"  {name:<{width}} PyTorch cannot run it ({exc}): auto keeps it on ONNX Runtime")
            continue
        cells = []
        for side in args.sides:
            x = np.random.default_rng(0).uniform(-1, 1, (1, 3, side, side)).astype(np.float32)
            t_ort = best_of(lambda: on_ort.run(x), 3)
            t_pt = best_of(lambda: on_torch.run(x), 3)
            cells.append(f"{side} px {t_ort:.3f} / {t_pt:.3f} = {t_ort / t_pt:.2f}x")
        print(f"  {name:<{width}} " + ";  ".join(cells))

    print(f"\n2. stylize as whole processes, {args.photo_side}x{args.photo_side} photos, best of {args.repeats} (seconds)")
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
    for n in args.jobs:
        photos = work / f"photos{n}"
        for i in range(n):
            img = np.ascontiguousarray(getattr(data, names[i % len(names)])()[:, :, :3])
            img = img[:, ::-1] if (i // len(names)) % 2 else img
            write_image(photos / f"p{i:03d}.png", cv2.resize(np.ascontiguousarray(img), (args.photo_side, args.photo_side),
                                                            interpolation=cv2.INTER_AREA))
        for arch, path in graphs.items():
            times = {}
            for backend in ("onnxruntime", "pytorch", "auto"):
                cmd = [sys.executable, "-m", "animegan_cli", "stylize", str(photos), "--weights", str(path),
                       "--overwrite", "--out", str(work / f"out-{arch}-{n}-{backend}"), "--onnx-backend", backend]
                times[backend] = stylize_time(cmd, args.repeats)
            best = min(times["onnxruntime"][0], times["pytorch"][0])
            print(f"  {arch:<{width}} {n:>2} photos: onnxruntime {times['onnxruntime'][0]:6.2f}, pytorch "
                  f"{times['pytorch'][0]:6.2f}, auto {times['auto'][0]:6.2f} (took {times['auto'][1]}); "
                  f"auto against the faster: {times['auto'][0] / best:.2f}x the time")


if __name__ == "__main__":
    main()

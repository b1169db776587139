"""White-box benchmarks: superpixel cost, and whether the structure representation stalls a GAN step.

    python bench/bench_whitebox.py [--device cpu|cuda] [--batch 16] [--crop 256] [--steps 5] [--images DIR]
                                   [--threads N] [--pool thread|process] [--superpixels-only]

Prints:
1. seconds per 256x256 image for SLIC (200 segments) and Felzenszwalb (scale 10, sigma 0.8, min_size 100);
2. GAN step time of the White-box recipe (D update + G update, random-weight VGG) in three modes:
   - `no-structure`: baseline, the structure term replaced by a target already on hand;
   - `inline`: superpixels computed synchronously where they are needed (what the reference does);
   - `pool`: the recipe as shipped (background workers overlapping D's step and G's forward);
   and each mode's ratio to the baseline measured in the same run.
Images come from DIR (e.g. /work/shared/data/photos) or, by default, scikit-image's sample photos.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.training.recipes.whitebox import RELEASED_WEIGHTS, WhiteboxRecipe  # noqa: E402
from pipelines.training.representations import StructureOptions, structure_image, uint8_to_tensor  # noqa: E402


def load_images(folder: str | None, n: int, size: int) -> np.ndarray:
    import cv2

    if folder:
        from pipelines.fileio import IMAGE_EXTENSIONS, read_image

        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:n]
        imgs = [read_image(p) for p in paths]
    else:
        from skimage import data

        imgs = [getattr(data, k)() for k in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")]
        imgs = [np.repeat(i[:, :, None], 3, 2) if i.ndim == 2 else i[:, :, :3] for i in imgs]
    out = []
    for i in range(n):
        im = imgs[i % len(imgs)]
        s = size / min(im.shape[:2])
        im = cv2.resize(im, (max(size, round(im.shape[1] * s)), max(size, round(im.shape[0] * s))), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(im[:size, :size]))
    return np.stack(out)


def bench_superpixels(images: np.ndarray) -> None:
    for opts in (StructureOptions("slic"), StructureOptions("felzenszwalb")):
        structure_image(images[0], opts)  # warm-up (imports, caches)
        t0 = time.perf_counter()
        for im in images:
            structure_image(im, opts)
        dt = (time.perf_counter() - t0) / len(images)
        print(f"superpixels {opts.method:13s} {dt * 1000:8.1f} ms per {images.shape[1]}x{images.shape[2]} image")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Ready:
    def __init__(self, value: torch.Tensor):
        self.value = value

    def result(self) -> torch.Tensor:
        return self.value


class _FixedPool:
    """Baseline: the structure target is on hand at once (no CPU segmentation at all)."""

    def __init__(self, target: torch.Tensor):
        self.target = target

    def submit(self, x: torch.Tensor) -> _Ready:
        return _Ready(self.target)


class _InlinePool:
    """The reference's behaviour: segment synchronously, nothing else queued meanwhile."""

    def __init__(self, options: StructureOptions):
        self.options = options

    def submit(self, x: torch.Tensor) -> _Ready:
        from pipelines.training.representations import structure_batch, tensor_to_uint8

        return _Ready(uint8_to_tensor(structure_batch(tensor_to_uint8(x), self.options)))


def bench_steps(photos: np.ndarray, cartoons: np.ndarray, device: torch.device, steps: int, threads: int | None,
                kind: str) -> None:
    from pipelines.training.representations import StructurePool

    torch.manual_seed(0)
    cfg = SimpleNamespace(model="whitebox", style="", preset="released", weights=dict(RELEASED_WEIGHTS),
                          vgg_weights="random", lr_init=2e-4, lr_g=2e-4, lr_d=2e-4, epochs=1, init_epochs=1)
    recipe = WhiteboxRecipe(cfg)
    nets = {k: v.to(device) for k, v in recipe.build_networks().items()}
    nets.update(recipe.build_frozen(device, log=lambda m: None))
    opts = recipe.build_optimizers(nets)
    batch = {"photo": uint8_to_tensor(photos, device), "style": uint8_to_tensor(cartoons, device)}
    updates = [u for ph in recipe.phases() if ph.name == "gan" for u in ph.updates]

    def step() -> float:
        ctx: dict = {}
        _sync(device)
        t0 = time.perf_counter()
        for upd in updates:
            loss = sum(recipe.losses("gan", upd, nets, batch, ctx).values())
            opts[upd.optimizer].zero_grad(set_to_none=True)
            loss.backward()
            opts[upd.optimizer].step()
        _sync(device)
        return time.perf_counter() - t0

    real_pool = StructurePool(recipe.structure_options, workers=threads, kind=kind)
    target = uint8_to_tensor(photos)
    pools = {"no-structure": _FixedPool(target), "inline": _InlinePool(recipe.structure_options), "pool": real_pool}
    results = {}
    for mode, pool in pools.items():
        recipe._pool = pool
        step()  # warm-up
        if mode == "pool":
            real_pool.seconds = real_pool.wait_seconds = 0.0
            real_pool.images = 0
        results[mode] = float(np.median([step() for _ in range(steps)]))
    base = results["no-structure"]
    for mode, t in results.items():
        print(f"GAN step {mode:13s} {t * 1000:9.1f} ms   x{t / base:5.2f} vs no-structure")
    print(f"pool: {real_pool.seconds / max(1, real_pool.images) * 1000:.1f} ms CPU per image on {real_pool.workers} "
          f"{kind} workers; the step blocked {real_pool.wait_seconds / steps * 1000:.1f} ms per step waiting for it")
    real_pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="structure pool threads (default: recipe's choice)")
    ap.add_argument("--pool", choices=("thread", "process"), default=None,
                    help="structure pool kind (default: the recipe's: process on cuda, thread on cpu)")
    ap.add_argument("--images", default=None, help="folder of photos (default: scikit-image samples)")
    ap.add_argument("--superpixels-only", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"batch {args.batch}, crop {args.crop}")
    imgs = load_images(args.images, max(8, args.batch), 256)
    bench_superpixels(imgs[:8])
    if args.superpixels_only:
        return
    photos = load_images(args.images, args.batch, args.crop)
    # cartoons: a posterized copy is enough for timing
    cartoons = ((photos // 48) * 48 + 24).astype(np.uint8)
    bench_steps(photos, cartoons, device, args.steps, args.threads,
                args.pool or ("process" if device.type == "cuda" else "thread"))


if __name__ == "__main__":
    main()

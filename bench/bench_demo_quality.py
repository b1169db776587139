"""Quality of `animegan demo`'s result, measured with `animegan eval`'s figures, against a baseline run
in the same process: the previous demo (AnimeGANv2, 80 steps, 6 init epochs, same data and crops).

    python bench/bench_demo_quality.py [--out /tmp/bench-demo] [--steps 300]

Prints, for each configuration, the means over the 5 demo photos of PSNR, SSIM, edge correlation and
colour shift (CIEDE2000) against the photos, and the training time. Higher edge correlation and lower
colour shift mean the photo's structure and colours survived; see docs/eval.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipelines.demo import DemoOptions, run_demo  # noqa: E402
from pipelines.evaluation.evaluate import EvalOptions, evaluate  # noqa: E402
from pipelines.inference.stylize import StylizeOptions, stylize  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import TrainRequest, run_train  # noqa: E402

FIGURES = ("psnr", "ssim", "edge_corr", "color_shift")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-demo-quality"))
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shutil.rmtree(args.out, ignore_errors=True)

    t0 = time.perf_counter()
    demo = run_demo(DemoOptions(out=args.out / "demo", steps=args.steps, vgg_weights="random", device="cpu"), Reporter())
    t_demo = time.perf_counter() - t0
    photos = sorted((args.out / "demo" / "material" / "photos").glob("*.png"))

    # Baseline: the demo as it was before (AnimeGANv2, 80 steps), on the same dataset.
    base_run = args.out / "baseline"
    t0 = time.perf_counter()
    run_train(TrainRequest(overrides=dict(
        dataset=str(demo.dataset), out=str(base_run / "run"), model="animeganv2", style="hayao", max_steps=80,
        init_epochs=6, image_size=64, batch_size=4, device="cpu", seed=0, vgg_weights="random", workers=0,
        checkpoint_every=1000)), Reporter())
    t_base = time.perf_counter() - t0
    stylize(photos, StylizeOptions(weights=base_run / "run", out_dir=base_run / "stylized", device="cpu"), Reporter())
    base = evaluate([base_run / "stylized"], EvalOptions(reference=photos[0].parent), Reporter()).metrics

    print(f"{'configuration':<44}" + "".join(f"{f:>12}" for f in FIGURES) + f"{'seconds':>10}")
    print(f"{'baseline: AnimeGANv2, 80 steps':<44}" + "".join(f"{base[f]:>12.3f}" for f in FIGURES) + f"{t_base:>10.0f}")
    print(f"{f'demo: White-box, {args.steps} steps (whole demo)':<44}"
          + "".join(f"{demo.metrics[f]:>12.3f}" for f in FIGURES) + f"{t_demo:>10.0f}")
    print(f"edge correlation ratio demo/baseline: {demo.metrics['edge_corr'] / max(1e-9, base['edge_corr']):.2f}x; "
          f"colour shift ratio baseline/demo: {base['color_shift'] / max(1e-9, demo.metrics['color_shift']):.2f}x")


if __name__ == "__main__":
    main()

"""What `animegan demo` learns, against the recipe it replaced, on the same data in the same process.

    python bench/bench_demo_quality.py [--out /tmp/bench-demo-quality] [--steps 600]

The demo trains White-box on a cartoon look of its own and measures the held-out quarters against their known
answers (pipelines/known_answer.py). The baseline trains the same network on the same dataset for the same
steps with the reference recipe: the released weights, no colour anchor, no weight average (`--preset released
--color-target photo --ema 0`). Prints the gap figures (0 = the photo, 1 = the answer), the largest channel
cast against the answer, SSIM to the answer, and the times; higher closed fractions are better.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.demo import DemoOptions, run_demo  # noqa: E402
from pipelines.known_answer import load_held, measure  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import TrainRequest, run_train  # noqa: E402

FIGURES = ("color_closed", "outline_closed", "ssim_output", "ssim_photo", "max_cast")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-demo-quality"))
    ap.add_argument("--steps", type=int, default=DemoOptions().steps)
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)

    t0 = time.perf_counter()
    demo = run_demo(DemoOptions(out=args.out / "demo", steps=args.steps, vgg_weights="random", device="cpu"), Reporter())
    t_demo = time.perf_counter() - t0
    held = load_held(args.out / "demo")

    import json

    demo_config = json.loads((demo.run / "config.json").read_text())["config"]
    base_run = args.out / "baseline"
    t0 = time.perf_counter()
    run_train(TrainRequest(overrides=dict(
        dataset=str(demo.dataset), out=str(base_run), model="whitebox", preset="released", color_target="photo", ema=0.0,
        max_steps=args.steps, init_epochs=demo_config["init_epochs"], image_size=demo_config["image_size"],
        batch_size=demo_config["batch_size"], device="cpu", seed=0, vgg_weights="random", workers=0,
        checkpoint_every=1000)), Reporter())
    t_base = time.perf_counter() - t0
    base = measure(base_run, held).figures

    print(f"{'configuration':<58}" + "".join(f"{f:>15}" for f in FIGURES) + f"{'seconds':>9}")
    print(f"{'baseline: White-box released, no anchor, no average':<58}" + "".join(f"{base[f]:>15.3f}" for f in FIGURES)
          + f"{t_base:>9.0f}")
    print(f"{'animegan demo (whole demo: clip, data, train, stylize)':<58}" + "".join(f"{demo.gaps[f]:>15.3f}" for f in FIGURES)
          + f"{t_demo:>9.0f}")


if __name__ == "__main__":
    main()

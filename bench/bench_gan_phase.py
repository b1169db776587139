"""GAN-phase variants of one family on the known-answer benchmark, all started from one init-phase generator.

    python bench/bench_gan_phase.py [--family animeganv2] [--look warm] [--init-steps 1000] [--steps 400]
        [--out /tmp/bench-gan-phase] VARIANT [VARIANT ...]

    VARIANT: NAME or NAME:field=value;field=value (train options; `w.NAME=value` sets one loss weight), e.g.
        base  'adv30:w.adv=30;w.content=86.4'  aug:augment=translation,cutout

bench_style_learning.py trains every run from scratch, init phase included; comparing what the GAN phase does with
other weights, learning rates or discriminator inputs then pays the init phase each time (AnimeGAN's generators
need about 1000 steps to reconstruct photos at 64 px: 5 minutes on 2 cores). Here the init phase runs once (kept
under --out and reused by later calls with the same family, look and --init-steps: pixel L1 reconstruction at
weight 100 beside the recipe's content term, lr 2e-4, for AnimeGAN; the recipe's for White-box), and each variant
is a fine-tune of that generator (`--init-weights`: fresh discriminators, no init phase) for --steps GAN steps.
Prints per variant the held-out figures (colour, outline and SSIM gaps closed; 0 = the photo, 1 = the answer;
largest channel cast) and writes VARIANT.png (photo / output / answer).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.data.cartoon import LOOKS  # noqa: E402
from pipelines.fileio import write_image  # noqa: E402
from pipelines.known_answer import benchmark_photos, build_set, labelled_grid, measure  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import TrainRequest, run_train  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    name, _, rest = text.partition(":")
    options: dict[str, object] = {}
    for item in filter(None, rest.split(";")):
        key, _, raw = item.partition("=")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("w."):
            options.setdefault("weights", {})[key[2:]] = value  # type: ignore[union-attr]
        else:
            options[key] = value
    return name, options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", metavar="VARIANT")
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else None)
    ap.add_argument("--family", default="animeganv2", choices=["animegan", "animeganv2", "whitebox"])
    ap.add_argument("--look", default="warm", choices=list(LOOKS))
    ap.add_argument("--init-steps", type=int, default=None, help="default: 1000 for AnimeGAN, 200 for White-box")
    ap.add_argument("--steps", type=int, default=400, help="GAN steps per variant")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-gan-phase"))
    args = ap.parse_args()
    root = args.out / args.look
    photos, held_photos = benchmark_photos(args.photos)
    kas = build_set(photos, args.look, root, Reporter(), short_side=128, held_out=11, seed=0, held_photos=held_photos)
    base = dict(dataset=str(kas.dataset), model=args.family, epochs=10_000, image_size=args.image_size,
                batch_size=args.batch_size, device=args.device, seed=0, vgg_weights="random", workers=0,
                checkpoint_every=10_000, eval_every=10_000, log_every=50)
    whitebox = args.family == "whitebox"
    init_steps = args.init_steps or (200 if whitebox else 1000)
    init_run = root / f"init-{args.family}-{init_steps}"
    if not (init_run / "generator.safetensors").exists():
        spe = max(len(kas.style_names), len(kas.photo_names)) // args.batch_size or 1
        overrides = dict(base, out=str(init_run), init_epochs=-(-init_steps // spe), max_steps=init_steps, lr_init=2e-4)
        if not whitebox:
            overrides["weights"] = {"recon": 100.0}
        t = time.perf_counter()
        run_train(TrainRequest(overrides=overrides), Reporter())
        f = measure(init_run, kas.held, args.device).figures
        print(f"init ({init_steps} steps, {time.perf_counter() - t:.0f} s): colour {f['color_closed']:.3f} "
              f"SSIM {f['ssim_output']:.3f} (photo {f['ssim_photo']:.3f})", flush=True)

    for text in args.variants:
        name, options = parse_variant(text)
        run = root / f"{args.family}-{name}"
        overrides = dict(base, out=str(run), init_weights=str(init_run), max_steps=args.steps, **options)
        if run.exists():
            shutil.rmtree(run)
        t = time.perf_counter()
        run_train(TrainRequest(overrides=overrides), Reporter())
        m = measure(run, kas.held, args.device)
        f = m.figures
        print(f"{name}: colour {f['color_closed']:.3f}, outlines {f['outline_closed']:.3f}, SSIM {f['ssim_output']:.3f} "
              f"(photo {f['ssim_photo']:.3f}), cast {f['max_cast']:.1f}, {time.perf_counter() - t:.0f} s", flush=True)
        rows = [[("photo", p), (name, o), ("answer", a)] for p, o, a in zip(kas.held.photos, m.outputs, kas.held.answers)]
        write_image(args.out / f"{args.look}-{args.family}-{name}.png",
                    labelled_grid(rows[:6], [f"{args.family} '{args.look}': {text}, {args.steps} GAN steps from a "
                                             f"{init_steps}-step init"], height=96))


if __name__ == "__main__":
    main()

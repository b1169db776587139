"""Known-answer style benchmark: does each trainer learn a style it was only shown unpaired examples of?

    python bench/bench_style_learning.py [--photos DIR] [--families animegan animeganv2 whitebox]
        [--looks warm cool pastel] [--steps 1500] [--image-size 64] [--batch-size 4] [--device cpu]
        [--out /tmp/bench-style-learning] [--set family.field=value ...]

For each look (pipelines/data/cartoon.py) the photos are split three ways: the look of one share is the
style set, another share is the photo set, and the held-out share is never trained on; its answers are the
look of those photos. Each family trains on it (random VGG unless --vgg-weights; the recipe defaults, so
this measures what users get), and the script measures on the held-out photos how much of each gap from the
photo to its answer the output closed (colour, outlines, SSIM; pipelines/evaluation/known_answer.py), with
two baselines from the same run: the photo itself (0 by construction) and the generator at the end of its
init phase (the same run stopped there, then resumed). Looks in LOOKS_HELD_OUT were never used to choose a
default. Prints one table, writes `results.json` and one labelled picture per look (photo / each family's
output / answer) under --out.

Default photos: ../shared/data/photos beside the checkout, else scikit-image's sample photos (5, cut into
quarters). The issue's targets: colour >= 0.5, outlines >= 0.33, max channel cast <= 10 levels, SSIM to
the answer above the photo's, on held-out looks as well.
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

from pipelines.data.cartoon import LOOKS, LOOKS_HELD_OUT  # noqa: E402
from pipelines.fileio import write_image  # noqa: E402
from pipelines.known_answer import benchmark_photos, build_set, labelled_grid, measure, photo_baseline  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import TrainRequest, resolve_config, run_train  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"
FIGURES = ("color_closed", "outline_closed", "ssim_closed", "ssim_output", "ssim_photo", "max_cast")


def parse_sets(items: list[str]) -> dict[str, dict[str, object]]:
    """`family.field=value` -> {family: {field: value}}; `family.weights.name=value` sets one loss weight."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, _, raw = item.partition("=")
        family, _, field = key.partition(".")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = out.setdefault(family, {})
        if field.startswith("weights."):
            target.setdefault("weights", {})[field.split(".", 1)[1]] = value  # type: ignore[union-attr]
        else:
            target[field] = value
    return out


def train_and_measure(kas, family: str, args, extra: dict[str, object], run: Path) -> dict[str, object]:
    # epochs=10_000: --steps decides the length (White-box's default 50 epochs ended the sixth session's
    # "1000-step" runs at 700 steps on 40 style images; docs/benchmarks.md).
    overrides = dict(dataset=str(kas.dataset), out=str(run), model=family, epochs=10_000, image_size=args.image_size,
                     batch_size=args.batch_size, device=args.device, seed=args.seed, vgg_weights=args.vgg_weights,
                     workers=0, checkpoint_every=10_000, eval_every=10_000, log_every=50, **extra)
    config = resolve_config(overrides=overrides)
    spe = max(len(kas.style_names), len(kas.photo_names)) // config.batch_size or 1
    init_steps = min(args.steps, (config.init_epochs or 0) * spe)
    t0 = time.perf_counter()
    result: dict[str, object] = {"init_steps": init_steps, "steps": args.steps}
    if init_steps:
        run_train(TrainRequest(overrides={**overrides, "max_steps": init_steps}), Reporter())
        result["init"] = measure(run, kas.held, args.device).figures
    run_train(TrainRequest(overrides={**overrides, "max_steps": args.steps}, resume=init_steps > 0), Reporter())
    result["seconds"] = time.perf_counter() - t0
    final = measure(run, kas.held, args.device)
    result["final"] = final.figures
    result["outputs"] = final.outputs
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else None)
    ap.add_argument("--families", nargs="+", default=["animegan", "animeganv2", "whitebox"])
    ap.add_argument("--looks", nargs="+", default=list(LOOKS), choices=list(LOOKS))
    ap.add_argument("--steps", type=int, default=1500, help="generator steps per run, both phases")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--short-side", type=int, default=128, help="photos are scaled to this short side first")
    ap.add_argument("--held-out", type=int, default=11)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vgg-weights", default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="FAMILY.FIELD=VALUE",
                    help="override a train option for one family, e.g. whitebox.lr_g=1e-4 or animeganv2.weights.adv=100")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-style-learning"))
    args = ap.parse_args()
    extras = parse_sets(args.sets)
    shutil.rmtree(args.out, ignore_errors=True)

    photos, held_photos = benchmark_photos(args.photos)
    results: dict[str, dict[str, object]] = {}
    for look in args.looks:
        kas = build_set(photos, look, args.out / look, Reporter(), short_side=args.short_side,
                        held_out=args.held_out, seed=args.seed, held_photos=held_photos)
        results[look] = {"baseline_photo": photo_baseline(kas.held)}
        columns: list[list[tuple[str, object]]] = [[(f"{n}: photo", p)] for n, p in zip(kas.held.names, kas.held.photos)]
        for family in args.families:
            r = train_and_measure(kas, family, args, extras.get(family, {}), args.out / look / "runs" / family)
            for row, out in zip(columns, r.pop("outputs")):
                row.append((family, out))
            results[look][family] = r
            f = r["final"]
            print(f"[{look}] {family}: colour {f['color_closed']:.2f}, outlines {f['outline_closed']:.2f}, "
                  f"SSIM {f['ssim_output']:.3f} (photo {f['ssim_photo']:.3f}), cast {f['max_cast']:.1f}, "
                  f"{r['seconds']:.0f} s", flush=True)
        for row, answer in zip(columns, kas.held.answers):
            row.append(("answer", answer))
        held_note = " (held-out look: no default was tuned on it)" if look in LOOKS_HELD_OUT else ""
        title = [f"known-answer benchmark, look '{look}'{held_note}: {LOOKS[look].description}",
                 f"held-out photos; {args.steps} steps, {args.image_size} px crops, batch {args.batch_size}, "
                 f"{args.vgg_weights} VGG19, {args.device}"]
        write_image(args.out / f"{look}.png", labelled_grid(columns, title, height=128))

    print()
    print(f"{'look':<8}{'family':<12}{'row':<7}" + "".join(f"{f:>15}" for f in FIGURES) + f"{'seconds':>9}")
    for look, per in results.items():
        base = per["baseline_photo"]
        print(f"{look:<8}{'-':<12}{'photo':<7}" + "".join(f"{base[f]:>15.3f}" for f in FIGURES))
        for family in args.families:
            r = per[family]
            for row in ("init", "final"):
                if row in r:
                    secs = f"{r['seconds']:>9.0f}" if row == "final" else ""
                    print(f"{look:<8}{family:<12}{row:<7}" + "".join(f"{r[row][f]:>15.3f}" for f in FIGURES) + secs)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results}, indent=1))
    print(f"\npictures: {', '.join(str(args.out / f'{look}.png') for look in args.looks)}")


if __name__ == "__main__":
    main()

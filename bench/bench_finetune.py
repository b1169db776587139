"""Fine-tuning against training from scratch, on the known-answer benchmark.

    python bench/bench_finetune.py [--family whitebox] [--source-look warm] [--target-look cool]
        [--steps 1000] [--style-images 30] [--set field=value ...] [--finetune-set field=value ...] [--out DIR]

1. A source generator is trained on the `--source-look` set (the benchmark's usual split) for --source-steps.
2. On the `--target-look` set, with --style-images style images (the held-out photos never trained on), two runs
   of the same family: from scratch (the recipe's defaults, init phase included) and fine-tuned from the source
   (`--init-weights`, the fine-tuning defaults: no init phase). Each is measured on the held-out photos after a
   third of --steps and after --steps (the same run stopped, measured, resumed).
3. Prints the table and writes results.json and `finetune.png` (photo / from scratch / fine-tuned / answer).

Target (issue 22): the fine-tuned run reaches the from-scratch run's final colour and outline gaps in at most a
third of the steps, and is never worse than from scratch at equal steps.
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

from pipelines.fileio import write_image  # noqa: E402
from pipelines.known_answer import benchmark_photos, build_set, labelled_grid, measure, photo_baseline  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import TrainRequest, run_train  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def parse(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def staged(kas, overrides: dict[str, object], checkpoints: list[int], device: str) -> tuple[dict[int, dict], list, float]:
    """Train to each step count in turn (resuming), measuring the held-out gaps at each."""
    figures, outputs, t0 = {}, [], time.perf_counter()
    for k, steps in enumerate(checkpoints):
        run_train(TrainRequest(overrides={**overrides, "max_steps": steps}, resume=k > 0), Reporter())
        m = measure(overrides["out"], kas.held, device)
        figures[steps], outputs = m.figures, m.outputs
        print(f"  {Path(str(overrides['out'])).name} @ {steps}: colour {m.figures['color_closed']:.3f}, outlines "
              f"{m.figures['outline_closed']:.3f}, SSIM {m.figures['ssim_output']:.3f}, cast {m.figures['max_cast']:.1f}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return figures, outputs, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else None)
    ap.add_argument("--family", default="whitebox", choices=["animegan", "animeganv2", "whitebox"])
    ap.add_argument("--source-look", default="warm")
    ap.add_argument("--target-look", default="cool")
    ap.add_argument("--source-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--style-images", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", dest="sets", action="append", default=["init_epochs=20"], metavar="FIELD=VALUE",
                    help="train options of the source and from-scratch runs (default: init_epochs=20, as the style benchmark)")
    ap.add_argument("--finetune-set", dest="ft_sets", action="append", default=[], metavar="FIELD=VALUE",
                    help="train options of the fine-tuned run only, e.g. lr_g=1e-4")
    ap.add_argument("--source", type=Path, default=None, help="an existing source generator (skips step 1)")
    ap.add_argument("--no-scratch", action="store_true", help="only the fine-tuned run (to compare fine-tuning options)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-finetune"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    photos, held_photos = benchmark_photos(args.photos)
    # epochs=10_000: the step counts decide each run's length (the family's default epochs would end it first).
    base = dict(model=args.family, epochs=10_000, image_size=args.image_size, batch_size=args.batch_size, device=args.device,
                vgg_weights="random", workers=0, checkpoint_every=10_000, eval_every=10_000, log_every=50)
    extra = parse(args.sets)

    source = args.source
    if source is None:
        kas_a = build_set(photos, args.source_look, args.out / "source", Reporter(), short_side=128, held_out=11,
                          held_photos=held_photos)
        source = args.out / "source" / "run"
        print(f"source: {args.family} on '{args.source_look}' ({len(kas_a.style_names)} style images)", flush=True)
        staged(kas_a, {**base, **extra, "dataset": str(kas_a.dataset), "out": str(source)}, [args.source_steps],
               args.device)
    held_out = max(1, len(photos) - args.style_images) if held_photos is None else 0
    kas = build_set(photos, args.target_look, args.out / "target", Reporter(), short_side=128, held_out=held_out,
                    held_photos=held_photos)
    print(f"target '{args.target_look}': {len(kas.style_names)} style images, {len(kas.held.names)} held-out photos",
          flush=True)
    marks = [max(1, args.steps // 3), args.steps]
    if args.no_scratch:
        ft_over = {**base, **parse(args.ft_sets), "dataset": str(kas.dataset), "out": str(args.out / "finetune"),
                   "init_weights": str(source)}
        staged(kas, ft_over, marks, args.device)
        return
    scratch, out_s, t_s = staged(kas, {**base, **extra, "dataset": str(kas.dataset), "out": str(args.out / "scratch")},
                                 marks, args.device)
    ft_over = {**base, **parse(args.ft_sets), "dataset": str(kas.dataset), "out": str(args.out / "finetune"),
               "init_weights": str(source)}
    tuned, out_f, t_f = staged(kas, ft_over, marks, args.device)

    results = {"photo": photo_baseline(kas.held), "scratch": scratch, "finetune": tuned,
               "seconds": {"scratch": t_s, "finetune": t_f}, "style_images": len(kas.style_names),
               "source": str(source), "marks": marks}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    rows = [[(f"{n}: photo", p), ("from scratch", s), ("fine-tuned", f), ("answer", a)]
            for n, p, s, f, a in zip(kas.held.names, kas.held.photos, out_s, out_f, kas.held.answers)]
    title = [f"fine-tuning: {args.family} from '{args.source_look}' to '{args.target_look}' with "
             f"{len(kas.style_names)} style images; held-out photos",
             f"{args.steps} steps each, {args.image_size} px crops, batch {args.batch_size}, random VGG19, {args.device}"]
    write_image(args.out / "finetune.png", labelled_grid(rows, title, height=128))
    print()
    print(f"{'run':<12}{'steps':>7}{'colour':>8}{'outline':>9}{'SSIM':>7}{'cast':>6}")
    for name, figs in (("scratch", scratch), ("finetune", tuned)):
        for steps, f in figs.items():
            print(f"{name:<12}{steps:>7}{f['color_closed']:>8.3f}{f['outline_closed']:>9.3f}{f['ssim_output']:>7.3f}"
                  f"{f['max_cast']:>6.1f}")
    final = scratch[marks[-1]]
    early = tuned[marks[0]]
    ok = (early["color_closed"] >= final["color_closed"] and early["outline_closed"] >= final["outline_closed"]
          and all(tuned[m]["color_closed"] >= scratch[m]["color_closed"] for m in marks))
    print(f"\nfine-tuned at {marks[0]} steps reaches from-scratch at {marks[-1]} and is never worse at equal steps: "
          f"{'yes' if ok else 'no'}; minutes: scratch {t_s / 60:.1f}, fine-tune {t_f / 60:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()

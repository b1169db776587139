"""What each generator can draw of a known-answer look when it is told the answer: paired training, same scale.

    python bench/bench_paired_ceiling.py [--family whitebox animeganv2 animegan] [--look warm] [--steps 4000]
        [--lr 2e-4] [--image-size 64] [--batch-size 4] [--report-every N] [--out /tmp/bench-paired-ceiling]

The unpaired trainers (`bench_style_learning.py`, `bench_gan_phase.py`) see the look only through a style set and
discriminators. When one of them fails to learn a part of the look (the outlines, say), that is either the
generator, which cannot draw it at this scale, or the training signal, which does not tell it how. This script
separates the two: each generator is trained with a pixel L1 loss on pairs (the benchmark's training photos and
their own answers, `cartoonize(photo, look)`, which an unpaired trainer never has), at the benchmark's crop size,
batch and a fixed step count on the CPU, from fresh weights. Its held-out figures (0 = the photo, 1 = the answer;
the same split and measures as the other benchmarks) are then what that generator reaches when the signal is
perfect: a ceiling for the unpaired runs of the same length.

Prints per family the figures of the bare generator and, where the architecture has an inference post-process
(White-box's guided filter), with it as `stylize` runs it; writes FAMILY.png (photo / output / answer).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pipelines.data.cartoon import LOOKS, cartoonize  # noqa: E402
from pipelines.evaluation.known_answer import gap_figures  # noqa: E402
from pipelines.fileio import read_image, write_image  # noqa: E402
from pipelines.inference.engine import Engine  # noqa: E402
from pipelines.known_answer import benchmark_photos, build_set, labelled_grid  # noqa: E402
from pipelines.models.registry import InferenceModel, build_generator  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"
ARCH = {"whitebox": "whitebox", "animeganv2": "animegan_v2", "animegan": "animegan_v1"}
SHOWN = ("color_closed", "outline_closed", "ssim_closed", "max_cast")


def crops(pairs: list[tuple[np.ndarray, np.ndarray]], n: int, size: int, rng: np.random.Generator):
    """`n` aligned random crops: (photos, answers), each `[n, 3, size, size]` in [-1, 1]."""
    xs, ys = [], []
    for _ in range(n):
        photo, answer = pairs[rng.integers(len(pairs))]
        h, w = photo.shape[:2]
        top, left = rng.integers(h - size + 1), rng.integers(w - size + 1)
        xs.append(photo[top:top + size, left:left + size])
        ys.append(answer[top:top + size, left:left + size])
    to = lambda b: torch.from_numpy(np.stack(b)).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    return to(xs), to(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else None)
    ap.add_argument("--family", nargs="+", default=["whitebox", "animeganv2", "animegan"], choices=list(ARCH))
    ap.add_argument("--look", default="warm", choices=list(LOOKS))
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-every", type=int, default=0, metavar="N",
                    help="also print the bare generator's held-out figures every N steps (how the ceiling moves with time)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-paired-ceiling"))
    args = ap.parse_args()
    root = args.out / args.look
    photos, held_photos = benchmark_photos(args.photos)
    # The same split, scale and held-out photos as bench_style_learning.py and bench_gan_phase.py.
    kas = build_set(photos, args.look, root, Reporter(), short_side=128, held_out=11, seed=0, held_photos=held_photos)
    train = [read_image(root / "material" / "photo" / f"{name}.png") for name in kas.photo_names]
    pairs = [(p, cartoonize(p, kas.look)) for p in train]
    held = kas.held
    print(f"{len(pairs)} training pairs ({args.look} look), {len(held.photos)} held-out photos; {args.steps} steps of "
          f"{args.batch_size} x {args.image_size} px, Adam lr {args.lr}, pixel L1", flush=True)
    print(f"  {'photo itself':<34} " + "  ".join(f"{k} {v:.3f}" for k, v in
                                                gap_figures(held.photos, held.photos, held.answers, held.outlines).items()
                                                if k in SHOWN), flush=True)
    for family in args.family:
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        generator = build_generator(ARCH[family])
        opt = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
        t0 = time.perf_counter()
        generator.train()
        for step in range(1, args.steps + 1):
            x, y = crops(pairs, args.batch_size, args.image_size, rng)  # [N, 3, S, S] in [-1, 1]
            loss = F.l1_loss(generator(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if args.report_every and step % args.report_every == 0 and step < args.steps:
                # fast_cpu off: NNPACK (on AVX2 CPUs) would rewire the convolutions of the generator still in training
                engine = Engine(InferenceModel.for_architecture(ARCH[family], generator.eval(), postprocess=False),
                                torch.device("cpu"), torch.float32, fast_cpu=False)
                f = gap_figures(held.photos, [engine.stylize_image(p) for p in held.photos], held.answers, held.outlines)
                print(f"  {family + f', step {step}':<34} " + "  ".join(f"{k} {f[k]:.3f}" for k in SHOWN) +
                      f"  {time.perf_counter() - t0:.0f} s", flush=True)
                generator.train().requires_grad_(True)  # the engine froze it for inference
        seconds = time.perf_counter() - t0
        model = InferenceModel.for_architecture(ARCH[family], generator.eval())
        variants = [("bare generator", None)] + ([("with its post-process", model.postprocess)] if model.postprocess else [])
        outputs = []
        for label, post in variants:
            model.postprocess = post
            engine = Engine(model, torch.device("cpu"), torch.float32)
            outs = [engine.stylize_image(p) for p in held.photos]
            outputs.append((label, outs))
            f = gap_figures(held.photos, outs, held.answers, held.outlines)
            print(f"  {family + ', ' + label:<34} " + "  ".join(f"{k} {f[k]:.3f}" for k in SHOWN) + f"  {seconds:.0f} s",
                  flush=True)
        rows = [[("photo", p), *((label, outs[i]) for label, outs in outputs), ("answer", a)]
                for i, (p, a) in enumerate(zip(held.photos[:6], held.answers[:6]))]
        path = args.out / f"{args.look}-{family}.png"
        write_image(path, labelled_grid(rows, [f"{family} trained on pairs (pixel L1), {args.steps} steps, "
                                               f"{args.image_size} px crops; held-out photos"]))
        print(f"  wrote {path}", flush=True)


if __name__ == "__main__":
    main()

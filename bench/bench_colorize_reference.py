"""Does a trained Style2paints colorizer follow its reference? Training references compared on held-out sketches.

    python bench/bench_colorize_reference.py [--illustrations DIR] [--held-out 5] [--steps 1500]
        [--image-size 128] [--batch-size 8] [--references crop original] [--match off auto lab histogram palette]
        [--set field=value ...] [--out DIR]
    python bench/bench_colorize_reference.py --measure RUN [RUN ...]   # measure trained runs, no training

The illustrations (default `../shared/data/style_hayao`) are split: the last --held-out (sorted by name) are
never trained on. For each `--reference` mode a colorizer is trained from scratch on the rest (random VGG, CPU
unless --device) and measured on the held-out illustrations' centre crops at the training scale (short side
image_size x 1.5), their sketches made with the default XDoG (`pipelines.evaluation.colorization`):

- tint: a warm and a cool tint of each illustration as references; the share of the references' red-minus-blue
  difference that the outputs show (issue 19's target: at least 0.25, in the references' direction);
- hue: the share of a +-60 degree hue turn of the reference that the outputs' mean hue follows;
- nearest: with the other held-out illustrations as references, the share of outputs whose colour histogram is
  nearest their own reference's (issue 19's target: every output; chance is 1/N); distance: the Bhattacharyya
  distance of those outputs' 8x8x8 colour histograms to their own reference's (0: its colours, 1: none of them);
- spread: how much one sketch's outputs differ between references (levels); lines: output darkness on the lines.

Each network (untrained and trained) is measured with each `--match` setting of `colorize --match-colors` (the
colours matched to the reference's after the network; `auto`, colorize's default, is resolved from each run's
export as colorize resolves it: palette when the run's own held-out evaluation found it following loosely).
The untrained network is the baseline in the same run, and two ceilings made with what no colorizer is given:
each sketch's own illustration (the answer), recoloured towards the reference: `Lab ceiling` (Reinhard et al.'s
mean and deviation per CIELAB channel) and `hist. ceiling` (each RGB channel's histogram matched to the
reference's, scikit-image's `match_histograms`). They say what the figures can be for a given set: an output with
every colour statistic of the first kind right, on the answer's own layout, scores what `Lab ceiling` scores.
Prints the table, writes results.json and
`reference.png` (per held-out sketch: warm reference / output / cool reference / output / another reference /
output, one row per mode).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.data.derived import resize_short_side  # noqa: E402
from pipelines.data.importing import add_images  # noqa: E402
from pipelines.data.sketches import XDOG_DEFAULTS, xdog  # noqa: E402
from pipelines.evaluation.colorization import network_colorizer, reference_following, tint  # noqa: E402
from pipelines.fileio import is_image_path, read_image, write_image  # noqa: E402
from pipelines.inference.color_match import MATCH_CHOICES, histogram_match, lab_match, match_colors  # noqa: E402
from pipelines.known_answer import labelled_grid  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import TrainRequest, run_train  # noqa: E402

from bench_finetune import parse  # noqa: E402  (this folder is the script's: first on sys.path)

SHARED = ROOT.parent / "shared" / "data" / "style_hayao"


def held_out_views(paths: list[Path], size: int, short: int) -> tuple[np.ndarray, np.ndarray]:
    """(sketches `[N, size, size]`, illustrations `[N, size, size, 3]`): centre crops at short side `short`."""
    ills = []
    for p in paths:
        rgb = resize_short_side(read_image(p), short)
        h, w = rgb.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        ills.append(rgb[top:top + size, left:left + size])
    ills_a = np.stack(ills)
    return np.stack([xdog(i, **XDOG_DEFAULTS) for i in ills_a]), ills_a


def oracle(sketches: np.ndarray, illustrations: np.ndarray, transfer):
    """A `Colorize` that knows each held-out sketch's illustration and recolours it towards the reference."""
    answer = {s.tobytes(): ill for s, ill in zip(sketches, illustrations)}

    def run(batch: np.ndarray, references: np.ndarray) -> np.ndarray:
        return np.stack([transfer(answer[s.tobytes()], r) for s, r in zip(batch, references)])

    return run


def colorizer_of(run: Path | None, reference_mode: str, seed: int = 0):
    import torch

    from pipelines.inference.colorize import load_style_network
    from pipelines.models.registry import build_generator
    from pipelines.models.vgg import build_vgg_fc1
    from pipelines.models.weights import load_colorizer

    if run is None:  # the untrained network, with the same random VGG the runs use
        torch.manual_seed(seed)
        g = build_generator("style2paints_v1").eval()
        return network_colorizer(g, build_vgg_fc1("random").eval())
    loaded = load_colorizer(run)
    vgg = load_style_network(loaded.info, loaded.source, None, lambda m: None).eval()
    return network_colorizer(loaded.model, vgg)


def resolved(run: Path | None, mode: str) -> str:
    """What `colorize --match-colors mode` does with `run`'s export: `auto` is palette when the run's own held-out
    evaluation (the export's `meta.held_out`) found it following its references loosely, else off."""
    from pipelines.inference.colorize import resolve_match

    # the untrained network has no file, hence no training figures: auto leaves its colours alone
    return resolve_match(mode, json.loads((run / "generator.json").read_text()) if run is not None else {})


def label(name: str, run: Path | None, m: str) -> str:
    return name if m == "off" else f"{name} + {m}" + (f" ({resolved(run, m)})" if m == "auto" else "")


def matched(colorize, mode: str):
    """`colorize` followed by `animegan colorize --match-colors mode` (each output matched to its reference)."""
    def run(batch: np.ndarray, references: np.ndarray) -> np.ndarray:
        return np.stack([match_colors(o, r, mode) for o, r in zip(colorize(batch, references), references)])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--illustrations", type=Path, default=SHARED)
    ap.add_argument("--held-out", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--references", nargs="+", default=["crop", "original"], choices=["crop", "original", "augmented"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-colorize-reference"))
    ap.add_argument("--match", nargs="+", default=list(MATCH_CHOICES), choices=("auto", *MATCH_CHOICES),
                    help="colour matching after the network to measure each run with (colorize --match-colors; "
                         "auto as colorize resolves it from each run's export)")
    ap.add_argument("--measure", type=Path, nargs="+", default=None, help="run folders to measure instead of training")
    args = ap.parse_args()
    files = sorted(p for p in args.illustrations.iterdir() if is_image_path(p))
    train_files, held_files = files[: -args.held_out], files[-args.held_out:]
    if args.measure is None:
        shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = args.out / "dataset"
    if args.measure is None:
        add_images(train_files, "illustration", dataset, Reporter())
    short = round(args.image_size * 1.5)
    sketches, ills = held_out_views(held_files, args.image_size, short)
    what = "measuring " + ", ".join(str(r) for r in args.measure) if args.measure else \
        f"{args.steps} steps of batch {args.batch_size}, random VGG, {args.device}"
    print(f"{len(train_files)} training illustrations, {len(held_files)} held out; crops {args.image_size} px at short "
          f"side {short}; {what}", flush=True)

    results: dict[str, dict] = {}
    pictures: dict[str, list] = {}

    def measure(name: str, colorize, seconds: float) -> None:
        f = reference_following(colorize, sketches, ills).as_dict()
        results[name] = {**f, "seconds": seconds}
        print(f"  {name:<22} tint {f['ref_tint']:6.3f}  hue {f['ref_hue']:6.3f}  nearest {f['ref_nearest']:.2f} "
              f"(chance {f['ref_chance']:.2f})  distance {f['ref_distance']:.2f}  spread {f['ref_spread']:5.1f}  lines {f['line_contrast']:5.1f}  "
              f"{seconds:6.0f} s", flush=True)
        warm, cool = tint(ills, True), tint(ills, False)
        other = np.roll(ills, 1, axis=0)
        pictures[name] = [colorize(sketches, warm), colorize(sketches, cool), colorize(sketches, other)]

    measure("Lab ceiling", oracle(sketches, ills, lab_match), 0.0)
    measure("hist. ceiling", oracle(sketches, ills, histogram_match), 0.0)
    for m in args.match:  # the same matching on the untrained network: what the matching does without training
        measure(label("untrained", None, m), matched(colorizer_of(None, "crop"), resolved(None, m)), 0.0)
    if args.measure is not None:
        for run in args.measure:
            for m in args.match:
                measure(label(run.name, run, m), matched(colorizer_of(run, ""), resolved(run, m)), 0.0)
    base = dict(model="style2paints", epochs=10_000, image_size=args.image_size, batch_size=args.batch_size,
                device=args.device, vgg_weights="random", checkpoint_every=10_000, eval_every=10_000, log_every=100,
                max_steps=args.steps, dataset=str(dataset))
    for mode in args.references if args.measure is None else ():
        run = args.out / f"run-{mode}"
        t0 = time.perf_counter()
        run_train(TrainRequest(overrides={**base, **parse(args.sets), "reference": mode, "out": str(run)}), Reporter())
        seconds = time.perf_counter() - t0
        for m in args.match:
            measure(label(mode, run, m), matched(colorizer_of(run, mode), resolved(run, m)), seconds)

    (args.out / ("results-measured.json" if args.measure else "results.json")).write_text(json.dumps(results, indent=2))
    rows = []
    side = ills.shape[2]

    def first(img: np.ndarray) -> np.ndarray:  # the first column half as wide again, so that its labels fit
        return np.pad(img, ((0, 0), (0, side // 2), (0, 0)), constant_values=255)

    for i in range(len(held_files)):
        rows.append([(f"{held_files[i].stem}: sketch", first(np.repeat(sketches[i][:, :, None], 3, 2))),
                     ("warm ref", tint(ills, True)[i]), ("cool ref", tint(ills, False)[i]),
                     ("other ref", np.roll(ills, 1, axis=0)[i]), ("illustration", ills[i])])
        for name, (w, c, o) in pictures.items():
            rows.append([(f"{name}", first(np.full_like(ills[i], 255))), ("out: warm", w[i]), ("out: cool", c[i]),
                         ("out: other", o[i])])
    trained = "measured runs" if args.measure else f"{args.steps} steps, random VGG"
    title = [f"Style2paints on {len(train_files)} illustrations ({trained}); "
             f"held-out sketches coloured with tinted / other references"]
    write_image(args.out / "reference.png", labelled_grid(rows, title, height=112))
    print(f"wrote {args.out / 'reference.png'}")


if __name__ == "__main__":
    main()

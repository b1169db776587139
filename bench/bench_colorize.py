"""Style2paints: `colorize` per 512x512 sketch against a plain eager forward, and a training step, on CPU.

    python bench/bench_colorize.py [--sketches DIR] [--n 16] [--threads N] [--train-steps 4]

1. colorize: N sketches of 512x512 (XDoG of DIR's images, e.g. ../shared/data/style_hayao, or of
   scikit-image's photos), one reference, through `pipelines.inference.colorize.colorize` end to end
   (decode, style vector once, batches, NNPACK convolutions, line keeping, PNG encode, atomic write), with
   three engines: PyTorch fp32, PyTorch `--precision auto` (bf16 on CPUs that compute it natively) and ONNX
   Runtime on the `animegan export` of the same weights (needs the onnx extra), each against the baseline: the same network's plain eager forward (PyTorch's own kernels, batch 1) on the
   same sketches, tensors only. Ratio > 1: the whole command is faster than the bare network.
   Start-up (weights, VGG19, the reference's vector) is reported apart: the steady cost per sketch is
   (T(N) - T(4)) / (N - 4).
2. train: `animegan train --model style2paints` steps at 256x256, batch 4, random VGG, with the fast CPU
   kernels against `--cpu-kernels plain` in the same run (images/s from metrics.jsonl, first step left out;
   "fast" is NNPACK only on AVX2 CPUs, `cpu_speed.nnpack_pays_off`: elsewhere the two are the same path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipelines.data.sketches import xdog  # noqa: E402
from pipelines.fileio import is_image_path, read_image, write_image  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402


def make_sketches(src: Path | None, out: Path, n: int, side: int = 512) -> list[Path]:
    import cv2
    from skimage import data

    if src is not None:
        images = [read_image(p) for p in sorted(src.iterdir()) if is_image_path(p)][:n]
    else:
        images = [np.ascontiguousarray(getattr(data, k)()[:, :, :3]) for k in ("astronaut", "chelsea", "coffee", "rocket")]
    paths = []
    for i in range(n):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        s = side / min(h, w)
        img = cv2.resize(img, (max(side, round(w * s)), max(side, round(h * s))), interpolation=cv2.INTER_AREA)
        img = img[:side, :side]
        p = out / f"sketch{i:03d}.png"
        write_image(p, np.repeat(xdog(img)[:, :, None], 3, axis=2))
        paths.append(p)
    return paths


def bench_colorize(work: Path, sketches: list[Path], reference: Path) -> None:
    from pipelines.inference.colorize import ColorizeOptions, colorize
    from pipelines.models.style2paints import ColorizerModel, Style2PaintsGenerator
    from pipelines.models.vgg import build_vgg_fc1
    from pipelines.models.weights import save_generator

    torch.manual_seed(0)
    gen = Style2PaintsGenerator().eval()
    weights = work / "weights"
    save_generator(gen, "style2paints_v1", {}, weights,
                   meta={"vgg_weights": "random", "vgg_fingerprint": build_vgg_fc1("random").fingerprint()})

    # Baseline: the bare network, PyTorch's kernels, one sketch at a time, decoded beforehand.
    plain = ColorizerModel(Style2PaintsGenerator().eval())
    plain.generator.load_state_dict(gen.state_dict())
    xs = [torch.from_numpy(read_image(p)[:, :, :1].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1 for p in sketches]
    style = torch.rand(1, 4096)
    with torch.no_grad():
        plain(xs[0], style)  # warm-up
        t = time.perf_counter()
        for x in xs:
            plain(x, style)
        base = (time.perf_counter() - t) / len(xs)

    def timed(sketch_dir: Path, tag: str, w: Path, precision: str) -> float:
        t = time.perf_counter()
        colorize([sketch_dir], ColorizeOptions(reference=reference, weights=w, out_dir=work / tag, batch_size=4,
                                               precision=precision), Reporter())
        return time.perf_counter() - t

    # Fixed costs (loading, the random VGG's construction, the reference's style vector) are paid once per
    # command: N sketches against 4 gives the steady per-sketch cost.
    few = work / "few"
    for p in sketches[:4]:
        write_image(few / p.name, read_image(p))
    engines = [("PyTorch fp32", weights, "fp32"), ("PyTorch auto", weights, "auto")]
    try:
        from pipelines.inference.export_onnx import export_onnx

        engines.append(("ONNX Runtime", export_onnx(weights, work / "colorizer.onnx"), "auto"))
    except Exception as exc:  # noqa: BLE001 - the onnx extra is not installed
        print(f"ONNX Runtime engine left out ({exc})")
    print(f"colorize 512x512, {len(sketches)} sketches: plain eager forward {base * 1000:.0f} ms/sketch")
    for k, (label, w, precision) in enumerate(engines):
        t_few, t_all = timed(few, f"few{k}", w, precision), timed(sketches[0].parent, f"all{k}", w, precision)
        steady = (t_all - t_few) / (len(sketches) - 4)
        print(f"  colorize, {label}: {t_all / len(sketches) * 1000:.0f} ms/sketch with start-up, {steady * 1000:.0f} "
              f"ms/sketch steady (decode, network, lines, PNG, write): {base / steady:.2f}x the plain forward", flush=True)


def bench_train(work: Path, steps: int) -> None:
    from pipelines.data.importing import add_images
    from pipelines.data.cartoon import cartoonize
    from pipelines.training.loop import resolve_config, train
    from skimage import data

    src = work / "ill"
    for k in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"):
        write_image(src / f"{k}.png", cartoonize(np.ascontiguousarray(getattr(data, k)()[:, :, :3]), "warm"))
    ds = work / "ds"
    add_images([src], "illustration", ds, Reporter())
    speeds = {}
    for kernels in ("plain", "fast"):
        out = work / f"run-{kernels}"
        cfg = resolve_config(overrides=dict(dataset=str(ds), out=str(out), model="style2paints", device="cpu",
                                            image_size=256, batch_size=4, max_steps=steps, vgg_weights="random",
                                            workers=1, log_every=1, eval_every=10**6, cpu_kernels=kernels))
        train(cfg, Reporter())
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        speeds[kernels] = statistics.median([r["images_per_s"] for r in rows if "step_time_s" in r][1:])
        print(f"train step 256x256 batch 4 ({kernels} kernels): {speeds[kernels]:.2f} images/s, "
              f"{4 / speeds[kernels]:.2f} s/step", flush=True)
    print(f"train: fast kernels {speeds['fast'] / speeds['plain']:.2f}x plain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sketches", type=Path, default=None, help="folder of colour images to draw the sketches from")
    ap.add_argument("--n", type=int, default=16, help="sketches (at least 5)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--train-steps", type=int, default=4, help="0: leave the training benchmark out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sketches = make_sketches(args.sketches, work / "sketches", args.n)
        ref = work / "reference.png"
        from skimage import data

        write_image(ref, np.ascontiguousarray(data.coffee()))
        bench_colorize(work, sketches, ref)
        if args.train_steps:
            bench_train(work, args.train_steps + 1)


if __name__ == "__main__":
    main()

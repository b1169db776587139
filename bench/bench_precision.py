"""`stylize --precision auto` against plain eager fp32 and ONNX Runtime, as whole processes, on this CPU.

    python bench/bench_precision.py [--size 512] [--photos 4] [--repeats 2] [--video CLIP --seconds 3]

Writes a community-format AnimeGANv2 file (seeded random weights: speed does not depend on their values) and
`--photos` real photos (scikit-image's, scaled to --size squares), then times, each as a fresh process:

1. baseline: a plain eager fp32 NCHW forward of each photo (load, forward, PNG write), torch's defaults;
2. `animegan stylize --precision fp32`;
3. `animegan stylize --precision auto` (bf16 where the CPU computes it natively: AVX512-BF16 or AMX);
4. a plain ONNX Runtime fp32 script over the same weights exported with `animegan export` (session, loop, PNG):
   what a user would run instead; and `animegan stylize --weights v2.onnx` with `--onnx-backend onnxruntime` and
   with the default `auto` (PyTorch where its convolutions are faster: NNPACK on AVX2 CPUs, native bf16).

On a CPU without native bf16 `--precision auto` is fp32, so row 2 against row 4 is what such a CPU gets.

With `--video`, also the frames per second of `stylize` on the first `--seconds` of that clip (frame by frame,
`--stabilize 0`, so that only the network's speed differs) in fp32 and auto, and through the ONNX file on each
backend.

Prints wall seconds (best of --repeats), the ratios against the baseline, and the mean and largest output
difference of auto against fp32 in levels. The issue's targets: auto >= 2.5x the baseline on a CPU with native
bf16 and, on one without, at least as fast as the plain ONNX Runtime script; mean difference <= 1 level.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = """
import sys, torch, numpy as np
sys.path.insert(0, {root!r})
from pathlib import Path
from pipelines.models.animegan import GeneratorV2
from pipelines.fileio import read_image, write_image
g = GeneratorV2(); g.load_state_dict(torch.load({weights!r}, weights_only=True)); g.eval()
out = Path({out!r}); out.mkdir(parents=True, exist_ok=True)
for p in sorted(Path({photos!r}).glob('*.png')):
    x = torch.from_numpy(read_image(p)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = g(x)
    write_image(out / p.name, ((y[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
"""

PLAIN_ORT = """
import sys, numpy as np, onnxruntime as ort
sys.path.insert(0, {root!r})
from pathlib import Path
from pipelines.fileio import read_image, write_image
s = ort.InferenceSession({onnx!r}, providers=["CPUExecutionProvider"])
out = Path({out!r}); out.mkdir(parents=True, exist_ok=True)
for p in sorted(Path({photos!r}).glob('*.png')):
    x = (read_image(p).transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1)
    y = s.run(None, {{"image": x}})[0]
    write_image(out / p.name, ((y[0].transpose(1, 2, 0) + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
"""


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--video", type=Path, default=None, help="a clip for the frames-per-second part")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    import cv2
    import torch
    from skimage import data

    from pipelines.fileio import read_image, write_image
    from pipelines.models.animegan import GeneratorV2
    from pipelines.models.cpu_speed import native_cpu_bf16

    work = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    torch.manual_seed(0)
    weights = work / "v2.pt"
    torch.save(GeneratorV2().state_dict(), weights)
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
    photos = work / "photos"
    for i in range(args.photos):  # the six photos, then mirrored and turned copies of them
        img = np.ascontiguousarray(getattr(data, names[i % len(names)])()[:, :, :3])
        img = np.rot90(img[:, ::-1] if (i // len(names)) % 2 else img, (i // (2 * len(names))) % 4)
        write_image(photos / f"p{i:03d}.png", cv2.resize(np.ascontiguousarray(img), (args.size, args.size),
                                                        interpolation=cv2.INTER_AREA))

    onnx_file = work / "v2.onnx"
    subprocess.run([sys.executable, "-m", "animegan_cli", "export", str(weights), str(onnx_file)], check=True,
                   stdout=subprocess.DEVNULL)
    cli = [sys.executable, "-m", "animegan_cli", "stylize", str(photos), "--weights", str(weights), "-q", "--overwrite"]
    runs = {
        "baseline: plain eager fp32": [sys.executable, "-c", BASELINE.format(root=str(ROOT), weights=str(weights),
                                                                             out=str(work / "plain"), photos=str(photos))],
        "stylize --precision fp32": [*cli, "--out", str(work / "fp32"), "--precision", "fp32"],
        "stylize --precision auto": [*cli, "--out", str(work / "auto"), "--precision", "auto"],
        "plain ONNX Runtime fp32": [sys.executable, "-c", PLAIN_ORT.format(root=str(ROOT), onnx=str(onnx_file),
                                                                          out=str(work / "ort"), photos=str(photos))],
        "stylize v2.onnx, onnxruntime": [*cli[:6], str(onnx_file), "-q", "--overwrite", "--out", str(work / "onnx-ort"),
                                          "--onnx-backend", "onnxruntime"],
        "stylize v2.onnx, auto": [*cli[:6], str(onnx_file), "-q", "--overwrite", "--out", str(work / "onnx")],
    }
    best = {k: min(timed(cmd) for _ in range(args.repeats)) for k, cmd in runs.items()}
    base = best["baseline: plain eager fp32"]
    print(f"{args.photos} photos of {args.size}x{args.size}, AnimeGANv2, whole processes, best of {args.repeats}; "
          f"native bf16: {native_cpu_bf16()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for k, t in best.items():
        print(f"  {k:<28} {t:7.2f} s  {base / t:5.2f}x the baseline")
    files = sorted(p.name for p in photos.glob("*.png"))
    for label, folder in (("auto", "auto"), ("v2.onnx on onnxruntime", "onnx-ort"), ("v2.onnx auto", "onnx")):
        diffs = [np.abs(read_image(work / folder / n).astype(int) - read_image(work / "fp32" / n)) for n in files]
        print(f"  {label} against fp32: mean {np.mean([d.mean() for d in diffs]):.2f} levels, max {max(d.max() for d in diffs)}")
    ort = best["plain ONNX Runtime fp32"]
    print(f"  against plain ONNX Runtime: auto {ort / best['stylize --precision auto']:.2f}x; fp32 (auto on a CPU without "
          f"native bf16) {ort / best['stylize --precision fp32']:.2f}x; stylize v2.onnx on onnxruntime "
          f"{ort / best['stylize v2.onnx, onnxruntime']:.2f}x, auto {ort / best['stylize v2.onnx, auto']:.2f}x")

    if args.video is not None:
        import av

        variants = {"--precision fp32": (weights, ["--precision", "fp32"]), "--precision auto": (weights, []),
                    "v2.onnx, onnxruntime": (onnx_file, ["--onnx-backend", "onnxruntime"]), "v2.onnx, auto": (onnx_file, [])}
        for k, (label, (w, extra)) in enumerate(variants.items()):
            out = work / f"video-{k}"
            t = timed([sys.executable, "-m", "animegan_cli", "stylize", str(args.video), "--weights", str(w), "-q",
                       "--overwrite", "--out", str(out), "--end", str(args.seconds), "--stabilize", "0", *extra])
            with av.open(str(out / args.video.name)) as c:
                v = c.streams.video[0]
                n = sum(1 for _ in c.decode(v))
                size = f"{v.codec_context.width}x{v.codec_context.height}"
            print(f"  video {size}, {n} frames, {label}: {t:.1f} s whole process, {n / t:.2f} frames/s")


if __name__ == "__main__":
    main()

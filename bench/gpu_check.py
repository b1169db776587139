"""The first thing to run on a GPU: every CUDA path of training and stylize, measured, in one go.

    python bench/gpu_check.py --out /tmp/gpu-check            # on a CUDA machine: about 5-8 minutes
    python bench/gpu_check.py --device cpu --out /tmp/gpu-check  # a tiny version of the same path (tests run it)

For AnimeGAN v1, v2, White-box and the Style2paints colorizer, a short real training run (`pipelines.training.loop.train`, data loading,
AMP, GradScalers, losses, checkpoints and all) at 256x256, batch 8, in fp32, bf16 (native GPUs only) and
fp16, with and without channels_last, and v2 once more with torch.compile. For each: images/s of a training
step (median over the steps after the first two), peak GPU memory, and the first step's loss terms against
the fp32 run (the same weights and data: only precision differs; no NaN/inf, within the tolerances below).
Then a 1080p clip with audio through `stylize` (decode, model, encode, audio copy) with v2 in fp16: frames/s
end to end and peak memory. Last, on CUDA, the known-answer style benchmark at GPU scale (`bench_style_learning.py`,
`--style-learning-steps`, 0 to leave it out): whether each family learns a computed cartoon look; and, when the
project's shared sample illustrations are beside the checkout, the colorizer reference benchmark
(`bench_colorize_reference.py`, `--colorize-steps`): whether a Style2paints run follows its reference.

Writes gpu_check.json and gpu_check.md (a table) into --out and prints the table. Every check that fails says
so in the `ok` column and in the JSON; the script exits 1 when any did.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

# First-step loss terms may differ from fp32 by this much (relative to the fp32 term, or absolutely for
# terms near 0): bf16 keeps 8 bits of mantissa, fp16 11; the loss math itself is fp32 (losses.fp32).
TOLERANCE = {"bf16": 0.05, "fp16": 0.02, "off": 0.0}
ABS_FLOOR = 1e-3


@dataclass
class Row:
    what: str
    model: str = ""
    amp: str = ""
    memory_format: str = ""
    compile: bool = False
    images_per_s: float | None = None
    frames_per_s: float | None = None
    peak_mem_mib: float | None = None
    max_rel_diff: float | None = None  # first-step loss terms against fp32
    ok: bool = True
    note: str = ""
    losses: dict[str, float] = field(default_factory=dict)


def _quiet():
    from pipelines.progress import Reporter

    return Reporter()


def build_dataset(root: Path, side: int) -> Path:
    """Photos and flat-shaded "anime" frames from scikit-image's sample photos (also as illustrations), and the smooth set."""
    import cv2
    from skimage import data as skdata

    from pipelines.data.importing import add_images
    from pipelines.data.smoothing import SmoothOptions, make_smooth
    from pipelines.data.cartoon import cartoonize
    from pipelines.fileio import write_image

    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
    for name in names:
        img = np.ascontiguousarray(getattr(skdata, name)()[:, :, :3])
        h, w = img.shape[:2]
        s = side * 1.25 / min(h, w)
        img = cv2.resize(img, (max(side, round(w * s)), max(side, round(h * s))), interpolation=cv2.INTER_AREA)
        write_image(root / "src" / "photo" / f"{name}.png", img)
        write_image(root / "src" / "style" / f"{name}.png", cartoonize(img, "warm"))
    ds = root / "dataset"
    add_images([root / "src" / "photo"], "photo", ds, _quiet())
    add_images([root / "src" / "style"], "style", ds, _quiet())
    add_images([root / "src" / "style"], "illustration", ds, _quiet())  # Style2paints draws its sketches per sample
    make_smooth(ds, SmoothOptions(format=".png", workers=1), _quiet())
    return ds


def train_once(ds: Path, out: Path, device: str, model: str, amp: str, memory_format: str, compile_: bool,
               size: int, batch: int, steps: int) -> Row:
    from pipelines.training.loop import resolve_config, train

    row = Row("train", model, amp, memory_format, compile_)
    cfg = resolve_config(overrides=dict(
        dataset=str(ds), out=str(out), model=model, device=device, amp=amp, memory_format=memory_format,
        compile=compile_, image_size=size, batch_size=batch, max_steps=steps, init_epochs=0, epochs=1000,
        vgg_weights="random", workers=2, log_every=1, eval_every=10**6, checkpoint_every=10**6, seed=0))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        train(cfg, _quiet())
    except Exception as exc:  # noqa: BLE001 - a failing configuration is a finding, not the end of the check
        row.ok, row.note = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return row
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_time_s" in r]
    timed = [r["images_per_s"] for r in rows[2:]] or [r["images_per_s"] for r in rows]
    row.images_per_s = statistics.median(timed)
    row.losses = {k: v for k, v in rows[0].items() if k.startswith("loss/")}
    if torch.cuda.is_available():
        row.peak_mem_mib = torch.cuda.max_memory_allocated() / 2**20
    bad = [k for r in rows for k, v in r.items() if k.startswith("loss/") and not math.isfinite(v)]
    if bad:
        row.ok, row.note = False, f"non-finite {bad[0]}"
    return row


def compare(row: Row, reference: Row) -> None:
    """First-step loss terms of `row` against the fp32 run of the same model."""
    if not row.losses or not reference.losses:
        return
    worst = 0.0
    for k, ref in reference.losses.items():
        got = row.losses.get(k)
        if got is None:
            continue
        worst = max(worst, abs(got - ref) / max(abs(ref), ABS_FLOOR))
    row.max_rel_diff = worst
    if worst > TOLERANCE.get(row.amp, 0.0) + 1e-6:
        row.ok = False
        row.note = (row.note + "; " if row.note else "") + f"first-step losses {worst:.1%} off fp32 (tolerance {TOLERANCE[row.amp]:.0%})"


def make_clip(path: Path, size: tuple[int, int], seconds: float, fps: int = 30) -> Path:
    """A moving test pattern with a 440 Hz AAC track, H.264."""
    import av

    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        yy, xx = np.mgrid[0:h, 0:w]
        for k in range(round(seconds * fps)):
            img = np.stack([(xx // 4 + k * 3) % 256, (yy // 4) % 256, ((xx + yy) // 8 + k) % 256], -1).astype(np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        sr, chunk = 48000, 1024
        t = np.arange(round(seconds * sr)) / sr
        pcm = np.repeat((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], 2, axis=0)
        for i in range(0, pcm.shape[1], chunk):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + chunk]), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts = sr, i
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def video_check(work: Path, device: str, size: tuple[int, int], seconds: float, precision: str) -> Row:
    from pipelines.inference.stylize import StylizeOptions, stylize
    from pipelines.models.animegan import GeneratorV2

    row = Row("video", "animeganv2", precision, "auto")
    torch.manual_seed(0)
    weights = work / "v2.pt"
    torch.save(GeneratorV2().state_dict(), weights)
    clip = make_clip(work / f"clip-{size[1]}p.mp4", size, seconds)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        summary = stylize([clip], StylizeOptions(weights=weights, out_dir=work / "stylized", device=device,
                                                 precision=precision, batch_size=8, preset="veryfast"), _quiet())
    except Exception as exc:  # noqa: BLE001
        row.ok, row.note = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return row
    elapsed = time.perf_counter() - t0
    import av

    with av.open(str(work / "stylized" / clip.name)) as c:
        frames = sum(1 for _ in c.decode(c.streams.video[0]))
        has_audio = bool(c.streams.audio)
    row.frames_per_s = frames / elapsed
    row.peak_mem_mib = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    row.note = f"{frames} frames {size[0]}x{size[1]}, audio {'kept' if has_audio else 'LOST'}, {summary.done} file"
    row.ok = has_audio and frames == round(seconds * 30)
    return row


def table(rows: list[Row]) -> str:
    lines = ["| check | model | amp | layout | compile | images/s | frames/s | peak MiB | max diff vs fp32 | ok | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for r in rows:
        lines.append(f"| {r.what} | {r.model} | {r.amp} | {r.memory_format} | {'yes' if r.compile else 'no'} | "
                     f"{f(r.images_per_s, '.1f')} | {f(r.frames_per_s, '.1f')} | {f(r.peak_mem_mib, '.0f')} | "
                     f"{f(r.max_rel_diff, '.2%')} | {'yes' if r.ok else 'NO'} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("gpu-check"))
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile run")
    ap.add_argument("--style-learning-steps", type=int, default=3000,
                    help="on CUDA, finish with the known-answer style benchmark (bench_style_learning.py: every "
                         "family, looks warm and pastel, 128 px crops, batch 8) for this many steps; 0 leaves it out")
    ap.add_argument("--colorize-steps", type=int, default=2000,
                    help="on CUDA, then the colorizer reference benchmark (bench_colorize_reference.py, crop and original "
                         "references, batch 8) for this many steps, when ../shared/data/style_hayao is here; 0 leaves it out")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    # The tiny CPU version walks the same code with toy sizes so the test suite keeps this script working.
    size, batch, steps = (256, 8, 6) if cuda else (32, 2, 3)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_start = time.perf_counter()
    ds = build_dataset(work / "data", size)

    # bf16 only where the hardware computes it: emulated, it is many times slower and says nothing about speed
    # (the CPU form's bf16 rows took 200 of its 270 s on an AVX2 EPYC).
    if cuda:
        native_bf16 = torch.cuda.get_device_capability() >= (8, 0)
    else:
        from pipelines.models.cpu_speed import native_cpu_bf16

        native_bf16 = native_cpu_bf16()
    amps = ["off", "bf16", "fp16"] if cuda else ["off", "bf16"]
    if not native_bf16:
        amps.remove("bf16")
    layouts = ["channels_last", "contiguous"] if cuda else ["contiguous"]
    rows: list[Row] = []
    for model in ("animegan", "animeganv2", "whitebox", "style2paints"):
        reference = None
        for amp in amps:
            for layout in layouts if amp != "off" else layouts[:1]:
                run = work / "runs" / f"{model}-{amp}-{layout}"
                row = train_once(ds, run, device, model, amp, layout, False, size, batch, steps)
                if amp == "off":
                    reference = row
                elif reference is not None:
                    compare(row, reference)
                rows.append(row)
                print(f"{model:<11} {amp:<4} {layout:<13} {row.images_per_s or 0:8.1f} img/s  ok={row.ok} {row.note}", flush=True)
    if cuda and not args.skip_compile:
        best = "bf16" if native_bf16 else "fp16"
        row = train_once(ds, work / "runs" / "v2-compile", device, "animeganv2", best, "channels_last", True, size, batch, steps + 4)
        rows.append(row)
        print(f"animeganv2 {best} compile {row.images_per_s or 0:8.1f} img/s  ok={row.ok} {row.note}", flush=True)
    rows.append(video_check(work, device, (1920, 1080) if cuda else (64, 48), 4.0 if cuda else 0.5,
                            "fp16" if cuda else "fp32"))

    learning = ""
    if cuda and args.style_learning_steps:
        import subprocess

        # Its own process: its figures are what the CPU runs in docs/benchmarks.md are compared with.
        cmd = [sys.executable, str(Path(__file__).with_name("bench_style_learning.py")), "--device", "cuda",
               "--image-size", "128", "--batch-size", "8", "--short-side", "256", "--looks", "warm", "pastel",
               "--steps", str(args.style_learning_steps), "--out", str(work / "style-learning")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        learning = done.stdout[-6000:] + (f"\n(exit {done.returncode}: {done.stderr[-2000:]})" if done.returncode else "")
        print(learning, flush=True)
        rows.append(Row("known-answer style benchmark", ok=done.returncode == 0, note=" ".join(cmd[2:])))
    illustrations = Path(__file__).resolve().parents[2] / "shared" / "data" / "style_hayao"
    if cuda and args.colorize_steps and illustrations.is_dir():
        import subprocess

        cmd = [sys.executable, str(Path(__file__).with_name("bench_colorize_reference.py")), "--device", "cuda",
               "--illustrations", str(illustrations), "--batch-size", "8", "--steps", str(args.colorize_steps),
               "--references", "crop", "original", "--out", str(work / "colorize-reference")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        said = done.stdout[-3000:] + (f"\n(exit {done.returncode}: {done.stderr[-2000:]})" if done.returncode else "")
        learning += ("\n" if learning else "") + said
        print(said, flush=True)
        rows.append(Row("colorizer reference benchmark", ok=done.returncode == 0, note=" ".join(cmd[2:])))

    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "seconds": round(time.perf_counter() - t_start, 1),
        "settings": {"image_size": size, "batch": batch, "steps": steps, "tolerance": TOLERANCE},
        "rows": [asdict(r) for r in rows],
        "ok": all(r.ok for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = (f"gpu_check on {doc['device']}, torch {doc['torch']} (CUDA {doc['cuda']}), {doc['date']}, "
          f"{size}x{size} batch {batch}, {doc['seconds']} s\n\n" + table(rows) + "\n"
          + (f"\nKnown-answer benchmarks (style learning; colorizer reference):\n\n```\n{learning}\n```\n" if learning else ""))
    (args.out / "gpu_check.md").write_text(md)
    print(md)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # the machine is lent for minutes: leave the reason in the output
        traceback.print_exc()
        sys.exit(2)

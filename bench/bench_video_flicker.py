"""Video flicker: how much the stabilizer removes, what it costs, and whether frames keep their look.

    python bench/bench_video_flicker.py [--weights RUN_OR_FILE ...] [--video clip.mp4] [--seconds 9.5]
        [--long-seconds 60] [--long-side 480] [--strength 0.7] [--chroma 420 444] [--out DIR]

Clips (made under --out/clips from --video, default ../shared/data/video/ohanami.mp4):
- `real`: the video's first --seconds, at its size (540x960 for the shared clip: 540p);
- `cut`: 2 s of the video, then a hard cut to 2 s of a slow pan over a scikit-image photo;
- `long`: the video played forwards and backwards to --long-seconds, long side --long-side (checks that
  nothing accumulates into blur or drift over a minute).

Generators: each --weights; without any, a White-box run with the released preset (the reference's
texture-heavy recipe, whose per-frame flicker users report) is trained on the known-answer `warm` set for
--train-steps and used.

Per clip and generator, in one process and on the same frames:
- warping error (pipelines.evaluation.temporal, DIS flow) of the input (the floor), of the frames stylized
  one by one as images (`per-frame`), and of `animegan stylize` output videos with --stabilize 0 and with
  the stabilizer, decoded back from their files (so the encoding's own flicker counts);
- removed = (per-frame - stabilized) / (per-frame - input): the share of the added flicker removed;
- each stabilized frame against the same frame stylized as an image: blurred CIEDE2000 (max over frames)
  and edge correlation (min over frames); for `cut`, the first frame after the cut; for `long`, the same
  over the last tenth of the clip against the first tenth;
- whole-process seconds of `stylize` with and without the stabilizer (time ratio).
Targets (issue 20): removed >= 0.60, CIEDE2000 <= 3, edge correlation >= 0.85, cut frame CIEDE2000 <= 2.5,
time ratio <= 1.25. Writes results.json and, per generator, `slices.png`: one row of pixels of the real
clip over time (time runs down) for input / per-frame / stabilized, where flicker shows as streaks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.evaluation import metrics as M  # noqa: E402
from pipelines.evaluation.temporal import video_frames, warping_error  # noqa: E402
from pipelines.fileio import write_image  # noqa: E402
from pipelines.inference.engine import Engine, resolve_precision  # noqa: E402
from pipelines.inference.stylize import StylizeOptions, stylize  # noqa: E402
from pipelines.models.flow import DisFlow  # noqa: E402
from pipelines.models.weights import load_generator  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402

SHARED_VIDEO = ROOT.parent / "shared" / "data" / "video" / "ohanami.mp4"
CUT_AFTER = 2.0  # seconds of the video before the cut


def write_clip(path: Path, frames, fps: int = 30) -> Path:
    """Frames (`[H, W, 3] uint8 RGB`, even sides) -> H.264 at high quality (the clip is a source, not a result)."""
    with av.open(str(path), "w") as c:
        s = None
        for img in frames:
            if s is None:
                s = c.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "fast"})
                s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_clips(video: Path, seconds: float, long_seconds: float, long_side: int, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    src = list(video_frames(video))
    fps = 30
    h, w = src[0].shape[:2]
    clips = {"real": write_clip(out / "real.mp4", src[: round(seconds * fps)])}
    from skimage import data as skdata

    photo = skdata.astronaut()
    scale = 1.35 * max(h / photo.shape[0], w / photo.shape[1])  # room to pan
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pan = [photo[int(k * 0.6): int(k * 0.6) + h, int(k * 1.7): int(k * 1.7) + w] for k in range(round(2 * fps))]
    clips["cut"] = write_clip(out / "cut.mp4", src[: round(CUT_AFTER * fps)] + pan)
    if long_seconds > 0:
        s = long_side / max(h, w)
        size = (round(w * s) // 2 * 2, round(h * s) // 2 * 2)
        small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in src]
        loop = small + small[-2:0:-1]
        n = round(long_seconds * fps)
        clips["long"] = write_clip(out / "long.mp4", (loop[k % len(loop)] for k in range(n)))
    return clips


def train_default(out: Path, steps: int) -> Path:
    from pipelines.known_answer import build_set, skimage_quarters
    from pipelines.training.loop import TrainRequest, run_train

    photos, held = skimage_quarters()
    kas = build_set(photos, "warm", out / "set", Reporter(), short_side=128, held_photos=held)
    run = out / "run"
    run_train(TrainRequest(overrides=dict(dataset=str(kas.dataset), out=str(run), model="whitebox", preset="released",
                                          image_size=64, batch_size=4, vgg_weights="random", workers=0,
                                          max_steps=steps, checkpoint_every=10_000, eval_every=10_000)), Reporter())
    return run


def per_frame(weights: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame stylized as `stylize` stylizes an image (same precision choice, same engine)."""
    device = torch.device("cpu")
    engine = Engine(load_generator(weights, "cpu").model, device, resolve_precision("auto", device))
    engine.check_precision(frames[0])
    return [engine.stylize_image(f) for f in frames]


def timed_stylize(clip: Path, weights: Path, out: Path, **kw) -> tuple[float, list[np.ndarray]]:
    t = time.perf_counter()
    stylize([clip], StylizeOptions(weights=weights, out_dir=out, overwrite=True, **kw), Reporter())
    return time.perf_counter() - t, list(video_frames(out / clip.name))


def look_figures(stab: list[np.ndarray], ref: list[np.ndarray]) -> dict[str, float]:
    de = [M.color_shift(r, s) for r, s in zip(ref, stab)]
    ec = [M.edge_corr(r, s) for r, s in zip(ref, stab)]
    return {"dE_mean": float(np.mean(de)), "dE_max": float(np.max(de)), "edge_mean": float(np.mean(ec)),
            "edge_min": float(np.min(ec))}


def slices(rows: list[tuple[str, list[np.ndarray]]]) -> np.ndarray:
    """One image row (the middle one) of each frame, stacked over time, side by side per sequence."""
    from pipelines.known_answer import label_strip

    cols = []
    for name, frames in rows:
        y = frames[0].shape[0] // 2
        img = np.stack([f[y] for f in frames])
        cols.append(np.concatenate([label_strip([name], img.shape[1]), img]))
    gap = np.full((cols[0].shape[0], 8, 3), 255, np.uint8)
    return np.concatenate(sum(([c, gap] for c in cols), [])[:-1], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, nargs="*", default=[])
    ap.add_argument("--video", type=Path, default=SHARED_VIDEO)
    ap.add_argument("--seconds", type=float, default=9.5)
    ap.add_argument("--long-seconds", type=float, default=60.0, help="0 skips the long clip")
    ap.add_argument("--long-side", type=int, default=480)
    ap.add_argument("--strength", type=float, default=None, help="default: stylize's")
    ap.add_argument("--chroma", nargs="+", default=["420"], choices=["420", "444"])
    ap.add_argument("--train-steps", type=int, default=800)
    ap.add_argument("--per-frame-only", action="store_true",
                    help="only the generators' own flicker (frames stylized one by one), to compare generators "
                         "(e.g. trained with and without --temporal-weight)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-video-flicker"))
    args = ap.parse_args()
    if not args.video.is_file():
        sys.exit(f"{args.video}: no such video (give --video)")
    shutil.rmtree(args.out / "clips", ignore_errors=True)
    clips = make_clips(args.video, args.seconds, args.long_seconds, args.long_side, args.out / "clips")
    weights = args.weights or [train_default(args.out / "generator", args.train_steps)]
    flow = DisFlow()
    stab_kw = {} if args.strength is None else {"stabilize": args.strength}
    results: dict[str, dict] = {}
    for wi, wpath in enumerate(weights):
        res = results.setdefault(str(wpath), {})
        for name, clip in clips.items():
            inputs = list(video_frames(clip))
            pf = per_frame(wpath, inputs)
            base = warping_error(inputs, pf, flow)
            r: dict[str, object] = {"frames": len(inputs), "size": f"{inputs[0].shape[1]}x{inputs[0].shape[0]}",
                                    "input": base.input, "per_frame": base.output}
            if args.per_frame_only:
                res[name] = r
                print(json.dumps({"weights": str(wpath), "clip": name, **r}, default=float), flush=True)
                continue
            folder = args.out / f"g{wi}" / name
            t_pf, pf_video = timed_stylize(clip, wpath, folder / "pf", stabilize=0.0)
            r["per_frame_video"] = warping_error(inputs, pf_video, flow).output
            r["seconds_per_frame_video"] = t_pf
            for chroma in args.chroma:
                t_st, st_video = timed_stylize(clip, wpath, folder / f"stab{chroma}", chroma=chroma, **stab_kw)
                e = warping_error(inputs, st_video, flow).output
                fig = {"warp": e, "removed": (base.output - e) / max(1e-12, base.output - base.input),
                       "seconds": t_st, "time_ratio": t_st / t_pf, **look_figures(st_video, pf)}
                if name == "cut":
                    k = round(CUT_AFTER * 30)
                    fig["cut_dE"] = M.color_shift(pf[k], st_video[k])
                    fig["cut_dE_encoding_only"] = M.color_shift(pf[k], pf_video[k])
                if name == "long":
                    tenth = max(1, len(inputs) // 10)
                    fig["first_tenth"] = look_figures(st_video[:tenth], pf[:tenth])
                    fig["last_tenth"] = look_figures(st_video[-tenth:], pf[-tenth:])
                r[f"stabilized_{chroma}"] = fig
                if name == "real":
                    write_image(args.out / f"g{wi}-slices-{chroma}.png",
                                slices([("input", inputs), ("per-frame", pf), ("stabilized", st_video)]))
            res[name] = r
            print(json.dumps({"weights": str(wpath), "clip": name, **r}, default=float), flush=True)

    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    if args.per_frame_only:
        print(f"\n{'generator':<10}{'clip':<6}{'input':>10}{'per-frame':>11}{'added':>10}")
        for wi, res in enumerate(results.values()):
            for name, r in res.items():
                print(f"{'g%d' % wi:<10}{name:<6}{r['input']:>10.6f}{r['per_frame']:>11.6f}{r['per_frame'] - r['input']:>10.6f}")
        print(f"\ngenerators: {', '.join(f'g{i} = {w}' for i, w in enumerate(results))}")
        return
    print()
    print(f"{'generator':<12}{'clip':<6}{'frames':>7}{'input':>10}{'per-frame':>10}{'pf video':>10}{'stab':>10}"
          f"{'removed':>8}{'dE max':>7}{'edge min':>9}{'time x':>7}{'cut dE':>7}")
    for wi, (wpath, res) in enumerate(results.items()):
        for name, r in res.items():
            for chroma in args.chroma:
                f = r[f"stabilized_{chroma}"]
                print(f"{'g%d %s' % (wi, chroma):<12}{name:<6}{r['frames']:>7}{r['input']:>10.6f}{r['per_frame']:>10.6f}"
                      f"{r['per_frame_video']:>10.6f}{f['warp']:>10.6f}{f['removed']:>8.2f}{f['dE_max']:>7.2f}"
                      f"{f['edge_min']:>9.3f}{f['time_ratio']:>7.2f}{f.get('cut_dE', float('nan')):>7.2f}")
    print(f"\ngenerators: {', '.join(f'g{i} = {w}' for i, w in enumerate(results))}")
    print(f"targets: removed >= 0.60, dE max <= 3, edge min >= 0.85, time x <= 1.25, cut dE <= 2.5; wrote {args.out}")


if __name__ == "__main__":
    main()

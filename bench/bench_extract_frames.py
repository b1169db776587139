"""Benchmark: `extract-frames --every 1` against merely decoding the same span with PyAV.

    python bench/bench_extract_frames.py [VIDEO] [--repeat N]

The baseline decodes every frame of the film (threaded, no colour conversion), which extract-frames
cannot avoid either; the ratio shows what sampling, filtering, JPEG encoding and manifest commits
add on top. Target: ratio <= 1.3. Best of N runs for both, measured in the same process.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.data.frames import ExtractOptions, extract_frames  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "ohanami.mp4"


def decode_only(path: Path) -> int:
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n


def extract(path: Path) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        summary = extract_frames([path], root / "ds", ExtractOptions(every=1.0))
        return summary.kept
    finally:
        shutil.rmtree(root, ignore_errors=True)


def best_of(fn, path: Path, repeat: int) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(path)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    decode_only(args.video)  # warm the page cache and codec init for both sides
    t_dec, frames = best_of(decode_only, args.video, args.repeat)
    t_ext, kept = best_of(extract, args.video, args.repeat)
    print(f"video: {args.video} ({frames} frames)")
    print(f"decode only (PyAV, threaded): {t_dec:.3f} s")
    print(f"extract-frames --every 1:     {t_ext:.3f} s  ({kept} frames kept)")
    print(f"ratio: {t_ext / t_dec:.2f}x (target <= 1.30)")


if __name__ == "__main__":
    main()

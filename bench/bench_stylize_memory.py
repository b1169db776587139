"""Peak memory of `animegan stylize` against its budget (`--max-memory`, `--tile`), each in its own process.

    python bench/bench_stylize_memory.py [--side 1600] [--weights RUN_OR_FILE]

A photo from scikit-image is upscaled to SIDE x 3/4 SIDE and stylized with AnimeGANv2 (random weights unless
--weights is given) under several budgets. Printed per run: peak RSS (ru_maxrss of the child process), the
budget, and the same for a 64x48 image: the runtime and the model alone, which no budget covers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_gib(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in GiB, seconds) of `cmd` run as a child process (waits for it)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN would be cumulative)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"failed ({child.returncode}): {' '.join(cmd)}")
    return usage.ru_maxrss / 2**20, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=1600)
    ap.add_argument("--weights", type=Path)
    args = ap.parse_args()
    import cv2
    import torch
    from skimage import data as skdata

    from pipelines.fileio import write_image
    from pipelines.models.animegan import GeneratorV2

    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    weights = args.weights
    if weights is None:
        torch.manual_seed(0)
        weights = tmp / "v2.pt"
        torch.save(GeneratorV2().state_dict(), weights)
    w, h = args.side, args.side * 3 // 4
    write_image(tmp / "big.png", cv2.resize(skdata.chelsea(), (w, h), interpolation=cv2.INTER_CUBIC))
    write_image(tmp / "tiny.png", cv2.resize(skdata.chelsea(), (64, 48), interpolation=cv2.INTER_AREA))
    base = [sys.executable, "-m", "animegan_cli", "stylize", "--weights", str(weights), "--out", str(tmp / "out"),
            "--overwrite", "--device", "cpu"]
    runs = [("tiny image (runtime + model)", ["tiny.png"], None), ("--max-memory 0.5", ["big.png", "--max-memory", "0.5"], 0.5),
            ("--tile 256", ["big.png", "--tile", "256"], None), ("--max-memory 1", ["big.png", "--max-memory", "1"], 1.0),
            ("--tile 512", ["big.png", "--tile", "512"], None), ("--max-memory 2", ["big.png", "--max-memory", "2"], 2.0),
            ("default budget", ["big.png"], None)]
    print(f"{w}x{h} photo, AnimeGANv2 on CPU")
    for name, extra, budget in runs:
        rss, secs = peak_rss_gib(base + [str(tmp / extra[0]), *extra[1:]])
        print(f"{name:<30} peak RSS {rss:5.2f} GiB" + (f"  (budget {budget:g} GiB + runtime)" if budget else "")
              + f"  {secs:5.1f} s")


if __name__ == "__main__":
    main()

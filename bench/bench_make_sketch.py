"""make-sketch against reading and writing the same images, measured in the same run.

    python bench/bench_make_sketch.py [--style-dir DIR] [--workers N] [--repeats 3]

Images: DIR (e.g. ../shared/data/style_hayao), or scikit-image's colour photos flat-shaded. Prints the XDoG
time per image, and `make-sketch` end to end (decode, XDoG, PNG encode, atomic write, records) against
decode + PNG encode + write of the same images (the floor any derived set pays): the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.data.derived import DeriveOptions  # noqa: E402
from pipelines.data.importing import add_images  # noqa: E402
from pipelines.data.sketches import make_sketch, sketch  # noqa: E402
from pipelines.fileio import decode_image, is_image_path, read_image, write_image  # noqa: E402


def sample_images(folder: Path | None, tmp: Path) -> Path:
    if folder is not None:
        return folder
    from skimage import data

    from pipelines.data.cartoon import cartoonize

    out = tmp / "art"
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        write_image(out / f"{name}.png", cartoonize(np.ascontiguousarray(getattr(data, name)()[:, :, :3]), "warm"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--style-dir", type=Path)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sketch-"))
    src = sample_images(args.style_dir, tmp)
    files = sorted(p for p in src.iterdir() if is_image_path(p))
    imgs = [read_image(p) for p in files]
    t0 = time.perf_counter()
    for img in imgs:
        sketch(img, {})
    per = (time.perf_counter() - t0) / len(imgs)
    print(f"{len(imgs)} images (e.g. {imgs[0].shape[1]}x{imgs[0].shape[0]}): XDoG {per * 1000:.1f} ms per image")

    best_make = best_rw = float("inf")
    for _ in range(args.repeats):
        ds = tmp / "ds"
        shutil.rmtree(ds, ignore_errors=True)
        add_images([src], "illustration", ds)
        t0 = time.perf_counter()
        make_sketch(ds, DeriveOptions(workers=args.workers, format=".png"))
        best_make = min(best_make, time.perf_counter() - t0)
        out = tmp / "rw"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        for p in sorted((ds / "illustration").iterdir()):
            write_image(out / (p.stem + ".png"), decode_image(p.read_bytes(), p))
        best_rw = min(best_rw, time.perf_counter() - t0)
    print(f"make-sketch end to end {best_make:.2f} s, read+decode+PNG write {best_rw:.2f} s: ratio {best_make / best_rw:.2f} "
          f"(best of {args.repeats}, {args.workers} worker{'s' if args.workers != 1 else ''})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

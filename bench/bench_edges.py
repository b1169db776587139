"""How far a stylized photo's edges are from what the generator draws there with real context around them.

    python bench/bench_edges.py RUN_OR_WEIGHTS [...] [--photos DIR] [--margins 0 4 8 16]

For each photo (scaled to short side 320): a 256x256 crop is stylized on its own, and again as the middle of a
crop 32 px larger on every side (the real context); the mean absolute difference over the outermost 3 px of each
side, in levels of 255, says how much the image's own edge changes the output there (the tinted lines along the
top and left edges users saw). Repeated with each reflect margin (`registry.Architecture.edge_pad`), and the
relative cost of the margin at 512x512. This decided `registry.EDGE_PAD`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.fileio import iter_files, is_image_path, read_image  # noqa: E402
from pipelines.models.weights import load_generator  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"
CONTEXT, SIDE, EDGE = 32, 256, 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--margins", type=int, nargs="+", default=[0, 4, 8, 16])
    args = ap.parse_args()
    crops = []
    for src, _ in sorted(iter_files([args.photos], is_image_path))[: args.count]:
        img = read_image(src)
        s = 320 / min(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        crops.append(img[:SIDE + 2 * CONTEXT, :SIDE + 2 * CONTEXT])  # starts at 0: the stride phase is the same
    print(f"{len(crops)} photos from {args.photos}, {SIDE}x{SIDE} crops, outermost {EDGE} px, levels of 255")
    print(f"{'weights':<40}{'margin':>7}{'top':>6}{'left':>6}{'bottom':>7}{'right':>6}{'inside':>7}{'cost':>6}")
    for weights in args.weights:
        model = load_generator(weights).model.eval()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(x).mul(127.5)

        truth = []
        for img in crops:
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, H, W] in [-1, 1]
            model.edge_pad = 0
            truth.append((x[..., CONTEXT:-CONTEXT, CONTEXT:-CONTEXT], run(x)[..., CONTEXT:-CONTEXT, CONTEXT:-CONTEXT]))
        for margin in args.margins:
            model.edge_pad = margin
            sides: dict[str, list[float]] = {k: [] for k in ("top", "left", "bottom", "right", "inside")}
            for x, want in truth:
                d = (run(x) - want).abs().mean(1)[0].numpy()  # [SIDE, SIDE]
                sides["top"].append(d[:EDGE].mean())
                sides["left"].append(d[:, :EDGE].mean())
                sides["bottom"].append(d[-EDGE:].mean())
                sides["right"].append(d[:, -EDGE:].mean())
                sides["inside"].append(d[16:-16, 16:-16].mean())
            cost = ((512 + 2 * margin) / 512) ** 2
            print(f"{str(weights)[-40:]:<40}{margin:>7}" + "".join(f"{np.mean(v):>{6 if k != 'bottom' else 7}.1f}"
                  for k, v in sides.items()) + f"{cost:>6.2f}", flush=True)


if __name__ == "__main__":
    main()

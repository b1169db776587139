"""CPU time of one GAN-phase training step (AnimeGANv2, batch 2, 256x256, random VGG): the trainer vs a plain step.

The trainer is run for real (`pipelines.training.loop.train`, data loading included) and its `step_time_s`
rows from metrics.jsonl are read. The baseline is a plain fp32 step of the same networks and losses
the way public trainers write it: NCHW, G(photo) computed again for the generator update, four
separate discriminator passes, VGG run separately for the content and the style term, and the
discriminator's weight gradients computed during the generator update. The baseline runs in a
child process of its own, so that the trainer's process-wide allocator setting
(`pipelines.models.cpu_speed.tune_allocator`) does not reach it; the first step of each is a warm-up and
not counted. `--kernels plain` runs the trainer with `--cpu-kernels plain` (allocator setting only).

    python bench/bench_train_step.py [--steps 3] [--threads 2] [--kernels fast|plain]

On a shared machine the figures move with the load; compare the ratio, and rerun when in doubt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.training import losses as L  # noqa: E402
from pipelines.fileio import encode_image, read_image  # noqa: E402
from pipelines.data.manifest import Dataset, DerivedSource, ImportedSource, make_record  # noqa: E402
from pipelines.models.animegan import Discriminator  # noqa: E402
from pipelines.models.registry import build_generator  # noqa: E402
from pipelines.models.vgg import build_vgg  # noqa: E402
from pipelines.progress import Reporter  # noqa: E402
from pipelines.training.loop import resolve_config, train  # noqa: E402

SHARED = Path("/work/shared/data")
SIZE, BATCH = 256, 2


def _images(folder: Path, n: int, fallback: str) -> list[np.ndarray]:
    files = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    if files:
        return [read_image(f) for f in files]
    from skimage import data as skdata  # no shared data: one scikit-image photo, shifted

    img = getattr(skdata, fallback)()[:, :, :3]
    return [np.roll(img, 17 * i, axis=1) for i in range(n)]


def build_dataset(root: Path, n: int = 8) -> None:
    ds = Dataset.open(root, create=True)
    with ds.transaction() as m:
        for set_name, images in (("photo", _images(SHARED / "photos", n, "astronaut")),
                                 ("style", _images(SHARED / "style_hayao", n, "coffee"))):
            for i, img in enumerate(images):
                rel = f"{set_name}/{i:03d}.png"
                data = encode_image(img, ".png")
                (root / set_name).mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
                m.put(set_name, make_record(rel, data, img.shape[1], img.shape[0], ImportedSource(original=rel)))
                if set_name == "style":
                    sm = cv2.GaussianBlur(img, (5, 5), 0)
                    srel = f"smooth/{i:03d}.png"
                    sdata = encode_image(sm, ".png")
                    (root / "smooth").mkdir(parents=True, exist_ok=True)
                    (root / srel).write_bytes(sdata)
                    m.put("smooth", make_record(srel, sdata, sm.shape[1], sm.shape[0], DerivedSource(
                        operation="smooth", source=rel, source_sha256=m.find("style", rel).sha256)))


def trainer_step_times(dataset: Path, run: Path, steps: int, kernels: str) -> list[float]:
    cfg = resolve_config(overrides={
        "dataset": str(dataset), "out": str(run), "model": "animeganv2", "vgg_weights": "random",
        "image_size": SIZE, "batch_size": BATCH, "init_epochs": 0, "epochs": 100, "max_steps": steps + 1,
        "log_every": 1, "workers": 1, "device": "cpu", "amp": "off", "checkpoint_every": 10_000,
        "cpu_kernels": kernels,
    })
    train(cfg, Reporter())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time_s"] for r in rows[1:]]


def baseline_step_times(steps: int) -> list[float]:
    torch.manual_seed(0)
    G, D, vgg = build_generator("animegan_v2"), Discriminator(norm="layer"), build_vgg("random")
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-5, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=4e-5, betas=(0.5, 0.999))
    w = resolve_config(overrides={"out": "x"}).weights
    g = torch.Generator().manual_seed(0)
    photo, style, smooth = (torch.rand(BATCH, 3, SIZE, SIZE, generator=g) * 2 - 1 for _ in range(3))
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        # discriminator update
        fake = G(photo).detach()
        d_loss = w["d_adv"] * (w["d_real"] * L.d_real_loss(D(style)) + w["d_fake"] * L.d_fake_loss(D(fake))
                               + w["d_gray"] * L.d_fake_loss(D(L.to_gray3(style)))
                               + w["d_smooth"] * L.d_fake_loss(D(L.to_gray3(smooth))))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # generator update
        fake = G(photo)
        g_loss = (w["adv"] * L.generator_adv_loss(D(fake))
                  + w["content"] * L.content_loss(vgg(photo), vgg(fake))
                  + w["style"] * L.style_loss(vgg(L.to_gray3(style)), vgg(fake))
                  + w["color"] * L.color_loss(photo, fake) + w["tv"] * L.tv_loss(fake))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        times.append(time.perf_counter() - t)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps of each (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--kernels", choices=("fast", "plain"), default="fast", help="the trainer's --cpu-kernels")
    ap.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.baseline_child:
        print(json.dumps(baseline_step_times(args.steps)))
        return
    res = subprocess.run([sys.executable, __file__, "--baseline-child", "--steps", str(args.steps),
                          "--threads", str(args.threads)], capture_output=True, text=True, check=True)
    base = json.loads(res.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(Path(tmp) / "ds")
        ours = trainer_step_times(Path(tmp) / "ds", Path(tmp) / "run", args.steps, args.kernels)
    m_ours, m_base = statistics.median(ours), statistics.median(base)
    print(f"threads {args.threads}, batch {BATCH}, {SIZE}x{SIZE}, GAN phase, AnimeGANv2, random VGG, fp32 CPU, "
          f"trainer --cpu-kernels {args.kernels}")
    print(f"trainer step : median {m_ours:.2f} s  ({', '.join(f'{x:.2f}' for x in ours)})")
    print(f"plain step   : median {m_base:.2f} s  ({', '.join(f'{x:.2f}' for x in base)})")
    print(f"ratio plain/trainer: {m_base / m_ours:.2f}x")


if __name__ == "__main__":
    main()

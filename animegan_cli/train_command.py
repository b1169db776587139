"""`animegan train` (see docs/training.md). Options only; the work is `pipelines.training.loop.run_train`."""

from __future__ import annotations

import json
import shlex
import signal
from enum import Enum
from pathlib import Path
from typing import Any, Optional, get_args

import typer
from pipelines.training.config import TrainConfig

from .console import RichReporter, graceful_stop, out_console, run
from .options import Device, pick_dataset


class Model(str, Enum):
    animegan = "animegan"
    animeganv2 = "animeganv2"
    whitebox = "whitebox"
    style2paints = "style2paints"


def _choices(name: str, field: str) -> type[Enum]:
    """The values `TrainConfig.<field>` (a Literal) accepts, as the str Enum Typer shows and checks: the
    command line's choices and the config file's are then one list."""
    annotation = TrainConfig.model_fields[field].annotation
    # `Literal[...] | None` (a family-dependent default): the Literal's values
    args = [a for a in get_args(annotation) if a is not type(None)]
    values = [v for a in args for v in (get_args(a) or (a,))]
    return Enum(name, {v: v for v in values}, type=str)


Style = _choices("Style", "style")
Preset = _choices("Preset", "preset")
Superpixels = _choices("Superpixels", "superpixels")
Reference = _choices("Reference", "reference")
TargetNorm = _choices("TargetNorm", "target_norm")
GanLoss = _choices("GanLoss", "gan_loss")
Amp = _choices("Amp", "amp")
MemoryFormat = _choices("MemoryFormat", "memory_format")
CpuKernels = _choices("CpuKernels", "cpu_kernels")
ColorTarget = _choices("ColorTarget", "color_target")
Augment = _choices("Augment", "augment")


# Every option defaults to None here so that only what the user typed overrides --config (and, on
# --resume, the run's own config); `show_default` shows the value that applies when nothing is given.
_W = "Loss weight of the {} term (default: the --style preset for v2, the paper's for v1)."


def train(
    dataset_arg: Optional[Path] = typer.Argument(None, metavar="DATASET", help="Dataset folder with photo, style and smooth sets. [default: dataset]", show_default=False),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Dataset folder; same as the argument.", show_default=False),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with options (keys as below, '-' or '_'; loss weights in a [weights] table); options given here override it."),
    model: Optional[Model] = typer.Option(None, "--model", help="AnimeGAN v1 or v2, White-box Cartoonization (docs/whitebox.md) or the Style2paints V1 colorizer (docs/colorize.md). [default: animeganv2]", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (config, metrics, samples, checkpoints, generator). [default: runs/<timestamp>-<model>[-<style>] (the style for AnimeGAN)]", show_default=False),
    style: Optional[Style] = typer.Option(None, "--style", help="AnimeGANv2 loss-weight preset (v1 always uses the paper's weights). [default: hayao]", show_default=False),
    preset: Optional[Preset] = typer.Option(None, "--preset", help="White-box loss weights: the released code's plus a colour anchor at the style's palette (anchored), the released code's, or the paper's. [default: anchored]", show_default=False),
    cartoon_set: Optional[str] = typer.Option(None, "--cartoon-set", help="White-box: the dataset set holding the cartoon images. [default: style]", show_default=False),
    superpixels: Optional[Superpixels] = typer.Option(None, "--superpixels", help="White-box structure segmentation: SLIC (200 segments) or Felzenszwalb (scale 10, sigma 0.8, min_size 100). [default: slic]", show_default=False),
    illustration_set: Optional[str] = typer.Option(None, "--illustration-set", help="Style2paints: the dataset set holding colour illustrations (style: the frames of extract-frames). [default: illustration]", show_default=False),
    reference: Optional[Reference] = typer.Option(None, "--reference", help="Style2paints: the training reference is another crop of the illustration (another zoom, flipped, warped) sharing the target's random palette change, so colours must be read from it (crop); the illustration itself (original, the paper's); or a lightly jittered, TPS-warped copy (augmented). [default: crop]", show_default=False),
    train_scale: Optional[float] = typer.Option(None, "--train-scale", min=1.0, max=8.0, help="Style2paints with --reference crop: scale illustrations so their short side is --image-size times this before cropping; colorize then works at that scale. [default: 1.5]", show_default=False),
    target_norm: Optional[TargetNorm] = typer.Option(None, "--target-norm", help="Style2paints: norm() of the discriminator's fc1 targets: v/max(v) or v/|v| (docs/colorize.md). [default: max]", show_default=False),
    ema: Optional[float] = typer.Option(None, "--ema", min=0.0, max=0.9999, help="Decay of the generator's weight average that samples, evaluations and exports use, from the GAN phase on (warms up as (1+n)/(10+n)); 0: the raw weights. [default: 0.999]", show_default=False),
    temporal_weight: Optional[float] = typer.Option(None, "--temporal-weight", min=0.0, max=1000.0, help="AnimeGAN/White-box: weight of a shift-consistency term (the output of a slightly shifted photo against the shifted output) that steadies video; 0: off. [default: 0]", show_default=False),
    color_target: Optional[ColorTarget] = typer.Option(None, "--color-target", help="AnimeGAN/White-box colour anchor: the photo graded to the style set's colour statistics (style), or the photo itself (photo: the reference loss). [default: style]", show_default=False),
    augment: Optional[Augment] = typer.Option(None, "--augment", help="AnimeGAN/White-box: random translation (and cutout) of everything the discriminators see, real and generated alike (DiffAugment), so that a small style set is not memorized. [default: White-box translation,cutout, AnimeGAN none]", show_default=False),
    gan_loss: Optional[GanLoss] = typer.Option(None, "--gan-loss", help="Adversarial loss. [default: lsgan]", show_default=False),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=0, max=100_000, help="GAN-phase epochs. [default: 100]", show_default=False),
    init_epochs: Optional[int] = typer.Option(None, "--init-epochs", min=0, max=100_000, help="Init-phase epochs (generator only, content loss). [default: v2: 10, v1: 1; 0 with --init-weights]", show_default=False),
    init_weights: Optional[Path] = typer.Option(None, "--init-weights", help="Fine-tune: start the generator from a run folder, an exported .safetensors or a community AnimeGANv2 .pt (its architecture must be --model's); the run records its path and SHA-256.", show_default=False),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many generator steps (both phases counted); default: all epochs.", show_default=False),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=4096, help="Images per step (per GPU with --nproc). [default: v2: 12, v1: 6]", show_default=False),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=32, max=4096, help="Side of the random square crops, a multiple of 4. [default: 256]", show_default=False),
    lr_init: Optional[float] = typer.Option(None, "--lr-init", min=0.0, max=1.0, help="Learning rate of the init phase. [default: 1e-4]", show_default=False),
    lr_g: Optional[float] = typer.Option(None, "--lr-g", min=0.0, max=1.0, help="Generator learning rate (GAN phase). [default: v2: 2e-5, v1: 8e-5]", show_default=False),
    lr_d: Optional[float] = typer.Option(None, "--lr-d", min=0.0, max=1.0, help="Discriminator learning rate. [default: v2: 4e-5, v1: 1.6e-5]", show_default=False),
    adv_weight: Optional[float] = typer.Option(None, "--adv-weight", min=0.0, help="Generator adversarial loss weight. [default: 300]", show_default=False),
    d_adv_weight: Optional[float] = typer.Option(None, "--d-adv-weight", min=0.0, help="Discriminator adversarial loss weight. [default: 300]", show_default=False),
    content_weight: Optional[float] = typer.Option(None, "--content-weight", min=0.0, help=_W.format("content"), show_default=False),
    style_weight: Optional[float] = typer.Option(None, "--style-weight", min=0.0, help=_W.format("grayscale style"), show_default=False),
    color_weight: Optional[float] = typer.Option(None, "--color-weight", min=0.0, help=_W.format("colour"), show_default=False),
    tv_weight: Optional[float] = typer.Option(None, "--tv-weight", min=0.0, help=_W.format("total variation"), show_default=False),
    d_real_weight: Optional[float] = typer.Option(None, "--d-real-weight", min=0.0, help=_W.format("D real-frame"), show_default=False),
    d_fake_weight: Optional[float] = typer.Option(None, "--d-fake-weight", min=0.0, help=_W.format("D generated-image"), show_default=False),
    d_gray_weight: Optional[float] = typer.Option(None, "--d-gray-weight", min=0.0, help=_W.format("D grayscale-frame"), show_default=False),
    d_smooth_weight: Optional[float] = typer.Option(None, "--d-smooth-weight", min=0.0, help=_W.format("D smoothed-frame"), show_default=False),
    device: Optional[Device] = typer.Option(None, "--device", help="Where to train; auto picks CUDA when available. [default: auto]", show_default=False),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**31 - 1, help="Seed of initialization, data order and crops. [default: 0]", show_default=False),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Steps between checkpoints (one is also written at each epoch end). [default: 500]", show_default=False),
    keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", min=1, max=1000, help="Checkpoints kept (the newest). [default: 3]", show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, max=64, help="Data loader processes (0: load in the training process). [default: the cores of this process, split over --nproc, less one; at most 8]", show_default=False),
    amp: Optional[Amp] = typer.Option(None, "--amp", help="Mixed precision: auto = bf16 on GPUs that support it, else fp16; off on CPU. [default: auto]", show_default=False),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the networks (slow start, faster steps on GPU). [default: no-compile]", show_default=False),
    memory_format: Optional[MemoryFormat] = typer.Option(None, "--memory-format", help="Tensor layout: auto = channels_last on CUDA (cuDNN's fast NHWC kernels), contiguous on CPU. [default: auto]", show_default=False),
    cpu_kernels: Optional[CpuKernels] = typer.Option(None, "--cpu-kernels", help="CPU fp32 convolutions: fast (on AVX2 CPUs NNPACK Winograd forward and input gradients and Winograd weight gradients, about 2x per step there; on AVX-512 CPUs PyTorch's own, faster there) or plain (PyTorch's everywhere). [default: fast]", show_default=False),
    nproc: Optional[int] = typer.Option(None, "--nproc", min=1, max=64, help="Processes (GPUs) for data-parallel training via torch.distributed.run. [default: 1]", show_default=False),
    vgg_weights: Optional[str] = typer.Option(None, "--vgg-weights", help="VGG19 for the perceptual losses (Style2paints: its fc1 style vectors): imagenet (torchvision's file), random (tests only) or a PATH. [default: imagenet]", show_default=False),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", min=1, help="Also write a sample grid every N steps (always at each epoch end).", show_default=False),
    log_every: Optional[int] = typer.Option(None, "--log-every", min=1, help="Steps between rows of metrics.jsonl. [default: 10]", show_default=False),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", min=1, help="Steps between evaluations of the held-out photos (PSNR, SSIM, edge correlation, colour shift, output health; also at the last step). [default: 500]", show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and data counts as JSON, then exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary lines; warnings and errors are still printed."),
) -> None:
    """Train AnimeGAN v1/v2 (photo, style and smooth sets), White-box Cartoonization (photo and style sets)
    or the Style2paints V1 colorizer (illustration set; its sketches are drawn freshly for every sample).

    An init phase (generator only, reconstruction) is followed by the GAN phase; each phase's step range
    is said at the start and in --dry-run. Everything is written to the run folder: config.json,
    metrics.jsonl (losses, held-out evaluations, health warnings), samples/, checkpoints/ and
    generator.safetensors (usable with `animegan stylize` or `animegan colorize --weights RUN`). Ctrl-C or SIGTERM finishes the
    current step, saves a checkpoint and prints the command that resumes exactly (`--out RUN --resume`).
    """
    from pipelines.training.loop import TrainRequest, run_train

    if dataset_arg is not None or dataset is not None:
        dataset = pick_dataset(dataset_arg, dataset)
    given: dict[str, Any] = {
        "dataset": None if dataset is None else str(dataset), "out": None if out is None else str(out),
        "model": model, "style": style, "gan_loss": gan_loss, "epochs": epochs, "init_epochs": init_epochs,
        "init_weights": str(init_weights) if init_weights is not None else None,
        "max_steps": max_steps, "batch_size": batch_size, "image_size": image_size, "lr_init": lr_init,
        "lr_g": lr_g, "lr_d": lr_d, "device": device, "seed": seed, "checkpoint_every": checkpoint_every,
        "keep_checkpoints": keep_checkpoints, "workers": workers, "amp": amp, "compile": compile_,
        "cpu_kernels": cpu_kernels, "memory_format": memory_format, "nproc": nproc, "vgg_weights": vgg_weights, "preset": preset, "cartoon_set": cartoon_set,
        "superpixels": superpixels, "illustration_set": illustration_set, "reference": reference, "train_scale": train_scale,
        "target_norm": target_norm, "ema": ema, "temporal_weight": temporal_weight, "color_target": color_target, "augment": augment, "sample_every": sample_every, "log_every": log_every, "eval_every": eval_every,
    }
    weights = {
        "adv": adv_weight, "d_adv": d_adv_weight, "content": content_weight, "style": style_weight,
        "color": color_weight, "tv": tv_weight, "d_real": d_real_weight, "d_fake": d_fake_weight,
        "d_gray": d_gray_weight, "d_smooth": d_smooth_weight,
    }
    overrides = {k: (v.value if isinstance(v, Enum) else v) for k, v in given.items() if v is not None}
    if any(v is not None for v in weights.values()):
        overrides["weights"] = {k: v for k, v in weights.items() if v is not None}
    request = TrainRequest(config_file=config, overrides=overrides, resume=resume, dry_run=dry_run, quiet=quiet)

    with RichReporter(quiet=quiet) as reporter, graceful_stop(reporter):
        result = run(lambda: run_train(request, reporter))
    if dry_run:
        out_console.print_json(json.dumps(result.summary()))
        return
    if result.stopped:
        # Said even with --quiet: the run did not finish, and this is how to go on.
        out_console.print(f"stopped at step {result.step}/{result.total_steps}; checkpoint saved. Resume with: "
                          f"animegan train --out {shlex.quote(str(result.run_dir))} --resume", markup=False, highlight=False)
        raise typer.Exit(130 if reporter.stop_signal == signal.SIGINT else 143)
    if not quiet and result.announce:
        out_console.print(f"finished at step {result.step}/{result.total_steps}: {result.run_dir}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train)

"""The options of `animegan train` as one typed, range-checked object, and the config files that hold them.

`TrainConfig` is what a run folder's config.json stores and what every recipe is built from; filling
the fields a user left unset with a recipe's defaults happens in `loop.resolve_config`, so this module
knows no recipe (recipes import it).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..fileio import read_regular_file
from ..errors import InputError, describe_validation_error

CONFIG_NAME = "config.json"  # in a run folder: the resolved options
METRICS_NAME = "metrics.jsonl"  # in a run folder: one JSON row per --log-every steps, evaluation or warning
LOCK_NAME, LOCK_PID_NAME = ".train.lock", ".train.pid"  # in a run folder while a `train` holds it


class TrainConfig(BaseModel):
    """Every option of `animegan train`. Fields left `None` get the recipe's defaults in `resolve_config`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: str = Field("dataset", description="dataset folder (holds manifest.json)")
    out: str | None = Field(None, description="run folder; default runs/<timestamp>-<model>[-<style>] (AnimeGAN: its --style)")
    model: str = Field("animeganv2", description="model family: animegan (v1), animeganv2, whitebox or style2paints")
    style: Literal["hayao", "shinkai", "paprika"] = Field("hayao", description="AnimeGANv2 loss-weight preset")
    gan_loss: Literal["lsgan", "hinge"] = "lsgan"
    epochs: int | None = Field(None, ge=0, le=100_000, description="GAN-phase epochs")
    init_epochs: int | None = Field(None, ge=0, le=100_000, description="init-phase (reconstruction) epochs; 0 with --init-weights")
    init_weights: str | None = Field(None, description="fine-tune: start the generator from a run folder, an exported "
                                                       ".safetensors or a community AnimeGANv2 .pt")
    init_weights_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                            description="SHA-256 of the --init-weights file, recorded when the run starts")
    max_steps: int | None = Field(None, ge=1, description="stop after this many generator steps (both phases)")
    batch_size: int | None = Field(None, ge=1, le=4096, description="images per step per process")
    image_size: int = Field(256, ge=32, le=4096, multiple_of=4, description="crop side in pixels")
    lr_init: float | None = Field(None, gt=0, le=1, description="learning rate of the init phase")
    lr_g: float | None = Field(None, gt=0, le=1, description="generator learning rate, GAN phase")
    lr_d: float | None = Field(None, gt=0, le=1, description="discriminator learning rate, GAN phase")
    weights: dict[str, float] = Field(default_factory=dict, description="loss weights by term name")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (also at each epoch end)")
    keep_checkpoints: int = Field(3, ge=1, le=1000)
    workers: int | None = Field(None, ge=0, le=64, description="data loader worker processes; default: one per core "
                                                              "this process has (cores / processes), less one for the loop, at most 8")
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    compile: bool = False
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto", description="tensor layout of networks and batches: auto = channels_last on CUDA, contiguous on CPU")
    cpu_kernels: Literal["fast", "plain"] = Field(
        "fast", description="CPU fp32 convolutions: fast (NNPACK Winograd, Winograd weight gradients) or plain (PyTorch's)")
    nproc: int = Field(1, ge=1, le=64, description="processes (GPUs) for DDP")
    vgg_weights: str = Field("imagenet", description="imagenet, random or a PATH")
    ema: float = Field(0.999, ge=0, lt=1, description="decay of the generator's weight average used for samples, "
                                                       "evaluations and exports (0: off; warms up as (1+n)/(10+n))")
    color_target: Literal["style", "photo"] = Field(
        "style", description="AnimeGAN/White-box colour anchor: the photo graded to the style set's colour statistics, "
                             "or the photo itself (the reference loss)")
    augment: Literal["none", "translation", "translation,cutout"] | None = Field(
        None, description="AnimeGAN/White-box: random translation (and cutout) of everything the discriminators see, "
                          "real and generated alike (DiffAugment), so that a small style set is not memorized "
                          "(default: translation,cutout for White-box, none for AnimeGAN)")
    temporal_weight: float = Field(
        0.0, ge=0, description="AnimeGAN/White-box: weight of the shift-consistency term (G of a shifted photo against "
                               "the shifted G(photo)), against video flicker; 0: off")
    # White-box Cartoonization only (recipes/whitebox.py):
    preset: Literal["anchored", "released", "paper"] = Field(
        "anchored", description="White-box loss-weight preset: the released code's plus a colour anchor, the released code's, "
                                "or the paper's")
    cartoon_set: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$",
                                    description="White-box: the set holding cartoon images (default: style)")
    superpixels: Literal["slic", "felzenszwalb"] = Field("slic", description="White-box structure segmentation")
    # Style2paints only (recipes/style2paints.py):
    illustration_set: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$",
                                         description="Style2paints: the set holding colour illustrations (default: illustration)")
    reference: Literal["crop", "original", "augmented"] = Field(
        "crop", description="Style2paints: the training reference is another crop of the illustration at another zoom, "
                            "flipped and warped, with the target's random palette change (crop); the illustration itself "
                            "(original, the paper's); or a lightly jittered, TPS-warped copy (augmented)")
    train_scale: float = Field(1.5, ge=1.0, le=8.0, description="Style2paints with --reference crop: illustrations are "
                                                                "scaled so that their short side is image_size times this "
                                                                "before cropping; colorize works at that scale")
    target_norm: Literal["max", "l2"] = Field("max", description="Style2paints: norm() of the discriminator's fc1 targets")
    sample_every: int | None = Field(None, ge=1, description="steps between sample grids (also at each epoch end)")
    log_every: int = Field(10, ge=1, description="steps between metrics rows")
    eval_every: int = Field(500, ge=1, description="steps between held-out evaluations (also at the last step)")


# Options that may differ when a run is resumed: they change how long or where it runs, not what
# it computes. Everything else must match the run's config.json, or the resume would not be exact.
RESUMABLE_FIELDS = frozenset({
    "epochs", "max_steps", "device", "checkpoint_every", "keep_checkpoints", "workers", "compile", "memory_format",
    "nproc", "sample_every", "log_every", "eval_every", "out", "dataset",
})


def option_name(loc: tuple) -> str | None:
    """The `animegan train` option for a config field: image_size -> --image-size, weights.tv -> --tv-weight."""
    if len(loc) == 1 and loc[0] in TrainConfig.model_fields:
        return "--" + str(loc[0]).replace("_", "-")
    if len(loc) == 2 and loc[0] == "weights":
        return f"--{str(loc[1]).replace('_', '-')}-weight"
    return None


def config_error(where: str, exc: ValidationError) -> InputError:
    """One line for invalid options: named as typed on the command line (`where` "options"), or as the
    keys of the config file `where`."""
    if where == "options":
        return InputError(None, describe_validation_error(exc, option_name))
    return InputError(where, describe_validation_error(exc))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML (or JSON) file; keys may use '-' or '_'; loss weights in a `[weights]` table."""
    path = Path(path)
    try:
        data = read_regular_file(path)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        raw = json.loads(data) if path.suffix.lower() == ".json" else tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} ({exc})") from None
    if isinstance(raw, dict) and "config" in raw and "versions" in raw:
        raw = raw["config"]  # a run's config.json
    if not isinstance(raw, dict):
        raise InputError(path, "top level must be a table of options")
    out = {str(k).replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(out) - set(TrainConfig.model_fields))
    if unknown:
        raise InputError(path, f"unknown option {unknown[0]!r}; known: {', '.join(TrainConfig.model_fields)}")
    return out

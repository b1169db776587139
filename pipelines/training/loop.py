"""`animegan train`: resolving the options, the run folder and ONE training loop shared by every recipe.

Read `train()` top to bottom: setup (distributed, device, precision), data, run folder, networks,
resume, then the loop (one batch -> the phase's updates -> metrics, checkpoints, samples, export).

Run folder::

    RUN/config.json                  resolved options, versions, manifest sha256
    RUN/metrics.jsonl                losses every --log-every steps, held-out evaluations, health warnings
    RUN/samples/epoch-XXXX.png       held-out photos (top row) and their stylized versions (bottom); rows per recipe
    RUN/samples/final.png
    RUN/checkpoints/step-XXXXXXX.pt  everything needed for an exact resume (last --keep-checkpoints)
    RUN/generator.safetensors        the exported generator (+ generator.json), each epoch and at the end
    RUN/tensorboard/                 when the tensorboard package is installed

Exact resume: all randomness of the data comes from (seed, epoch, position) (see batches.py), the
networks and optimizers, GradScalers and RNG states are in the checkpoint, and the DataLoader has
its own generator so that building one does not move the global RNG. On CPU with one process,
N straight steps and a resumed run to N give identical weights.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from .. import __version__
from .ema import GeneratorEMA
from .health import HealthMonitor, output_stats, phase_ranges
from .checkpoints import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng,
    save_checkpoint,
)
from ..models.cpu_speed import accelerate, emulated_bf16_warning, tune_allocator
from ..models.registry import get_architecture
from ..errors import InputError, TrainingError
from ..fileio import atomic_write_bytes, sha256_file, write_image
from ..data.manifest import Dataset
from ..data.smoothing import available_cores
from ..progress import Reporter
from .config import CONFIG_NAME, LOCK_NAME, LOCK_PID_NAME, METRICS_NAME, RESUMABLE_FIELDS, TrainConfig, config_error, load_config_file
from .recipes import Phase, Recipe, get_recipe_class, RECIPES
from .batches import (
    MAKE_SET_HINT,
    UnreadableSample,
    BatchPlan,
    CropDataset,
    load_groups,
    load_preview,
    make_loader,
    scale_hints,
    steps_per_epoch,
    to_model_range,
    unreadable_sample,
)

SAMPLE_PHOTOS = 4  # photos in a sample grid
CHECKPOINT_FORMAT = 1
_LAUNCHER_ENV = "ANIMEGAN_TORCHRUN_LAUNCHER"  # set for processes started by `--nproc`


# =============================================================================================
# Configuration
# =============================================================================================


def resolve_config(config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                   resume: bool = False) -> TrainConfig:
    """File options, then `overrides` (only what the user gave explicitly), then the recipe's defaults.

    With `resume`, the base is the run's own config.json and only `RESUMABLE_FIELDS` may change.
    """
    given: dict[str, Any] = load_config_file(config_file) if config_file else {}
    for k, v in (overrides or {}).items():
        if k == "weights":
            given["weights"] = {**given.get("weights", {}), **v}
        else:
            given[k] = v
    where = str(config_file) if config_file else "options"
    try:
        cfg = TrainConfig.model_validate(given)
    except ValidationError as exc:
        raise config_error(where, exc) from None

    if resume:
        if not given.get("out"):
            raise TrainingError("--resume needs the run folder: animegan train --out RUN --resume")
        run_dir = Path(given["out"])
        saved_path = run_dir / CONFIG_NAME
        if not saved_path.is_file():
            raise TrainingError(f"{run_dir}: not a training run (no {CONFIG_NAME}); nothing to resume")
        raw_saved = load_config_file(saved_path)
        # Runs from before these options existed computed neither: resuming them must not start to.
        raw_saved.setdefault("ema", 0.0)
        raw_saved.setdefault("color_target", "photo")
        raw_saved.setdefault("augment", "none")
        try:
            saved = TrainConfig.model_validate(raw_saved)
        except ValidationError as exc:  # a hand-edited run folder: one line naming the file and the field
            raise config_error(str(saved_path), exc) from None
        if given.get("init_weights") and saved.init_weights:  # the same file named another way is no change
            from ..models.weight_files import resolve_weights_file

            try:
                if resolve_weights_file(given["init_weights"]).resolve() == Path(saved.init_weights):
                    given["init_weights"] = saved.init_weights
                    cfg = cfg.model_copy(update={"init_weights": saved.init_weights})
            except InputError:
                pass  # reported as a change below
        changes = {}
        for k, v in given.items():
            old = getattr(saved, k)
            new = getattr(cfg, k)
            if k == "weights":
                new = {**old, **new}
            if new != old:
                if k not in RESUMABLE_FIELDS:
                    raise TrainingError(
                        f"{saved_path}: --{k.replace('_', '-')} is {old!r} in this run; a resumed run must keep it "
                        f"(options that may change: {', '.join(sorted(RESUMABLE_FIELDS))})"
                    )
                changes[k] = new
        return saved.model_copy(update=changes)

    if cfg.model not in RECIPES:
        raise InputError(where, f"model: unknown model {cfg.model!r}; known: {', '.join(sorted(RECIPES))}")
    recipe = get_recipe_class(cfg.model)
    fill = {k: v for k, v in recipe.defaults(cfg.model, cfg.style).items() if getattr(cfg, k) is None}
    weights = recipe.default_weights(cfg.model, recipe.weight_preset(cfg))
    for name, value in cfg.weights.items():
        if name not in weights:
            raise InputError(where, f"weights: no loss term {name!r} in {cfg.model}; terms: {', '.join(weights)}")
        if not (value >= 0 and math.isfinite(value)):
            raise InputError(where, f"weights.{name}: must be a finite number >= 0, not {value}")
        weights[name] = float(value)
    fill["weights"] = weights
    if cfg.init_weights is not None:
        fill.update(_init_source(cfg, recipe(cfg.model_copy(update=fill)), where))
    if cfg.temporal_weight > 0 and cfg.model == "style2paints":
        raise InputError(where, "temporal_weight: the shift-consistency term is for the AnimeGAN and White-box families")
    multiple = get_architecture(recipe(cfg.model_copy(update=fill)).export_arch()[0]).size_multiple
    if cfg.image_size % multiple:
        lo = max(multiple, cfg.image_size // multiple * multiple)
        raise InputError(where, f"image_size: {cfg.image_size} is not a multiple of {multiple}, which the {cfg.model} "
                                f"generator needs; nearest valid sizes: {lo} and {lo + multiple}")
    if cfg.out is None:
        # --style names AnimeGAN's loss-weight preset; the other families have no style to name.
        suffix = f"-{cfg.style}" if cfg.model in ("animegan", "animeganv2") else ""
        fill["out"] = str(Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{cfg.model}{suffix}")
    return cfg.model_copy(update=fill)


def _start_from(generator: nn.Module, config: TrainConfig, reporter: Reporter) -> None:
    """Load the `--init-weights` generator into `generator`, refusing a file that changed since it was recorded."""
    from ..models.weights import load_bare_generator

    source = Path(config.init_weights)
    if sha256_file(source) != config.init_weights_sha256:
        raise InputError(source, "changed since this run recorded it (SHA-256 differs); start a new run to use it")
    # Building the file's network draws initial weights: from a forked RNG, so that the run's random draws (a random
    # VGG, the data) are those of a resume, which does not read this file.
    with torch.random.fork_rng(devices=[]):
        net, _, _, _ = load_bare_generator(source)
    generator.load_state_dict(net.state_dict())
    skipped = "; init phase skipped (it already reconstructs photos)" if not config.init_epochs else ""
    reporter.info(f"generator starts from {source} (sha256 {config.init_weights_sha256[:12]}){skipped}")


def _init_source(cfg: TrainConfig, recipe: Recipe, where: str) -> dict[str, Any]:
    """Fine-tuning: check that `--init-weights` holds the generator this model trains; its resolved path and hash,
    and no init phase unless asked for (the generator already reconstructs photos)."""
    from ..models.weights import load_bare_generator

    if cfg.model == "style2paints":
        raise InputError(where, "init_weights: fine-tuning is for the AnimeGAN and White-box families")
    with torch.random.fork_rng(devices=[]):  # building the network must not move the global RNG
        _, arch, _, source = load_bare_generator(cfg.init_weights)
    want = recipe.export_arch()[0]
    if arch != want:  # the weights fit any options of the same architecture (align_corners changes no tensor)
        models = {"animegan_v1": "animegan", "animegan_v2": "animeganv2", "whitebox": "whitebox"}
        hint = f"; fine-tune it with --model {models[arch]}" if arch in models else ""
        article = "an" if arch[:1] in "aeiou" else "a"
        raise InputError(source, f"holds {article} {arch} generator, not the {want} generator --model {cfg.model} "
                                 f"trains{hint}")
    out: dict[str, Any] = {"init_weights": str(source.resolve()), "init_weights_sha256": sha256_file(source)}
    if cfg.init_epochs is None:
        out["init_epochs"] = 0
    return out


# =============================================================================================
# Results
# =============================================================================================


@dataclass
class TrainRequest:
    """What the CLI asks for: a config file, the options given explicitly, and the mode."""

    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    dry_run: bool = False
    quiet: bool = False  # passed on to the processes `--nproc` launches


@dataclass
class TrainResult:
    config: TrainConfig
    run_dir: Path
    counts: dict[str, int]  # images per set used for training
    held_out: int
    steps_per_epoch: int
    total_steps: int
    step: int = 0  # generator steps done when the call returned
    dry_run: bool = False
    stopped: bool = False  # stopped early by the reporter (Ctrl-C handling)
    phases: list[dict[str, Any]] = field(default_factory=list)  # each phase's step range (health.phase_ranges)
    announce: bool = True  # False in torchrun's worker processes: the launcher reports the outcome

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "data": {**self.counts, "held_out_photos": self.held_out},
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "phases": self.phases,
            "run": str(self.run_dir),
        }


# =============================================================================================
# Entry point: dry run, torchrun re-launch, or train
# =============================================================================================


def run_train(request: TrainRequest, reporter: Reporter) -> TrainResult:
    """The `train` command: resolve options, then dry-run, re-launch under torchrun, or train here."""
    config = resolve_config(request.config_file, request.overrides, resume=request.resume)
    if request.dry_run:
        recipe = get_recipe_class(config.model)(config)
        groups, held = load_groups(config.dataset, recipe.data_groups, holdout_count(config, recipe),
                              recipe.preview_set)
        spe, total = _schedule(config, recipe, [len(g) for g in groups], world=config.nproc)
        counts = {s: len(g.files[s]) for g in groups for s in g.group.sets}
        phases = phase_ranges([(p.name, p.epochs) for p in recipe.phases() if p.epochs > 0], spe, total)
        return TrainResult(config, Path(config.out), counts, len(held), spe, total, dry_run=True, phases=phases)
    if "WORLD_SIZE" in os.environ:  # a process started by --nproc: the launcher holds the run folder's lock
        return train(config, reporter, resume=request.resume)
    with run_folder_lock(Path(config.out)):
        if config.nproc > 1:
            return _launch_torchrun(config, request, reporter)
        return train(config, reporter, resume=request.resume)




@contextmanager
def run_folder_lock(run_dir: Path):
    """Hold `run_dir` for one `train` at a time: a second one (into the same --out, or a --resume of it) gets one
    line naming the holder's process, instead of both writing configs and checkpoints over each other. The
    lock is the operating system's (released when the process ends, killed or not)."""
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = (run_dir / LOCK_PID_NAME).read_text().strip()
        except OSError:
            holder = "?"
        raise TrainingError(f"{run_dir}: another `animegan train` (process {holder}) is training this run folder; "
                            f"wait for it to finish, or choose another --out") from None
    try:
        atomic_write_bytes(run_dir / LOCK_PID_NAME, str(os.getpid()).encode())
        yield
    finally:
        (run_dir / LOCK_PID_NAME).unlink(missing_ok=True)
        lock.release()


def _launch_torchrun(config: TrainConfig, request: TrainRequest, reporter: Reporter) -> TrainResult:
    """Re-run this command under `torch.distributed.run` with `--nproc` processes on this machine.

    The resolved config travels as a JSON file, so every process trains exactly what was resolved
    here (including the default run folder's timestamp). A user's own torchrun works too: the
    processes see WORLD_SIZE and do not re-launch.
    """
    with tempfile.TemporaryDirectory(prefix="animegan-launch-") as tmp:
        cfg_path = Path(tmp) / "config.json"
        cfg_path.write_text(json.dumps(config.model_dump(mode="json")))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={config.nproc}",
               "-m", "animegan_cli", "train", "--config", str(cfg_path), "--out", str(config.out)]
        if request.resume:
            cmd.append("--resume")
        if request.quiet:
            cmd.append("--quiet")
        reporter.info(f"launching {config.nproc} training processes (torch.distributed.run)")
        code = subprocess.call(cmd, env={**os.environ, _LAUNCHER_ENV: "1"})
    if code != 0:
        raise TrainingError(f"{config.out}: distributed training failed (exit code {code}); see the messages above")
    recipe = get_recipe_class(config.model)(config)
    groups, held = load_groups(config.dataset, recipe.data_groups, holdout_count(config, recipe),
                               recipe.preview_set)
    spe, total = _schedule(config, recipe, [len(g) for g in groups], world=config.nproc)
    ckpt = latest_checkpoint(Path(config.out))
    step = int(ckpt.stem.split("-")[1]) if ckpt else 0
    counts = {s: len(g.files[s]) for g in groups for s in g.group.sets}
    return TrainResult(config, Path(config.out), counts, len(held), spe, total, step=step)


def holdout_count(config: TrainConfig, recipe: Recipe) -> int:
    """Images of the preview set (photos) kept out of training for the sample grids and evaluations: only
    when they are plentiful (>= 10 per held-out one)."""
    images = len(Dataset.open(config.dataset).manifest.records(recipe.preview_set))
    return SAMPLE_PHOTOS if images >= 10 * SAMPLE_PHOTOS else 0


def _schedule(config: TrainConfig, recipe: Recipe, sizes: list[int], world: int) -> tuple[int, int]:
    spe = steps_per_epoch(sizes, config.batch_size * world)
    total = sum(p.epochs for p in recipe.phases()) * spe
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return spe, total


# =============================================================================================
# The training loop
# =============================================================================================


def train(config: TrainConfig, reporter: Reporter, resume: bool = False) -> TrainResult:
    """Train `config` (already resolved) and return where it stopped. Raises `TrainingError` / `DatasetError`."""
    # ---------------------------------------------------------------- distributed, device, precision
    rank, world, local_rank = _distributed_env()
    is_main = rank == 0
    if not is_main:
        reporter = Reporter()  # only rank 0 talks and writes files
    device = _pick_device(config.device, local_rank)
    own_group = world > 1 and not torch.distributed.is_initialized()  # ours to destroy at the end
    if own_group:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp_dtype = _amp_dtype(config.amp, device)
    if device.type == "cpu" and amp_dtype == torch.bfloat16 and (line := emulated_bf16_warning("--amp bf16")):
        reporter.warn(line + " (--amp off trains in fp32)")
    # cuDNN's fastest convolutions are NHWC; on CPU the generator's GroupNorm/depthwise backward
    # measured no faster in NHWC here, so CPU stays NCHW. On CUDA, reflection padding and GroupNorm
    # return NCHW, so whether NHWC pays off per network is measured by bench/gpu_check.py.
    channels_last = config.memory_format == "channels_last" or (config.memory_format == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # TF32 (10-bit mantissa) for the networks' matmuls and convolutions on Ampere and newer; the loss
        # terms are fp32 with autocast off, but their matmuls (Gram, YUV) are TF32 too unless --amp off.
        tf32 = config.amp != "off"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    # ---------------------------------------------------------------- recipe and data
    recipe = get_recipe_class(config.model)(config)
    phases = [p for p in recipe.phases() if p.epochs > 0]
    if not phases:
        raise TrainingError(f"{config.out}: nothing to train: --epochs and --init-epochs are both 0")
    groups, held = load_groups(config.dataset, recipe.data_groups, holdout_count(config, recipe),
                               recipe.preview_set)
    spe, total_steps = _schedule(config, recipe, [len(g) for g in groups], world)
    total_epochs = sum(p.epochs for p in phases)
    ranges = phase_ranges([(p.name, p.epochs) for p in phases], spe, total_steps)
    counts = {s: len(g.files[s]) for g in groups for s in g.group.sets}
    dataset = Dataset.open(config.dataset)
    for line in scale_hints(dataset, [g.group.main for g in groups], config.image_size) if is_main else ():
        reporter.warn(line)
    for g in groups:
        for twin, n in g.missing_twins.items():
            reporter.warn(f"{config.dataset}: {n} '{g.group.main}' images have no '{twin}' twin and are left out; "
                          f"run {MAKE_SET_HINT.get(twin, '`animegan make-smooth`')} to include them")
    recipe.fit_data(groups, reporter.info if is_main else (lambda line: None))
    preview_group = next((g for g in groups if g.group.main == recipe.preview_set), groups[0])
    preview_paths = held or preview_group.files[preview_group.group.main][:SAMPLE_PHOTOS]
    manifest_sha = dataset.manifest_sha256()
    result = TrainResult(config, Path(config.out), counts, len(held), spe, total_steps,
                         announce=is_main and not os.environ.get(_LAUNCHER_ENV), phases=ranges)

    # ---------------------------------------------------------------- run folder
    run_dir = Path(config.out)
    checkpoint = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    # A folder with config.json but no checkpoint is an attempt that stopped before training began
    # (no VGG file, a bad option, killed while starting): not a run. It is reused, resumed or not.
    never_started = checkpoint is None and (run_dir / CONFIG_NAME).is_file()
    if never_started:
        reporter.info(f"{run_dir} holds no checkpoint (an earlier attempt stopped before training began): "
                      f"starting it from step 0")
    elif not resume and run_dir.exists() and any(p.name not in (LOCK_NAME, LOCK_PID_NAME) for p in run_dir.iterdir()):
        what = "already holds a training run" if (run_dir / CONFIG_NAME).exists() else "exists and is not empty"
        raise TrainingError(f"{run_dir}: {what}; continue it with `animegan train --out {run_dir} --resume` "
                            f"or choose another --out")
    elif resume and checkpoint is None:
        raise TrainingError(f"{run_dir}: no checkpoint to resume from; start it with `animegan train --out {run_dir}`")
    state: dict[str, Any] = {}
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        # The data order, the shards and the global batch all follow from the number of processes: a
        # resume with another number would replay some samples and skip others.
        saved_world = int(state.get("world_size", _saved_world_size(run_dir, world)))
        if saved_world != world:
            raise TrainingError(f"{checkpoint}: this run trains with {saved_world} process{'es' if saved_world != 1 else ''}, "
                                f"not {world}; resume it with --nproc {saved_world}")
    _barrier(world)  # every rank has checked the folder before rank 0 writes into it
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        if never_started:  # what the failed attempt wrote describes nothing that happened
            for name in (CONFIG_NAME, METRICS_NAME):
                (run_dir / name).unlink(missing_ok=True)
        _write_config(run_dir, config, manifest_sha, world, total_steps)
    _barrier(world)

    # ---------------------------------------------------------------- networks and optimizers
    # Seeding before building makes the initial weights, and a random VGG, the same on every run
    # and every rank (DDP requires identical replicas).
    _seed_everything(config.seed)
    raw: dict[str, nn.Module] = recipe.build_networks()
    if checkpoint is None and config.init_weights is not None:  # fine-tuning (a resume has it in its checkpoint)
        _start_from(raw[recipe.generator_key], config, reporter)
    for net in raw.values():
        net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    frozen = recipe.build_frozen(device, reporter.info)
    for net in frozen.values():
        net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # CPU (`--cpu-kernels fast`): large blocks stay mapped, in every precision (pipelines.models.cpu_speed); in fp32
    # without compile the dense convolutions also go through NNPACK and a Winograd weight gradient (where they pay off).
    if device.type == "cpu" and config.cpu_kernels == "fast":
        tune_allocator()
    fast_cpu = device.type == "cpu" and amp_dtype is None and not config.compile and config.cpu_kernels == "fast"
    if fast_cpu:
        for net in (*raw.values(), *frozen.values()):
            accelerate(net)
    optimizers = recipe.build_optimizers(raw)
    # The averaged generator (ema.py) is what samples, evaluations and exports show; `shown` is that network.
    ema = GeneratorEMA(raw[recipe.generator_key], config.ema) if config.ema > 0 else None
    # One GradScaler per optimizer: a shared scaler would unscale one optimizer's gradients with
    # another's inf checks (FACTS 8.10). Only fp16 needs scaling; bf16 has fp32's exponent range.
    # The default initial scale (65536) overflows fp16 gradients of losses weighted 300 (AnimeGAN's
    # adversarial weight), so the first steps would be skipped while it backs off; start at 1024.
    scalers = {name: torch.amp.GradScaler(device.type, init_scale=2.0 ** 10, enabled=amp_dtype == torch.float16)
               for name in optimizers}

    # ---------------------------------------------------------------- resume
    step, epoch, epoch_step = 0, 0, 0
    if checkpoint is not None:
        try:
            for name, net in raw.items():
                net.load_state_dict(state["networks"][name])
            for name, opt in optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            for name, scaler in scalers.items():
                if state["scalers"].get(name):
                    scaler.load_state_dict(state["scalers"][name])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise TrainingError(f"{checkpoint}: does not match this model ({str(exc).splitlines()[0][:200]})") from None
        missing = [k for k in ("rng", "step", "epoch", "epoch_step") if k not in state]
        if missing:  # a damaged or hand-edited checkpoint: an exact resume is impossible without these
            raise TrainingError(f"{checkpoint}: has no {', '.join(repr(k) for k in missing)} entry (damaged or edited); "
                                f"move it aside to resume from the checkpoint before it")
        try:
            restore_rng(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise TrainingError(f"{checkpoint}: its 'rng' entry cannot be restored ({str(exc).splitlines()[0][:200]}); "
                                f"move it aside to resume from the checkpoint before it") from None
        if ema is not None:
            if state.get("ema"):
                ema.load_state_dict(state["ema"])
            else:  # a checkpoint from before the average existed: it starts from the weights as they are
                ema.track(raw[recipe.generator_key])
        step, epoch, epoch_step = int(state["step"]), int(state["epoch"]), int(state["epoch_step"])
        if state.get("manifest_sha256") != manifest_sha:
            reporter.warn(f"{config.dataset}: the dataset changed since {checkpoint.name}; the resumed run sees different data")
        if epoch_step >= spe:  # the dataset shrank: go on at the next epoch
            epoch, epoch_step = epoch + 1, 0
        reporter.info(f"resuming {run_dir} from {checkpoint.name} (step {step}, epoch {epoch + 1})")
        if is_main:
            _truncate_metrics(run_dir / METRICS_NAME, step)

    # ---------------------------------------------------------------- wrappers: DDP, compile
    wrapped: dict[str, nn.Module] = {}
    for name, net in raw.items():
        m = net
        if world > 1:
            m = torch.nn.parallel.DistributedDataParallel(m, device_ids=[device.index] if device.type == "cuda" else None)
        wrapped[name] = torch.compile(m) if config.compile else m
    if config.compile:
        frozen = {k: torch.compile(v) for k, v in frozen.items()}

    # ---------------------------------------------------------------- data loader from the saved position
    plan = BatchPlan(epochs=total_epochs, steps_per_epoch=spe, batch=config.batch_size,
                     start_epoch=epoch, start_step=epoch_step, rank=rank, world=world)
    loader = make_loader(CropDataset(groups, config.seed, config.image_size, spe * config.batch_size * world,
                                     transform=recipe.sample_transform()),
                         plan, loader_workers(config.workers, world), pin_memory=device.type == "cuda",
                         generator=torch.Generator().manual_seed(config.seed))
    preview = to_model_range(torch.from_numpy(load_preview(preview_paths, config.image_size, getattr(recipe, "train_scale", 1.0))).permute(0, 3, 1, 2),
                             device, channels_last)

    # ---------------------------------------------------------------- logging
    tb = _tensorboard(run_dir, step) if is_main else None
    monitor = HealthMonitor()
    # The newest held-out evaluation of this invocation: exports carry it, so a model file says how it did
    # (colorize reads a colorizer's reference figures from it).
    last_eval: dict[str, float] = {}
    if checkpoint is not None and state.get("health"):
        monitor.load_state(state["health"])

    def write_row(row: dict[str, Any]) -> None:
        if is_main:
            with open(run_dir / METRICS_NAME, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if tb is not None:
                for k, v in row.items():
                    if isinstance(v, float) and k != "time":
                        tb.add_scalar(k, v, row["step"])

    def warn(at_step: int, found: list[tuple[str, str]]) -> None:
        for kind, message in found:
            reporter.warn(message)
            write_row({"step": at_step, "warning": kind, "message": message})
    metrics_sums: dict[str, float] = {}
    metrics_n: dict[str, int] = {}  # per term: the phases log different terms
    # Loss values not yet read by the host: (step, phase, epoch, optimizer, term names, values on the device).
    window: list[tuple[int, str, int, str, tuple[str, ...], torch.Tensor]] = []
    last_g_total: float | None = None
    latest_terms: dict[str, float] = {}  # every weighted term of the newest step `check` read

    def check() -> None:
        """Read the pending loss values in one transfer (averaged over ranks), stop on the first
        non-finite one, naming its term and step, and add them to the metrics sums."""
        nonlocal window, last_g_total
        if not window:
            return
        flat = torch.cat([values for *_, values in window])
        if world > 1:
            torch.distributed.all_reduce(flat)  # every rank checks the same numbers and stops together
            flat /= world
        host = flat.cpu().tolist()
        i = 0
        newest = window[-1][0]
        latest_terms.clear()
        for at_step, phase_name, at_epoch, opt_name, names, _ in window:
            vals = host[i:i + len(names)]
            i += len(names)
            if at_step == newest:
                latest_terms.update(zip(names, vals))
            for k, v in zip(names, vals):
                if not math.isfinite(v):
                    raise TrainingError(
                        f"{run_dir}: loss term '{k}' is {v} at step {at_step} ({phase_name} phase, epoch {at_epoch + 1}); "
                        f"the last good checkpoint is kept. Try a lower learning rate, --amp off, or check the data")
            for k, v in [*zip(names, vals), (f"total_{opt_name}", sum(vals))]:
                metrics_sums[k] = metrics_sums.get(k, 0.0) + v
                metrics_n[k] = metrics_n.get(k, 0) + 1
            if opt_name.startswith("g"):
                last_g_total = sum(vals)
        window = []
    interval_start, interval_steps = time.perf_counter(), 0
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())

    def save(at_step: int) -> None:
        if world > 1:
            # DDP keeps the replicas equal only if every rank computes the same updates; a difference
            # (unsynchronized buffers, a rank-dependent branch) would silently train N different models
            # and checkpoint rank 0's. Checked at every checkpoint, collectively, before anything is written.
            local = replica_fingerprints(raw)
            gathered = [torch.empty_like(local) for _ in range(world)]
            torch.distributed.all_gather(gathered, local)
            differ = mismatched_replicas(list(raw), torch.stack(gathered).cpu())
            if differ:
                raise TrainingError(f"{run_dir}: the {world} processes' copies of {', '.join(differ)} differ at step "
                                    f"{at_step}; the last good checkpoint is kept (a bug: please report it)")
        if is_main:
            save_checkpoint(run_dir, at_step, {
                "format": CHECKPOINT_FORMAT,
                "step": at_step, "epoch": epoch, "epoch_step": epoch_step,
                "networks": {k: v.state_dict() for k, v in raw.items()},
                "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
                "scalers": {k: v.state_dict() for k, v in scalers.items()},
                "rng": capture_rng(),
                "health": monitor.state(),
                **({"ema": ema.state_dict()} if ema is not None else {}),
                "world_size": world,
                "replicas_checked": world > 1,  # every rank's networks were equal at this step
                "config": config.model_dump(mode="json"),
                "manifest_sha256": manifest_sha,
            }, keep=config.keep_checkpoints)

    def shown() -> nn.Module:
        """The generator that samples, evaluations and exports use: the weight average when there is one."""
        return ema.shadow if ema is not None else raw[recipe.generator_key]

    def export(tag: str, epochs_done: float) -> None:
        if is_main:
            _write_samples(run_dir / "samples" / f"{tag}.png", recipe, shown(), preview)
            arch, arch_kwargs = recipe.export_arch()
            from ..models.weights import save_generator

            save_generator(shown(), arch, arch_kwargs, run_dir, meta={
                "model": config.model, "style": config.style if config.model in ("animegan", "animeganv2") else None,
                "step": step, "epochs": round(epochs_done, 3),
                "image_size": config.image_size, "run": str(run_dir), "dataset_manifest_sha256": manifest_sha,
                "ema": config.ema, **recipe.export_meta(), **({"held_out": last_eval} if last_eval else {}),
            }, postprocess=recipe.export_postprocess())

    if checkpoint is None:
        save(0)  # a run killed at any moment after this point can be resumed
    elif step >= total_steps:
        reporter.info(f"{run_dir} is already at step {step} of {total_steps}; raise --max-steps or --epochs to go on")
        result.step = step
        return result
    reporter.info(f"training {config.model} on {', '.join(f'{v} {k}' for k, v in counts.items())} images: "
                  f"{spe} steps per epoch, {total_steps} steps, device {device}"
                  f"{', AMP ' + str(amp_dtype).removeprefix('torch.') if amp_dtype else ''}"
                  f"{', TF32 matmuls' if device.type == 'cuda' and torch.backends.cuda.matmul.allow_tf32 else ''}"
                  f"{f', {world} processes' if world > 1 else ''}; run folder {run_dir}")
    for r in ranges:
        if r["runs"]:
            epochs = f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}"
            reporter.info(f"{r['phase']} phase: steps {r['first']}-{r['last']} "
                          + (f"({epochs})" if r["complete"] else f"(--max-steps ends it before its {epochs})"))
    if not ranges[-1]["runs"] and step < ranges[-1]["first"]:
        warn(step, [("phase_skipped", f"the run stops at step {total_steps}, before its {ranges[-1]['phase']} phase starts at "
                     f"step {ranges[-1]['first']}: the generator will only reconstruct photos; raise --max-steps or lower --init-epochs")])
    shown_epochs = min(total_epochs, math.ceil(total_steps / spe))  # what --max-steps lets the run reach
    # Counted over the whole run, so a resumed run's bar starts where it stopped (46/90, not 0/44).
    reporter.start("train", "train", total=total_steps, done=min(step, total_steps))  # the run folder is in the info line above

    # ---------------------------------------------------------------- the loop
    stopped = False
    # The phase of the last step done (a resume exactly at a phase boundary still reports the new phase's terms).
    current_phase: str | None = _phase_of(phases, epoch - (epoch_step == 0)).name if step > 0 else None
    batches = iter(loader)
    while True:
        try:
            batch_u8 = next(batches)
        except StopIteration:
            break
        except UnreadableSample as exc:
            # A file changed under the run (deleted, replaced, corrupted): keep the steps done, then one line.
            save(step)
            raise TrainingError(
                f"{unreadable_sample(exc)}; the dataset changed while training. Check it with `animegan dataset "
                f"{config.dataset} --check` (`--prune` drops records whose files are gone), then continue with "
                f"`animegan train --out {run_dir} --resume` (saved at step {step})") from None
        if step >= total_steps:
            break
        phase = _phase_of(phases, epoch)
        balance_due = phase.name != current_phase  # this step opens its phase: its terms are reported
        if phase.name != current_phase:
            if current_phase is not None:
                reporter.info(f"step {step}: {current_phase} phase done; {phase.name} phase starts")
            current_phase = phase.name
        batch = {k: to_model_range(v, device, channels_last) for k, v in batch_u8.items()}  # [N, 3, S, S] in [-1, 1]
        ctx: dict[str, Any] = {}
        for update in phase.updates:
            for name, net in raw.items():
                net.requires_grad_(name not in update.frozen)
            nets = {**frozen, **{k: (raw[k] if k in update.frozen else wrapped[k]) for k in raw}}
            with autocast:
                terms = recipe.losses(phase.name, update, nets, batch, ctx)
            # The term values stay on the device (reading them here would make the host wait for the
            # GPU after every forward); `check` reads and verifies them in one go, always before a
            # checkpoint is written, so a non-finite loss never reaches a checkpoint.
            window.append((step + 1, phase.name, epoch, update.optimizer, tuple(terms),
                           torch.stack([t.detach().float() for t in terms.values()])))
            opt, scaler = optimizers[update.optimizer], scalers[update.optimizer]
            opt.zero_grad(set_to_none=True)
            scaler.scale(sum(terms.values())).backward()
            scaler.step(opt)
            scaler.update()
        if ema is not None:  # averaged over the last phase only; before it, the average is the generator
            (ema.update if phase is phases[-1] else ema.track)(raw[recipe.generator_key])
        step += 1
        epoch_step += 1
        interval_steps += 1

        # -------------------------------------------------------- metrics and progress
        epoch_done = epoch_step == spe
        finished = step >= total_steps
        log_now = step % config.log_every == 0 or finished
        # A phase's end is evaluated too: whether the init phase left a generator that reproduces photos is what
        # decides if the GAN phase can work, and a short run would otherwise first see it at its last step.
        phase_ends = epoch_done and _phase_of(phases, epoch + 1) is not phase
        eval_due = step % config.eval_every == 0 or finished or phase_ends  # the same on every rank: `check` is collective
        eval_now = is_main and eval_due
        sample_now = bool(config.sample_every) and step % config.sample_every == 0
        # A stop request is honoured by a single process only: under DDP every rank would have to agree
        # on the step (a collective per step); there Ctrl-C stops at once and --resume goes on from the
        # last periodic checkpoint.
        abort = world == 1 and reporter.should_abort()
        save_now = epoch_done or finished or abort or step % config.checkpoint_every == 0
        if log_now or save_now or eval_due or sample_now or balance_due:
            check()
        if balance_due:
            # The balance of the weighted terms at the first step of each phase, in the log and the console:
            # whether one term swamps the others (e.g. a perceptual loss at another VGG's scale) shows here.
            reporter.info(f"step {step}: {phase.name} phase, weighted loss terms: "
                          + ", ".join(f"{k} {v:.3g}" for k, v in latest_terms.items()))
            write_row({"step": step, "phase": phase.name, "balance": dict(latest_terms)})
        # Short enough for an 80-column terminal: the phase, the epoch and the generator's last checked loss.
        reporter.advance("train", 1, phase=phase.name, epoch=f"{epoch + 1}/{shown_epochs}",
                         **({"loss": last_g_total} if last_g_total is not None else {}))
        if log_now:
            elapsed = time.perf_counter() - interval_start
            row = {
                "step": step, "epoch": epoch + 1, "phase": phase.name, "time": time.time(),
                "step_time_s": elapsed / interval_steps,
                "images_per_s": interval_steps * config.batch_size * world / max(elapsed, 1e-9),
                **{f"loss/{k}": v / metrics_n[k] for k, v in metrics_sums.items()},
                **{f"lr/{k}": o.param_groups[0]["lr"] for k, o in optimizers.items()},
                **recipe.metrics(),
            }
            write_row(row)
            warn(step, monitor.observe_losses(row))
            metrics_sums, metrics_n = {}, {}
            interval_start, interval_steps = time.perf_counter(), 0

        # -------------------------------------------------------- held-out evaluation and health
        if eval_now:
            means, stats = _evaluate(recipe, shown(), preview)
            last_eval = {"step": step, **{k: round(v, 4) for k, v in means.items()}}
            write_row({"step": step, "phase": phase.name, **{f"eval/{k}": v for k, v in {**means, **stats}.items()}})
            warn(step, monitor.observe_eval(step, stats, means.get("edge_corr"), means, phase=phase.name,
                                            phase_ends=phase_ends and not finished))

        # -------------------------------------------------------- epoch end, checkpoints, samples
        if epoch_done:
            export(f"epoch-{epoch + 1:04d}", epoch + 1)
            epoch, epoch_step = epoch + 1, 0
        elif sample_now and is_main:
            _write_samples(run_dir / "samples" / f"step-{step:07d}.png", recipe, shown(), preview)
        if save_now:
            save(step)
        if abort and not finished:
            stopped = True  # the caller says how to resume (the CLI prints the exact command)
            break
        if finished:
            break  # before the loader decodes a batch nobody would use

    # ---------------------------------------------------------------- final export
    reporter.finish("train")
    if not stopped:
        export("final", epoch + epoch_step / spe)
    if tb is not None:
        tb.close()
    recipe.close()  # e.g. White-box's superpixel pool
    _barrier(world)
    if own_group:
        torch.distributed.destroy_process_group()
    result.step, result.stopped = step, stopped
    return result


# =============================================================================================
# Helpers of the loop
# =============================================================================================


def replica_fingerprints(nets: Mapping[str, nn.Module]) -> torch.Tensor:
    """`[len(nets), 2]` float64: per network, the sum and the sum of absolute values of every parameter and
    buffer. Equal replicas give equal rows bit for bit (same values, same order of summation)."""
    device = next((p.device for net in nets.values() for p in net.parameters()), torch.device("cpu"))
    rows = []
    for net in nets.values():
        tensors = [t.detach().double() for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
        rows.append(torch.stack([sum(t.sum() for t in tensors), sum(t.abs().sum() for t in tensors)])
                    if tensors else torch.zeros(2, dtype=torch.float64, device=device))
    return torch.stack(rows)


def mismatched_replicas(names: list[str], gathered: torch.Tensor) -> list[str]:
    """The networks whose fingerprints (`gathered` `[world, len(names), 2]`) differ between any rank and rank 0."""
    return [name for i, name in enumerate(names) if not bool((gathered[:, i] == gathered[0, i]).all())]


def _phase_of(phases: list[Phase], epoch: int) -> Phase:
    end = 0
    for p in phases:
        end += p.epochs
        if epoch < end:
            return p
    return phases[-1]


def _distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _barrier(world: int) -> None:
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if choice == "cuda":
        raise TrainingError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu or auto")
    return torch.device("cpu")


def _amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """auto: bf16 where the GPU supports it, else fp16; off on CPU (CPU autocast rarely pays off)."""
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        # Native bf16 only (compute capability 8.0+: A100, H100, RTX 30xx and newer). On older GPUs
        # (T4, V100, 10xx/20xx) `torch.cuda.is_bf16_supported()` also counts emulation, which is slow.
        bf16_ok = native_bf16(device)
        if choice == "bf16" and not bf16_ok:
            cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
            raise TrainingError(f"--amp bf16: this GPU (compute capability {cap}) has no native bfloat16; use --amp fp16 or auto")
        return torch.bfloat16 if choice == "bf16" or (choice == "auto" and bf16_ok) else torch.float16
    if choice == "fp16":
        raise TrainingError("--amp fp16 needs a CUDA GPU; on CPU use --amp bf16 or off")
    return torch.bfloat16


def loader_workers(choice: int | None, world: int) -> int:
    """`--workers`, or by default the cores this process may use (all of them split over the DDP processes
    of this machine), less one for the training loop itself, between 1 and 8."""
    if choice is not None:
        return choice
    return max(1, min(8, available_cores() // max(1, world) - 1))


def native_bf16(device: torch.device) -> bool:
    """Whether a CUDA device computes in bfloat16 natively (compute capability 8.0 or higher)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _versions() -> dict[str, Any]:
    return {
        "animegan": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }


def _write_config(run_dir: Path, config: TrainConfig, manifest_sha: str, world: int, total_steps: int) -> None:
    path = run_dir / CONFIG_NAME
    doc = {
        "config": config.model_dump(mode="json"),
        "total_steps": total_steps,  # planned when this invocation started (`animegan runs` reads it)
        "versions": _versions(),
        "dataset_manifest_sha256": manifest_sha,
        "world_size": world,
        "written": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if path.exists():  # a resume: keep the history of when and with what it was continued
        try:
            old = json.loads(path.read_text())
            history = old.get("resumed")  # a hand-edited file may hold anything here: the history restarts then
            doc["created"] = old.get("created", old.get("written"))
            doc["resumed"] = [*(h for h in history if isinstance(h, str))] if isinstance(history, list) else []
            doc["resumed"].append(doc["written"])
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
    else:
        doc["created"] = doc["written"]
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())


def _saved_world_size(run_dir: Path, default: int) -> int:
    """The process count config.json recorded (checkpoints older than their own `world_size` field)."""
    try:
        return int(json.loads((run_dir / CONFIG_NAME).read_text()).get("world_size", default))
    except (OSError, ValueError, TypeError, AttributeError):
        return default


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed run logged after the checkpoint we resume from (and a torn last line)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def _tensorboard(run_dir: Path, step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional (pip install animegan[tensorboard])
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=step or None)


@torch.no_grad()
def _generate_u8(recipe: Recipe, generator: nn.Module, photos: torch.Tensor) -> torch.Tensor:
    """The generator's versions of `photos` ([N, 3, S, S] in [-1, 1]) in eval mode, as `[N, S, S, 3] uint8` on CPU."""
    was_training = generator.training
    generator.eval()
    try:
        out = recipe.generate(generator, photos).float().clamp(-1, 1)
    finally:
        generator.train(was_training)
    return _to_u8(out)


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    """`[N, 1 or 3, H, W]` in [-1, 1] -> `[N, H, W, 3] uint8` on CPU (one channel is shown as gray)."""
    x = x.float().expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.float()
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()


@torch.no_grad()
def _write_samples(path: Path, recipe: Recipe, generator: nn.Module, photos: torch.Tensor) -> None:
    """One row per `recipe.sample_rows` (by default the photos on top, the generator's versions below),
    one column per held-out image; `photos` [N, 3, S, S] in [-1, 1]."""
    was_training = generator.training
    generator.eval()
    try:
        rows = recipe.sample_rows(generator, photos)
    finally:
        generator.train(was_training)
    grid = torch.cat([torch.cat(list(_to_u8(row)), dim=1) for row in rows], dim=0)  # [rows*S, N*S, 3]
    write_image(path, grid.numpy())


def _evaluate(recipe: Recipe, generator: nn.Module, photos: torch.Tensor) -> tuple[dict[str, float], dict[str, float]]:
    """Held-out evaluation: (means of the paired metrics against the photos, output_stats of the outputs)."""
    from ..evaluation.evaluate import paired_metrics

    out = _generate_u8(recipe, generator, photos).numpy()
    ref = _to_u8(photos).numpy()
    rows = [paired_metrics(r, o) for r, o in zip(ref, out)]
    means = {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
    means.update(recipe.held_out_metrics(generator, photos))
    stats = output_stats(out)
    # What the targets themselves clip: a colorizer's white paper is 255 by right, not a saturation fault.
    stats["target_saturated"] = output_stats(ref)["saturated"]
    return means, stats

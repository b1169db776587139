"""`animegan colorize`: colour line-art sketches in the colour style of a reference, with a Style2paints model.

- Sketches: image files or folders (searched recursively, structure kept under `--out`); grayscale, RGB,
  RGBA (transparent paper becomes white) or white-on-black (`invert`, auto-detected by default).
- References: one image for every sketch, or a folder paired by name (same relative path, or the same
  file name, whatever the suffix). Each reference's style vector (VGG19 fc1) is computed once.
- Sizes: any. The network sees the sketch at the scale it was trained at (its short side scaled to the
  export's `train_short_side`, long side at most DEFAULT_MAX_SIDE), or with its long side at most `max_side`
  when that is given (or the weights do not record a scale); the colour is scaled back to the sketch's size and, with
  `keep_lines` (the default), the sketch's own lines are multiplied over it at full resolution, so the
  lines a user drew survive exactly. Padding to the network's multiple is white paper, cropped off.
- Batches: sketches of equal size with the same reference run together, `batch_size` at a time.
- Nothing is lost: outputs are written atomically, never over an input; an output made from the same sketch,
  reference, weights content and pixel-changing options (`made_with`'s record) is skipped, so a killed run
  goes on where it stopped and a run with another `--match-colors` or reference redoes what it changes;
  unreadable sketches are reported one line each and the rest colored (exit 1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import InputError, PartialFailure
from ..models.cpu_speed import accelerate, tune_allocator
from ..data.references import square_reference
from ..fileio import is_image_path, iter_files, read_image, remove_stale_temporaries, write_image
from ..progress import Reporter, plural
from .color_match import MATCH_CHOICES, match_colors
from .engine import emulated_precision_warning, precision_verdict, resolve_device, resolve_precision
from .made_with import MadeWith, input_signature, recipe_key, weights_sha256
from .sizing import CHECK_SIDE
from .stylize import StylizeSummary, _Job, check_format, plan_jobs, resolve_weights, select_jobs, write_failed

INVERT_CHOICES = ("auto", "on", "off")
DEFAULT_MAX_SIDE = 1024
PALETTE_SIDE = 512  # a reference's colour statistics for --match-colors are taken at this long side at most
# `auto` (the default): `palette` for a colorizer whose own training found it following its references loosely
# (`loose_following`), the network's own colours (`off`) for one that follows them, or whose file says nothing.
COLORIZE_MATCH_CHOICES = ("auto", *MATCH_CHOICES)


@dataclass
class ColorizeOptions:
    reference: Path  # an image for every sketch, or a folder paired by name
    weights: Path | None = None  # run folder or .safetensors; None: the newest colorizer run under runs_dir
    out_dir: Path = Path("colorized")
    format: str | None = None  # png | jpg | webp; None keeps each sketch's format
    keep_lines: bool = True
    match_colors: str = "auto"  # auto | off | lab | histogram | palette: the network's colours matched to the reference's (color_match)
    invert: str = "auto"  # auto | on | off: white lines on black
    max_side: int | None = None  # None: the weights' training scale (train_short_side), else DEFAULT_MAX_SIDE
    batch_size: int = 4
    device: str = "auto"
    precision: str = "auto"  # auto (fp16 on CUDA, bf16 on CPUs that compute it natively, checked once) | fp32 | fp16 | bf16
    vgg_weights: str | None = None  # None: what the weights file records (imagenet, random or a path)
    overwrite: bool = False
    runs_dir: Path = Path("runs")
    fast_cpu: bool = True  # NNPACK convolutions and the allocator setting on CPU, as stylize


# What a colorize run did: the same counts as stylize's (done, skipped, failed, outputs, weights, device, seconds).
ColorizeSummary = StylizeSummary


# ---- sketches and references --------------------------------------------------------------------


def sketch_lines(rgb: np.ndarray, invert: str = "auto") -> np.ndarray:
    """`[H, W, 3] uint8` sketch -> `[H, W] uint8` lines, dark on white paper.

    `auto` inverts a sketch whose paper is dark (white lines on black: the median pixel is paper, since
    lines cover a small part of a drawing).
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if invert == "on" or (invert == "auto" and np.median(gray) < 128):
        gray = 255 - gray
    return gray


# Line art is mostly plain paper: at least this share of its pixels near white (after `sketch_lines`) and grey.
# A photo or a finished colour picture has far less (measured: scikit-image's photos 2-24%, the project's sample
# photos 0-32%, Hayao frames 1-9%; XDoG sketches of scikit-image's photos 76-92%); stylize is the command for those.
PAPER_SHARE = 0.5
PAPER_LEVEL = 200
PAPER_CHROMA = 40


def paper_share(rgb: np.ndarray, lines: np.ndarray) -> float:
    """The share of `rgb`'s pixels that are plain paper: light in `lines` (`[H, W]`, dark on white) and without colour."""
    chroma = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return float(np.mean((lines >= PAPER_LEVEL) & (chroma < PAPER_CHROMA)))


def _rel_key(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if root != path else Path(path.name)
    return str(rel.with_suffix("")).lower()


class References:
    """Which reference image goes with which sketch: one file for all, or a folder paired by name."""

    def __init__(self, reference: Path):
        self.reference = Path(reference)
        if self.reference.is_file():
            self.single: Path | None = self.reference
            return
        if not self.reference.is_dir():
            raise InputError(self.reference, "no such reference image or folder")
        self.single = None
        files = [p for p, _ in iter_files([self.reference], is_image_path)]
        if not files:
            raise InputError(self.reference, "reference folder has no images")
        self.by_rel = {_rel_key(p, self.reference): p for p in files}
        by_name: dict[str, list[Path]] = {}
        for p in files:
            by_name.setdefault(p.stem.lower(), []).append(p)
        self.by_name = {k: v[0] for k, v in by_name.items() if len(v) == 1}  # ambiguous names do not pair

    def for_sketch(self, sketch: Path, root: Path) -> Path:
        if self.single is not None:
            return self.single
        found = self.by_rel.get(_rel_key(sketch, root)) or self.by_name.get(sketch.stem.lower())
        if found is None:
            raise InputError(sketch, f"no reference for it in {self.reference} (pairs by relative path or file name)")
        return found


# ---- the command ---------------------------------------------------------------------------------


def load_style_network(info: dict, weights: Path, spec: str | None, log) -> torch.nn.Module:
    """The VGG19 fc1 network the colorizer was trained with: `spec`, or what its description records.

    A colorizer's input includes the style vector, so another VGG19 would give it vectors it never saw;
    the description's fingerprint of the training VGG is checked and a mismatch refused.
    """
    from ..models.vgg import build_vgg_fc1

    meta = info.get("meta") or {}
    spec = spec or meta.get("vgg_weights") or "imagenet"
    if spec not in ("imagenet", "random") and not Path(spec).is_file():
        raise InputError(weights, f"was trained with the VGG19 file {spec}, which is not here; pass --vgg-weights PATH "
                                  f"to a copy (torchvision's vgg19-dcbb9e9d.pth)")
    vgg = build_vgg_fc1(spec, log=log)
    want = meta.get("vgg_fingerprint")
    if want and vgg.fingerprint() != want:
        raise InputError(weights, f"was trained with other VGG19 weights ({meta.get('vgg_weights', '?')}, fingerprint "
                                  f"{want}) than --vgg-weights {spec} ({vgg.fingerprint()}); pass the same file")
    return vgg


def colorize(inputs: Iterable[str | Path], options: ColorizeOptions, reporter: Reporter | None = None) -> ColorizeSummary:
    """Colour every sketch under `inputs` into `options.out_dir`. See the module docstring."""
    from ..models.weight_files import weights_fingerprint

    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    check_format(options.format)
    if options.invert not in INVERT_CHOICES:
        raise InputError(None, f"--invert must be one of {', '.join(INVERT_CHOICES)}, not {options.invert!r}")
    if options.match_colors not in COLORIZE_MATCH_CHOICES:
        raise InputError(None, f"--match-colors must be one of {', '.join(COLORIZE_MATCH_CHOICES)}, not {options.match_colors!r}")
    refs = References(options.reference)
    remove_stale_temporaries(Path(options.out_dir))
    jobs, listing_failures = plan_jobs(inputs, options, reporter, accept=is_image_path)  # type: ignore[arg-type]
    summary = ColorizeSummary(failed=listing_failures)

    weights = resolve_weights(options.weights, options.runs_dir, kind="colorizer")
    weights_mtime = weights_fingerprint(weights)
    paired: dict[Path, Path] = {}  # sketch -> its reference
    for j in jobs:
        try:
            paired[j.src] = refs.for_sketch(j.src, j.root or j.src)
        except InputError as exc:
            reporter.warn(str(exc))
            summary.failed += 1
    jobs = [j for j in jobs if j.src in paired]
    made = MadeWith(Path(options.out_dir))
    key_of = _recipe_keys(weights, options, paired)

    def newest(job: _Job) -> float:  # the old rule's date to beat, in output folders from before the record
        try:
            return max(weights_mtime, paired[job.src].stat().st_mtime)
        except OSError:
            return float("inf")  # the reference is gone: redone, and failing with one line

    fresh = lambda job: made.fresh(job.src, job.dst, key_of(job), newest(job))  # noqa: E731
    todo = [(j, paired[j.src]) for j in select_jobs(jobs, options.overwrite, newest, reporter, summary, fresh=fresh)]
    summary.weights = weights
    if not todo:
        summary.seconds = time.perf_counter() - t0
        return _finish(summary)
    try:
        _load_and_colorize(todo, weights, options, reporter, summary, lambda job: made.add(job.src, job.dst, key_of(job)))
    finally:
        made.flush()
    summary.seconds = time.perf_counter() - t0
    return _finish(summary)


def _recipe_keys(weights: Path, options: ColorizeOptions, paired: dict[Path, Path]) -> Callable[[_Job], str]:
    """`key_of(job)`: the `made_with` key of a sketch's output: the weights' content, the options that change its
    pixels, and its reference (path, size and modification time: another reference or an edited one redoes it)."""
    sha = weights_sha256(weights)
    pixels = {"command": "colorize", "keep_lines": options.keep_lines, "match_colors": options.match_colors,
              "invert": options.invert, "max_side": options.max_side, "precision": options.precision,
              "vgg_weights": options.vgg_weights}
    keys: dict[Path, str] = {}

    def key_of(job: _Job) -> str:
        ref = paired[job.src]
        if ref not in keys:
            try:
                signature = [os.path.abspath(ref), *input_signature(ref)]
            except OSError:
                signature = None  # gone: its sketches are redone (and fail with one line each)
            keys[ref] = recipe_key(sha, {**pixels, "reference": signature})
        return keys[ref]

    return key_of


def _load_and_colorize(todo: list[tuple[_Job, Path]], weights: Path, options: ColorizeOptions, reporter: Reporter,
                       summary: ColorizeSummary, made: Callable[[_Job], None]) -> None:
    """Load the colorizer and its VGG19 and colour `todo`; `made(job)` notes each written output in the folder's record."""
    from ..models.weights import load_colorizer
    from .onnx_engine import OnnxColorizer, is_onnx_file, onnx_device

    device = resolve_device(options.device)
    channels_last = False
    if is_onnx_file(weights):
        # An export of `animegan export` under ONNX Runtime; the style vectors still come from PyTorch's VGG19.
        if onnx_device(weights, options.precision, options.device) == "cpu":  # no CUDA provider in this ONNX Runtime
            device = torch.device("cpu")
        dtype = torch.float32
        loaded = OnnxColorizer(weights, device)
        model = loaded
        engine = f"ONNX Runtime ({loaded.provider})"
    else:
        dtype = resolve_precision(options.precision, device)
        if line := emulated_precision_warning(options.precision, device):
            reporter.warn(line)
        loaded = load_colorizer(weights, device=device)
        model = loaded.model
        engine = f"device {device}, precision {str(dtype).replace('torch.', '')}"
    vgg = load_style_network(loaded.info, loaded.source, options.vgg_weights, reporter.info).to(device)
    summary.weights, summary.device = loaded.source, str(device)
    if device.type == "cpu" and options.fast_cpu:
        tune_allocator()
        # NNPACK where it pays off (AVX2 CPUs); elsewhere oneDNN, whose convolutions here measured 11%
        # faster in channels_last (512x512 sketch: 245 ms against 274 ms).
        network = model if isinstance(model, torch.nn.Module) else None  # None: ONNX Runtime runs the colorizer
        accelerated = accelerate(vgg) + (accelerate(network) if network is not None else 0)
        if network is not None and accelerated == 0:
            channels_last = True
            network.to(memory_format=torch.channels_last)
    reporter.info(f"weights {loaded.source} ({loaded.arch}), {engine}")
    train_short_side = (loaded.info.get("meta") or {}).get("train_short_side")
    train_short_side = int(train_short_side) if isinstance(train_short_side, (int, float)) and 16 <= train_short_side <= 8192 else None
    if options.max_side is None and train_short_side:
        reporter.info(f"working scale: short side {train_short_side} px, as trained (--max-side to choose)")
    loose = loose_following(loaded.info)
    if options.match_colors == "auto":
        options = replace(options, match_colors=resolve_match("auto", loaded.info))
        if loose:
            reporter.info(f"--match-colors auto: palette, as {loose}; --match-colors off gives the network's own colours")
    elif options.match_colors == "off" and loose:
        reporter.info(f"{loose}: --match-colors palette gives each output its reference's colours")
    _colorize_all(todo, model, vgg, device, options, reporter, summary, channels_last, dtype, train_short_side, made)


def resolve_match(mode: str, info: dict) -> str:
    """The colour matching `mode` stands for with a colorizer described by `info`: `auto` is `palette` for one its
    own training found following its references loosely, else `off`; the other modes are themselves."""
    if mode != "auto":
        return mode
    return "palette" if loose_following(info) else "off"


def loose_following(info: dict) -> str | None:
    """Why a colorizer follows its references loosely, by its own training's figures; None when it follows them or
    its file does not say.

    The export carries the run's newest held-out evaluation (`meta.held_out`); in its cross-reference protocol a
    `ref_nearest` under 1 means some outputs came nearer another reference's colour histogram than their own (the
    issue-19 criterion): what a short CPU run gives (docs/colorize.md), and what `--match-colors palette` mends.
    """
    held_out = (info.get("meta") or {}).get("held_out") or {}
    nearest, step = held_out.get("ref_nearest"), held_out.get("step")
    if not isinstance(nearest, (int, float)) or not 0 <= nearest < 1:
        return None
    return (f"this colorizer follows its references loosely (in its training's held-out evaluation, step {step}, "
            f"{1 - nearest:.0%} of its outputs came nearer another reference's colours than their own)")


def _finish(summary: ColorizeSummary) -> ColorizeSummary:
    if summary.failed:
        raise PartialFailure(f"{plural(summary.failed, 'sketch', 'sketches')} failed; {summary.done} colored, "
                             f"{summary.skipped} skipped")
    return summary


def network_size(h: int, w: int, max_side: int | None, train_short_side: int | None = None) -> tuple[int, int]:
    """The size the network sees: with `max_side`, the sketch's scaled down (never up) so the long side is at most
    `max_side`; else scaled (up or down) so that its short side is `train_short_side`, the scale the model was
    trained at, with the long side at most DEFAULT_MAX_SIDE; else as with DEFAULT_MAX_SIDE."""
    if max_side is None and train_short_side:
        s = min(train_short_side / min(h, w), DEFAULT_MAX_SIDE / max(h, w))
    else:
        s = min(1.0, (max_side or DEFAULT_MAX_SIDE) / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _to_input(lines: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`[H, W] uint8` lines -> `[1, h, w] float32` in [-1, 1] at the network's size (area filter: thin
    lines turn grey rather than vanish)."""
    h, w = size
    if (h, w) != lines.shape:
        lines = cv2.resize(lines, (w, h), interpolation=cv2.INTER_AREA)
    return (lines.astype(np.float32) / 127.5 - 1.0)[None]


def finish_colour(colour: np.ndarray, lines: np.ndarray, keep_lines: bool) -> np.ndarray:
    """Network colour `[h, w, 3] uint8` -> the output at the sketch's size `[H, W, 3] uint8`, with the
    sketch's lines `[H, W] uint8` multiplied over it when `keep_lines`."""
    H, W = lines.shape
    if colour.shape[:2] != (H, W):
        colour = cv2.resize(colour, (W, H), interpolation=cv2.INTER_CUBIC)
    if not keep_lines:
        return colour
    out = colour.astype(np.float32) * (lines.astype(np.float32)[:, :, None] / 255.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@torch.no_grad()
def _precision_changes_output(model: torch.nn.Module, x: torch.Tensor, style: torch.Tensor, dtype: torch.dtype,
                              device: torch.device) -> str | None:
    """One line when `dtype` changes the colorizer's output for the sketch `x` (`[1, 1, h, w]` in [-1, 1], scaled
    to at most CHECK_SIDE px) by more than engine.REDUCED_PRECISION_TOLERANCE levels on average, or overflows; else None."""
    h, w = x.shape[-2:]
    s = min(1.0, CHECK_SIDE / max(h, w))
    if s < 1:
        size = (max(32, round(h * s) // 32 * 32), max(32, round(w * s) // 32 * 32))
        x = torch.nn.functional.interpolate(x.float(), size=size, mode="area")
    with torch.inference_mode():
        exact = model(x, style).float()
        with torch.autocast(device.type, dtype=dtype):
            reduced = model(x, style).float()
    return precision_verdict(reduced, exact, dtype, "colorizer")


def _colorize_all(todo: list[tuple[_Job, Path]], model: torch.nn.Module, vgg: torch.nn.Module, device: torch.device,
                  options: ColorizeOptions, reporter: Reporter, summary: ColorizeSummary, channels_last: bool = False,
                  dtype: torch.dtype = torch.float32, train_short_side: int | None = None,
                  made: Callable[[_Job], None] = lambda job: None) -> None:
    styles: dict[Path, torch.Tensor] = {}  # reference -> [1, 4096], computed once, in fp32
    palettes: dict[Path, np.ndarray] = {}  # reference -> [h, w, 3] uint8 (long side <= PALETTE_SIDE): what match_colors matches
    fell_back = False
    checked = options.precision != "auto"  # a precision chosen by auto is checked once against fp32

    def network(x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # [B, 1, h, w], [B, 4096] -> [B, 3, h, w] in [-1, 1]. Half precision where asked; a batch whose
        # output overflowed (no normalization layers bound the activations) is redone in fp32, said once.
        nonlocal fell_back, dtype, checked
        if dtype != torch.float32 and not checked:
            checked = True
            line = _precision_changes_output(model, x[:1], style[:1], dtype, device)
            if line:
                reporter.info(line)
                dtype = torch.float32
        if dtype != torch.float32:
            with torch.autocast(device.type, dtype=dtype):
                y = model(x, style).float()
            if bool(torch.isfinite(y).all()):
                return y
            if not fell_back:
                reporter.warn(f"{str(dtype).replace('torch.', '')} overflowed in the colorizer; those sketches are redone in fp32")
                fell_back = True
        return model(x, style).float()

    def style_of(ref: Path) -> torch.Tensor:
        if ref not in styles:
            whole = read_image(ref)
            rgb = square_reference(whole)  # [S, S, 3] uint8: fc1 sees 224x224, never a squashed image
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)
            styles[ref] = vgg(x)
            if options.match_colors != "off":  # the whole reference's colours, not only the square fc1 sees
                h, w = whole.shape[:2]
                s = min(1.0, PALETTE_SIDE / max(h, w))
                size = (max(1, round(w * s)), max(1, round(h * s)))  # a 3000x2 reference keeps a column
                palettes[ref] = whole if s == 1 else cv2.resize(whole, size, interpolation=cv2.INTER_AREA)
        return styles[ref]

    reporter.start("colorize", "colorize", total=len(todo))
    pending: dict[tuple[int, int, Path], list[tuple[_Job, np.ndarray]]] = {}

    def run(key: tuple[int, int, Path]) -> None:
        group = pending.pop(key)
        h, w, ref = key
        try:
            style = style_of(ref)
        except InputError as exc:
            for job, _ in group:
                reporter.warn(f"{job.src}: not colored: {exc}")
                summary.failed += 1
                reporter.advance("colorize", 1)
            return
        x = torch.from_numpy(np.stack([_to_input(lines, (h, w)) for _, lines in group])).to(device)  # [B, 1, h, w] in [-1, 1]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = network(x, style.expand(len(group), -1))  # [B, 3, h, w] in [-1, 1]
        colours = ((y.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for (job, lines), colour in zip(group, colours):
            try:
                if options.match_colors != "off":
                    colour = match_colors(colour, palettes[ref], options.match_colors)
                write_image(job.dst, finish_colour(colour, lines, options.keep_lines))
                made(job)
                summary.done += 1
                summary.outputs.append(job.dst)
            except (OSError, InputError) as exc:
                write_failed(exc, job.dst, summary, reporter)
            reporter.advance("colorize", 1)

    for job, ref in todo:
        if reporter.should_abort():
            break
        try:
            rgb = read_image(job.src)
            lines = sketch_lines(rgb, options.invert)
            share = paper_share(rgb, lines)
            if share < PAPER_SHARE:
                reporter.warn(f"{job.src}: does not look like line art (only {share:.0%} of it is plain paper: a photo or a "
                              f"coloured picture?); coloured from its edges all the same (`animegan stylize` is for photos)")
        except InputError as exc:
            reporter.warn(str(exc))
            summary.failed += 1
            reporter.advance("colorize", 1)
            continue
        h, w = network_size(*lines.shape, options.max_side, train_short_side)
        key = (h, w, ref)
        pending.setdefault(key, []).append((job, lines))
        if len(pending[key]) >= options.batch_size:
            run(key)
        elif sum(map(len, pending.values())) > 4 * options.batch_size:
            run(next(iter(pending)))  # many sizes: bound what waits in memory, oldest group first
    for key in list(pending):
        run(key)
    reporter.finish("colorize")

"""`animegan stylize`: run a trained generator over images, folders and videos.

- Inputs: image files, folders (recursive; the relative structure is kept under the output
  folder) and videos (by extension). Outputs keep the input's stem.
- Any size: the output has the input's size (after the optional `max_side` downscale). Images
  that would not fit in memory are stylized tile by tile (`pipelines.inference.tiling`), so are all images
  when `tile` is set.
- Videos go through `pipelines.inference.video_stage`: frames batched, stabilized against flicker
  (`pipelines.inference.stabilize`), encoded with the source's audio and timestamps.
- Speed: images of equal size are batched; reading and writing run in threads beside the
  network; on CUDA channels_last and fp16/bf16 autocast; on CPU `pipelines.models.cpu_speed` keeps
  large blocks mapped and sends the dense stride-1 convolutions through NNPACK (Winograd/FFT) when
  this torch build has it (checked against the plain convolution before use).
- Resumable: an output made from the same input, weights content and pixel-changing options is skipped
  (`pipelines.inference.made_with`); in folders from before that record, one newer than its input and weights.
- Safe: inputs are never written to; an output path equal to an input path is refused up front;
  outputs are written atomically; each unreadable input is one warning, the rest go on, and
  `PartialFailure` is raised at the end if any failed.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import InputError, PartialFailure, output_error, stops_all_writes
from ..fileio import (is_image_path, is_video_path, iter_files, read_image, remove_stale_temporaries,
                      write_image)
from ..data.video import parse_time
from ..progress import Reporter, plural
from .stabilize import DEFAULT_STRENGTH
from .made_with import MadeWith, recipe_key, weights_sha256
from .onnx_engine import OnnxEngine, is_onnx_file, onnx_device
from .sizing import DEFAULT_OVERLAP
from .tile_blend import tiles_for
from .video_encode import CHROMA
from .video_stage import VideoSettings, check_time_range, stylize_video

if TYPE_CHECKING:
    from .engine import Engine

FORMATS = ("png", "jpg", "webp")

@dataclass
class StylizeOptions:
    weights: Path | None = None  # run folder, .safetensors export or community .pt; None: latest run
    out_dir: Path = Path("stylized")
    format: str | None = None  # png | jpg | webp; None keeps each input's format
    max_side: int | None = None  # downscale so the long side is at most this (never upscale)
    tile: int | None = None  # tile side; None: tile only what would not fit in memory
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = 4
    device: str = "auto"
    precision: str = "auto"
    crf: int = 18
    preset: str = "medium"
    chroma: str = "420"  # video: 420 (plays everywhere) or 444 (no colour subsampling; VLC, mpv, editors)
    stabilize: float = DEFAULT_STRENGTH  # video: temporal stabilizer strength in [0, 1); 0 = frame by frame
    start: float | str = 0.0  # video only: seconds, or "HH:MM:SS[.fff]" (parsed by `stylize`)
    end: float | str | None = None
    overwrite: bool = False
    runs_dir: Path = Path("runs")
    fast_cpu: bool = True  # NNPACK convolutions on CPU when available
    max_memory: float | None = None  # GiB for activations and tiling buffers; None: from the machine
    onnx_backend: str = "auto"  # an .onnx graph's engine: auto | onnxruntime | pytorch (`_onnx_backend`)


@dataclass
class StylizeSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    outputs: list[Path] = field(default_factory=list)
    weights: Path | None = None
    device: str = "cpu"
    seconds: float = 0.0


@dataclass
class _Job:
    src: Path
    dst: Path
    video: bool
    root: Path | None = None  # the argument it was found under (the file itself for a file argument)


# ---- planning ----------------------------------------------------------------------------------


def _accept(p: Path) -> bool:
    return is_image_path(p) or is_video_path(p)


def _out_path(src: Path, root: Path, out_dir: Path, fmt: str | None) -> tuple[Path, bool]:
    from .video_encode import output_suffix

    video = is_video_path(src)
    rel_parent = src.parent.relative_to(root) if root != src else Path()
    if video:
        suffix = output_suffix(src)
    else:
        suffix = f".{fmt}" if fmt else (src.suffix.lower() if is_image_path(src) else ".png")
    return out_dir / rel_parent / f"{src.stem}{suffix}", video


def plan_jobs(inputs: Iterable[str | Path], options: StylizeOptions, reporter: Reporter,
              accept: Callable[[Path], bool] = _accept) -> tuple[list[_Job], int]:
    """The (input, output) pairs; returns them and how many inputs could not even be listed.

    `options` needs `out_dir` and `format`; `accept` picks the files (images and videos by default).

    Raises `InputError` when an output would be one of the inputs (never overwrite a user's file).
    """
    jobs: list[_Job] = []
    failed = 0
    out_root = Path(options.out_dir).resolve()
    for arg in inputs:
        if Path(arg).is_dir() and Path(arg).resolve() == out_root:
            # Outputs would lie among the inputs (under new names with --format) and the next run over the
            # folder would take them for photos and stylize them again.
            raise InputError(options.out_dir, f"is the input folder {arg} itself: outputs would mix with the inputs; "
                                              f"choose another --out (for example {Path(arg) / 'stylized'})")
        try:
            found = list(iter_files([arg], accept))
        except InputError as exc:
            reporter.warn(str(exc))
            failed += 1
            continue
        # The output folder may sit inside an input folder (`stylize photos --out photos/anime`): what
        # is under it is this command's own output, never an input (a re-run would stylize it again).
        if Path(arg).is_dir():
            found = [(src, root) for src, root in found if not src.resolve().is_relative_to(out_root)]
        if not found and Path(arg).is_dir():
            reporter.warn(f"{arg}: folder has no {'images or videos' if accept is _accept else 'images'}")
        for src, root in found:
            dst, video = _out_path(src, root, Path(options.out_dir), options.format)
            jobs.append(_Job(src, dst, video, root))
    sources = {j.src.resolve(): j.src for j in jobs}
    for j in jobs:
        d = j.dst.resolve()
        if d in sources or (j.dst.exists() and any(_same(j.dst, s) for s in (j.src,))):
            raise InputError(options.out_dir, f"output {j.dst} would overwrite the input {sources.get(d, j.src)}; "
                                              f"choose another --out folder")
    return jobs, failed


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _fresh(job: _Job, weights_mtime: float) -> bool:
    try:
        t = job.dst.stat().st_mtime
        return t > job.src.stat().st_mtime and t > weights_mtime
    except OSError:
        return False


def check_format(fmt: str | None) -> None:
    """`--format`: None (each input's own) or one of FORMATS."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(None, f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def resolve_weights(weights: Path | None, runs_dir: Path, kind: str = "image") -> Path:
    """`--weights`, or the newest run of `kind` under `runs_dir`; `InputError` when there is none."""
    if weights is not None:
        return Path(weights)
    from ..models.weight_files import find_latest_run

    run = find_latest_run(Path(runs_dir), kind)
    if run is None:
        what = "Style2paints run found; train one (`animegan train --model style2paints`)" if kind == "colorizer" else \
            "training run found; train first (`animegan train`)"
        raise InputError(runs_dir, f"no finished {what} or pass --weights RUN|FILE")
    return run


def select_jobs(jobs: list[_Job], overwrite: bool, newest_input: Callable[[_Job], float], reporter: Reporter,
                summary: Any, fresh: Callable[[_Job], bool] | None = None) -> list[_Job]:
    """The jobs still to do: two inputs with one output name are refused (one line, `summary.failed`), and
    an up-to-date output is skipped (`summary.skipped`) unless `overwrite`: `fresh(job)` when given (stylize's
    record, `made_with`), else newer than its input and `newest_input(job)` (weights, reference)."""
    todo: list[_Job] = []
    seen: dict[Path, Path] = {}
    for j in jobs:
        key = j.dst.resolve()
        if key in seen:
            reporter.warn(f"{j.src}: skipped, its output {j.dst} is also the output of {seen[key]}")
            summary.failed += 1
            continue
        seen[key] = j.src
        if not overwrite and (fresh(j) if fresh is not None else _fresh(j, newest_input(j))):
            summary.skipped += 1
            continue
        todo.append(j)
    return todo


# ---- the command ---------------------------------------------------------------------------------


def stylize(inputs: Iterable[str | Path], options: StylizeOptions, reporter: Reporter | None = None) -> StylizeSummary:
    """Stylize every image and video under `inputs` into `options.out_dir`. See the module docstring."""
    from ..models.weight_files import weights_fingerprint

    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    check_format(options.format)
    if not 0.0 <= options.stabilize < 1.0:
        raise InputError(None, f"--stabilize must be at least 0 and below 1, not {options.stabilize:g}")
    if options.chroma not in CHROMA:
        raise InputError(None, f"--chroma must be one of {', '.join(CHROMA)}, not {options.chroma}")
    options = replace(options, start=parse_time(options.start, "--start") or 0.0, end=parse_time(options.end, "--end"))
    if options.end is not None and options.end <= options.start:
        raise InputError(None, f"--end ({options.end:g} s) must be after --start ({options.start:g} s)")
    remove_stale_temporaries(Path(options.out_dir))  # outputs (videos, mostly) a killed run was writing
    jobs, listing_failures = plan_jobs(inputs, options, reporter)
    summary = StylizeSummary(failed=listing_failures)

    weights = resolve_weights(options.weights, options.runs_dir)
    weights_mtime = weights_fingerprint(weights)
    made = MadeWith(Path(options.out_dir))
    keys = _recipe_keys(weights, options)
    key_of = lambda job: keys[job.video]  # noqa: E731
    todo = select_jobs(jobs, options.overwrite, lambda job: weights_mtime, reporter, summary,
                       fresh=lambda job: made.fresh(job.src, job.dst, key_of(job), weights_mtime))
    try:  # nothing to do (all up to date, or every video's --start past its end) returns before the engine loads
        return _run_jobs(todo, weights, options, reporter, summary, t0, lambda job: made.add(job.src, job.dst, key_of(job)))
    finally:
        made.flush()


def _recipe_keys(weights: Path, options: StylizeOptions) -> dict[bool, str]:
    """The `made_with` keys of image (False) and video (True) outputs: the weights' content and the options
    that change their pixels."""
    sha = weights_sha256(weights)
    image = {"max_side": options.max_side, "tile": options.tile, "overlap": options.overlap, "precision": options.precision}
    video = {**image, "start": options.start, "end": options.end, "crf": options.crf, "preset": options.preset,
             "chroma": options.chroma, "stabilize": options.stabilize}
    return {False: recipe_key(sha, image), True: recipe_key(sha, video)}


def _run_jobs(todo: list[_Job], weights: Path, options: StylizeOptions, reporter: Reporter, summary: StylizeSummary,
              t0: float, made: Callable[[_Job], None]) -> StylizeSummary:
    """Load the engine and stylize `todo`; `made(job)` notes each finished output in the folder's record."""
    video_settings = VideoSettings(max_side=options.max_side, batch_size=options.batch_size, start=options.start,
                                   end=options.end, crf=options.crf, preset=options.preset, chroma=options.chroma,
                                   stabilize=options.stabilize)
    images = [j for j in todo if not j.video]
    videos = []
    for job in (j for j in todo if j.video):  # a --start past a video's end is said before the engine loads
        try:
            check_time_range(job.src, video_settings)
            videos.append(job)
        except InputError as exc:
            reporter.warn(str(exc))
            summary.failed += 1
    if not images and not videos:
        summary.weights = weights
        summary.seconds = time.perf_counter() - t0
        return _finish(summary, reporter)
    engine = _make_engine(weights, images + videos, options, reporter)
    summary.weights, summary.device = engine.source, str(engine.device)
    if images:
        _stylize_images(images, engine, options, reporter, summary, made)
    for job in videos:
        if reporter.should_abort():
            break
        try:
            stylize_video(job.src, job.dst, engine, video_settings, reporter)
            summary.done += 1
            summary.outputs.append(job.dst)
            made(job)
        except InputError as exc:
            reporter.warn(str(exc))
            summary.failed += 1
    summary.seconds = time.perf_counter() - t0
    return _finish(summary, reporter)


def _make_engine(weights: Path, todo: list[_Job], options: StylizeOptions, reporter: Reporter) -> Engine | OnnxEngine:
    """The engine for `weights`: ONNX Runtime for an .onnx graph (run by PyTorch where `_onnx_backend` says so),
    PyTorch for everything else (with the reduced-precision check of `--precision auto`). Says in one line what runs
    where. An ONNX graph left to ONNX Runtime never imports PyTorch."""
    memory_budget = int(options.max_memory * 2**30) if options.max_memory else None
    if is_onnx_file(weights):
        device = onnx_device(weights, options.precision, options.device)
        onnx_engine = OnnxEngine(weights, device, tile=options.tile, overlap=options.overlap, memory_budget=memory_budget)
        sample = functools.cache(lambda: _check_image(todo, options))  # read once, and only when needed
        backend = _onnx_backend(options, onnx_engine, todo, sample)
        if backend in ("pytorch", "race"):
            from .onnx_torch import UnsupportedGraph

            try:
                reporter.info(onnx_engine.use_pytorch(sample(), options.precision, race=backend == "race",
                                                      on_decided=reporter.info))
            except UnsupportedGraph as exc:
                line = f"{weights}: runs on ONNX Runtime: PyTorch cannot run it here ({exc})"
                if options.onnx_backend == "pytorch":  # asked for: a warning; chosen by auto: for information
                    reporter.warn(line)
                else:
                    reporter.info(line)
        reporter.info(f"weights {weights} ({onnx_engine.contract.describe()}), {onnx_engine.label}")
        return onnx_engine

    import torch

    from ..models.weights import load_generator
    from .engine import Engine, emulated_precision_warning, resolve_device, resolve_precision

    device = resolve_device(options.device)
    dtype = resolve_precision(options.precision, device)
    if line := emulated_precision_warning(options.precision, device):
        reporter.warn(line)
    loaded = load_generator(weights, device="cpu")
    engine = Engine(loaded.model, device, dtype, fast_cpu=options.fast_cpu, tile=options.tile,
                    overlap=options.overlap, memory_budget=memory_budget)
    engine.source = loaded.source
    if options.precision == "auto" and dtype != torch.float32:
        # A reduced precision chosen for speed must not change what the model draws: checked once, on the first
        # image (or a sample photo when only videos were given), before anything is written.
        fallback = engine.check_precision(_check_image(todo, options))
        if fallback:
            reporter.info(fallback)
    reporter.info(f"weights {loaded.source} ({loaded.arch}), device {device}, precision {str(engine.dtype).replace('torch.', '')}")
    return engine


def _finish(summary: StylizeSummary, reporter: Reporter) -> StylizeSummary:
    if summary.failed:
        raise PartialFailure(f"{summary.failed} input(s) failed; {summary.done} stylized, {summary.skipped} skipped")
    return summary


ONNX_BACKENDS = ("auto", "onnxruntime", "pytorch")
# `auto` considers PyTorch for an ONNX graph when ONNX Runtime would take at least this long for the job (its time on
# the check image, per pixel, times the job's pixels), or for any video: PyTorch's import and the output check (2.3-3.2 s
# on a 2-core AVX2 EPYC, about 1 s on an AVX-512 one) are then paid back by convolutions 1.7-1.8x faster (NNPACK) or
# about 2.5x (native bf16). Measured (docs/benchmarks.md, eighteenth session): four 512x512 photos through an
# AnimeGANv2 export (ONNX Runtime about 17 s) 1.22x faster on PyTorch; six photos of about 0.18 MP through a White-box
# export (ONNX Runtime about 5 s) 1.18x slower.
PYTORCH_FROM_ORT_SECONDS = 8.0  # re-checked by bench/bench_onnx_backend.py
# Below this many pixels in all (about four 512x512 photos) the job stays on ONNX Runtime without timing it.
PYTORCH_FROM_PIXELS = 1_000_000
# A job of at least this many images (or any video) races the two engines on its first forwards (onnx_engine._Race):
# the race costs the slower engine's extra time on one forward, about 5 % of such a job where PyTorch is 1.8x faster
# (11 % at 8 images: AnimeGANv2's export, 23.5 s on PyTorch, 26.1 s raced). A smaller job takes PyTorch on the CPU's
# rule alone: right for the AnimeGANv2 and White-box exports; a graph ONNX Runtime runs faster (AnimeGANv3's
# tiny_Cute) reaches the 8 s only with more images than this, so it is always raced.
RACE_FROM_IMAGES = 16  # re-checked by bench/bench_onnx_backend.py


def _onnx_backend(options: StylizeOptions, engine: OnnxEngine, todo: list[_Job], sample: Callable[[], np.ndarray]) -> str:
    """Which engine runs an ONNX graph: the user's choice, else (`auto`) PyTorch on a CPU where its convolutions
    usually beat ONNX Runtime's (NNPACK on AVX2 CPUs; bf16 on CPUs that compute it natively, with `--precision auto`)
    when the job is large enough to pay for importing it (PYTORCH_FROM_ORT_SECONDS); ONNX Runtime otherwise.
    "race" (auto, for videos and jobs of RACE_FROM_IMAGES images or more): the faster of the two on the job's first
    forwards runs the rest."""
    if options.onnx_backend not in ONNX_BACKENDS:
        raise InputError(None, f"--onnx-backend must be one of {', '.join(ONNX_BACKENDS)}, not {options.onnx_backend!r}")
    if options.onnx_backend != "auto":
        return options.onnx_backend
    if engine.device != "cpu" or not options.fast_cpu:
        return "onnxruntime"
    has_video = any(j.video for j in todo)
    if not has_video:
        pixels = _PixelCount(todo, options.max_side)
        if not pixels.reaches(PYTORCH_FROM_PIXELS):
            return "onnxruntime"
        per_pixel = engine.reference_run(sample())  # its output is kept: use_pytorch checks against it
        if not pixels.reaches(PYTORCH_FROM_ORT_SECONDS / per_pixel):  # pixels that take ONNX Runtime that long
            return "onnxruntime"
    from ..models.cpu_speed import native_cpu_bf16, nnpack_pays_off

    if not (nnpack_pays_off() or (native_cpu_bf16() and options.precision == "auto")):
        return "onnxruntime"
    return "race" if has_video or sum(not j.video for j in todo) >= RACE_FROM_IMAGES else "pytorch"


def _image_pixels(todo: list[_Job], max_side: int | None) -> Iterator[float]:
    """The pixels of each of the job's images (after `--max-side`), read from their headers as they are asked for.
    An image whose header cannot be read counts as nothing (it fails with one line in its turn)."""
    from PIL import Image

    for job in todo:
        if job.video or not os.path.isfile(job.src):  # a FIFO or device would block the header read
            continue
        try:
            with Image.open(job.src) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - PIL raises many kinds for a damaged or foreign file
            continue
        s = min(1.0, max_side / max(w, h)) if max_side else 1.0
        yield w * h * s * s


class _PixelCount:
    """How many pixels the job's images hold, read from their headers only as far as a question needs."""

    def __init__(self, todo: list[_Job], max_side: int | None):
        self._each = _image_pixels(todo, max_side)
        self.total = 0.0

    def reaches(self, enough: float) -> bool:
        while self.total < enough:
            n = next(self._each, None)
            if n is None:
                return False
            self.total += n
        return True


def _check_image(todo: list[_Job], options: StylizeOptions) -> np.ndarray:
    """The image an engine is checked on before anything is written (`[H, W, 3]` uint8): the first image of the
    job, or a sample photo when only videos were given (or the first image cannot be read: reported in its turn)."""
    first = next((j for j in todo if not j.video), None)
    try:
        return _load(first, options.max_side) if first is not None else _sample_photo()
    except InputError:
        return _sample_photo()


def _sample_photo() -> np.ndarray:
    """A real photo that ships with scikit-image (`[H, W, 3]` uint8): the precision check's input for videos."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::2, ::2])


def _load(job: _Job, max_side: int | None) -> np.ndarray:
    rgb = read_image(job.src)  # [H, W, 3] uint8 RGB; EXIF, gray, alpha, 16-bit handled
    return _downscale(rgb, max_side)


def _downscale(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return rgb


def _prefetch(jobs: list[_Job], fn: Callable[[_Job], np.ndarray], pool: ThreadPoolExecutor,
              depth: int) -> Iterator[tuple[_Job, Future]]:
    """Yield `(job, future)` in order while keeping up to `depth` reads in flight."""
    pending: list[tuple[_Job, Future]] = []
    it = iter(jobs)
    for job in it:
        pending.append((job, pool.submit(fn, job)))
        if len(pending) >= depth:
            yield pending.pop(0)
    yield from pending


def write_failed(exc: OSError | InputError, dst: Path, summary: StylizeSummary, reporter: Reporter) -> None:
    """One output could not be written: where nothing more can be (a full disk, a read-only folder) the command
    stops in one line naming the folder; otherwise the output is counted as failed, said in one line, and the
    rest goes on."""
    if isinstance(exc, OSError) and stops_all_writes(exc):
        raise output_error(dst.parent, exc, f"{plural(summary.done, 'output')} written before it are kept") from None
    reporter.warn(f"{dst}: could not write ({exc})")
    summary.failed += 1


def _stylize_images(jobs: list[_Job], engine: Engine | OnnxEngine, options: StylizeOptions, reporter: Reporter,
                    summary: StylizeSummary, made: Callable[[_Job], None] = lambda job: None) -> None:
    reporter.start("images", "images", total=len(jobs))
    writes: list[tuple[_Job, Future]] = []
    batch: list[tuple[_Job, np.ndarray]] = []
    t_start, n_done = time.perf_counter(), 0

    def submit(job: _Job, out: np.ndarray) -> None:
        writes.append((job, wpool.submit(write_image, job.dst, out)))

    def collect(wait_all: bool) -> None:
        """Account for finished writes, in order; the first that shows no more can be written (a full disk, a
        read-only folder) ends the command in one line instead of one warning per remaining photo."""
        while writes and (wait_all or writes[0][1].done()):
            job, fut = writes.pop(0)
            try:
                fut.result()
                summary.done += 1
                summary.outputs.append(job.dst)
                made(job)
            except (OSError, InputError) as exc:
                write_failed(exc, job.dst, summary, reporter)

    def flush() -> None:
        nonlocal n_done
        if not batch:
            return
        outs = engine.stylize_batch(np.stack([b[1] for b in batch]))
        for (job, _), out in zip(batch, outs):
            submit(job, out)
        n_done += len(batch)
        reporter.advance("images", len(batch), **{"img/s": n_done / max(1e-9, time.perf_counter() - t_start)})
        batch.clear()

    with ThreadPoolExecutor(2, thread_name_prefix="read") as rpool, \
            ThreadPoolExecutor(2, thread_name_prefix="write") as wpool:
        for job, fut in _prefetch(jobs, lambda j: _load(j, options.max_side), rpool, depth=max(4, 2 * options.batch_size)):
            if reporter.should_abort():
                break
            collect(wait_all=False)
            try:
                rgb = fut.result()
            except InputError as exc:
                reporter.warn(str(exc))
                summary.failed += 1
                reporter.advance("images")
                continue
            h, w = rgb.shape[:2]
            if engine.needs_tiling(h, w):
                flush()
                side = engine.tile_side(h, w)
                n = tiles_for(h, w, side, engine.overlap)
                reporter.info(f"{job.src}: {w}x{h}, stylizing in {plural(n, 'tile')} of {side} px")
                submit(job, engine.stylize_image(rgb))
                n_done += 1
                reporter.advance("images")
                continue
            if batch and (batch[0][1].shape != rgb.shape or len(batch) >= engine.batch_limit(h, w, options.batch_size)):
                flush()
            batch.append((job, rgb))
        flush()
        collect(wait_all=True)
    reporter.finish("images")

"""`make-smooth`: the edge-smoothed twin of every style image (AnimeGAN's `e` set).

AnimeGAN's discriminator learns that blurred edges are "not anime" from copies of the style frames
whose edges were smoothed. The recipe (CartoonGAN's, shared by every AnimeGAN repository) is fixed:

1. gray = RGB->gray of the decoded colour image; edges = Canny(gray, 100, 200);
2. mask = edges dilated with a 5x5 ones kernel;
3. inside the mask, each channel gets the 5x5 Gaussian-weighted sum (`getGaussianKernel(5, 0)`
   outer product) over a reflect-101 padded copy, computed in float64 and stored by truncation;
   outside the mask the original pixel is kept.

`smooth_edges` reproduces the reference's per-pixel loop bit for bit with one separable float32
filter, which is exact for this kernel (see `_DYADIC`); a slower exact path keeps the result
identical should the kernel ever stop being dyadic.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from ..errors import AnimeganError, InputError, PartialFailure
from ..fileio import IMAGE_EXTENSIONS, decode_image, remove_stale_temporaries, sha256_bytes, write_image
from .manifest import Dataset, DerivedSource, Manifest, Record, RecordBatch
from ..processes import die_with
from ..progress import Reporter, plural

OPERATION = "smooth"
# Bumped if the recipe or its implementation ever changes output, so that old twins are rebuilt.
RECIPE = "cartoongan-edge-smooth/1"
STYLE_SET = "style"
SMOOTH_SET = "smooth"

_GAUSS_1D = cv2.getGaussianKernel(5, 0)  # [5, 1] float64, sigma 1.1, sums to 1
_GAUSS_2D = _GAUSS_1D * _GAUSS_1D.T  # [5, 5] float64, the reference's kernel
_DILATE = np.ones((5, 5), np.uint8)
_PAD = 2
# For ksize 5 and sigma 0, OpenCV returns the fixed binomial kernel [1, 4, 6, 4, 1] / 16. With
# such dyadic weights every product and partial sum (multiples of 1/256 below 256) is exact in
# float32 and float64 alike, so the order of additions cannot matter and a float32 separable
# filter followed by truncation equals the reference exactly.
_DYADIC = bool(np.all(_GAUSS_1D * 16 == np.round(_GAUSS_1D * 16)))
# Should an OpenCV ever return other weights, sums are rounded and order-dependent: values whose
# float32 result lies this close to an integer (float32 error is below ~3e-4 here) are then
# recomputed in the reference's float64 order.
_NEAR_INT = 2e-3


def edge_mask(rgb: np.ndarray) -> np.ndarray:
    """`[H, W] bool`: the dilated Canny edges of `rgb` (`[H, W, 3] uint8 RGB`)."""
    return _edge_mask_u8(rgb) != 0


def _edge_mask_u8(rgb: np.ndarray) -> np.ndarray:
    # RGB2GRAY on RGB equals BGR2GRAY on BGR: the weights follow the channel names, so the
    # reference's BGR order and our RGB order see the same gray image.
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.dilate(cv2.Canny(gray, 100, 200), _DILATE)  # [H, W] uint8, 0 or 255


def _exact_sums(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """`[n, 3] float64`: the 5x5 weighted sums at (ys, xs), added in exactly the order `np.sum`
    adds a contiguous 25-element array (eight running partial sums over strides of 8, combined
    pairwise, then the 25th term), which is what the reference loop computes."""
    terms = [
        padded[ys + dy, xs + dx].astype(np.float64) * _GAUSS_2D[dy, dx]  # [n, 3]
        for dy in range(5)
        for dx in range(5)
    ]
    r = [terms[j] + terms[8 + j] + terms[16 + j] for j in range(8)]
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + terms[24]


def smooth_edges(rgb: np.ndarray) -> np.ndarray:
    """Edge-smooth `[H, W, 3] uint8 RGB` (any size >= 1x1); returns a new `[H, W, 3] uint8 RGB`.

    Bit-exact to the reference per-pixel recipe (see the module docstring). The channels are
    filtered independently, so their order does not matter beyond the gray conversion.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"smooth_edges expects [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    mask = _edge_mask_u8(rgb)
    out = rgb.copy()
    if not cv2.countNonZero(mask):
        return out
    k = _GAUSS_1D.astype(np.float32)
    # BORDER_REFLECT_101 is numpy's 'reflect', the reference's padding (also for sides < 5 px).
    fast = cv2.sepFilter2D(rgb, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)  # [H, W, 3] >= 0
    smoothed = fast.astype(np.uint8)  # truncation = floor for non-negative values
    if not _DYADIC:
        _fix_near_integers(rgb, mask, fast, smoothed)
    cv2.copyTo(smoothed, mask, out)
    return out


def _fix_near_integers(rgb: np.ndarray, mask: np.ndarray, fast: np.ndarray, smoothed: np.ndarray) -> None:
    """Recompute, in the reference's float64 order, the values whose fast result lies within
    _NEAR_INT of an integer (their floor is uncertain); needed only for a non-dyadic kernel."""
    padded = np.pad(rgb, ((_PAD, _PAD), (_PAD, _PAD), (0, 0)), mode="reflect")
    # Shifted by one so that nothing is negative, the two sides of a nearby integer truncate differently.
    near = (fast + np.float32(1 + _NEAR_INT)).astype(np.uint16) != (fast + np.float32(1 - _NEAR_INT)).astype(np.uint16)
    flat = np.unique(np.flatnonzero(near) // 3)  # pixel indices
    if flat.size:
        ys, xs = np.divmod(flat, rgb.shape[1])
        keep = mask[ys, xs] != 0
        ys, xs = ys[keep], xs[keep]
        smoothed[ys, xs] = np.floor(_exact_sums(padded, ys, xs)).astype(np.uint8)


def resize_short_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize `[H, W, 3] uint8` so that its short side is `size`, keeping the aspect ratio."""
    h, w = rgb.shape[:2]
    if min(h, w) == size:
        return rgb
    s = size / min(h, w)
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    if h <= w:
        new_h = size
    else:
        new_w = size
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, (new_w, new_h), interpolation=interp)


# -- make-smooth -----------------------------------------------------------------------


@dataclass
class SmoothOptions:
    """Options of `animegan make-smooth`.

    - `size`: resize so the short side is `size` before smoothing; None keeps the stored size.
    - `format`: output suffix ('.png', '.jpg', ...); None keeps each source's format.
    - `workers`: worker processes; None uses every core available; 1 runs in this process.
    - `batch`: records committed to the manifest per transaction.
    """

    size: int | None = None
    format: str | None = None
    workers: int | None = None
    batch: int = 16

    def normalized_format(self) -> str | None:
        if self.format is None:
            return None
        suffix = self.format.lower()
        if not suffix.startswith("."):
            suffix = "." + suffix
        if suffix not in IMAGE_EXTENSIONS:
            raise InputError(None, f"--format {self.format!r} is not an image format; use one of {', '.join(e[1:] for e in IMAGE_EXTENSIONS)}")
        return suffix


@dataclass
class SmoothSummary:
    total: int = 0  # style records considered
    smoothed: int = 0  # twins written this run
    up_to_date: int = 0  # twins already current
    removed: int = 0  # smooth records dropped (source gone, or replaced by a twin at a new path)
    failed: list[str] = field(default_factory=list)  # one line per failed style image
    aborted: bool = False


def smooth_params(options: SmoothOptions, suffix: str) -> dict[str, Any]:
    """What a twin depends on besides its source bytes; stored in `DerivedSource.params`."""
    return {"recipe": RECIPE, "size": options.size, "format": suffix}


def twin_path(style_path: str, suffix: str) -> str:
    """`style/a/b.jpg` -> `smooth/a/b<suffix>` (the same path relative to the set folder)."""
    p = PurePosixPath(style_path)
    rel = PurePosixPath(*p.parts[1:]) if p.parts[0] == STYLE_SET and len(p.parts) > 1 else p
    return str(PurePosixPath(SMOOTH_SET) / rel.with_suffix(suffix))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class _Job:
    source_abs: str
    source_rel: str
    source_sha256: str
    target_abs: str
    target_rel: str
    size: int | None
    params: dict[str, Any]


def _init_worker(parent_pid: int) -> None:
    # Parallelism comes from the process pool; OpenCV's own threads would only compete with it.
    cv2.setNumThreads(1)
    die_with(parent_pid)  # a killed make-smooth takes its workers with it


def _smooth_one(job: _Job) -> dict[str, Any]:
    """Read, smooth and atomically write one twin; returns the record fields or {'error': line}.

    Runs in a worker process, so it returns plain data and never raises for a bad input.
    """
    try:
        try:
            data = Path(job.source_abs).read_bytes()
        except OSError as exc:
            raise InputError(job.source_abs, f"cannot read ({exc.strerror or exc})") from None
        if sha256_bytes(data) != job.source_sha256:
            raise InputError(job.source_abs, "changed since it was recorded in the manifest (run `animegan dataset --check`)")
        rgb = decode_image(data, job.source_abs)
        if job.size is not None:
            rgb = resize_short_side(rgb, job.size)
        smoothed = smooth_edges(rgb)  # [H, W, 3] uint8 RGB
        try:
            out = write_image(job.target_abs, smoothed)
        except OSError as exc:  # a full disk is about the file being written, not the style image
            raise InputError(job.target_abs, f"cannot write ({exc.strerror or exc})") from None
        return {
            "path": job.target_rel,
            "width": int(smoothed.shape[1]),
            "height": int(smoothed.shape[0]),
            "bytes": len(out),
            "sha256": sha256_bytes(out),
        }
    except AnimeganError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a decoder or encoder failing in an unexpected way: still one line
        return {"error": f"{job.source_abs}: {type(exc).__name__}: {exc}"}


def _same_size(ds: Dataset, record: Record) -> bool:
    try:
        return ds.abspath(record.path).stat().st_size == record.bytes
    except OSError:
        return False


def _is_current(ds: Dataset, twin: Record | None, style: Record, params: dict[str, Any]) -> bool:
    if twin is None or not isinstance(twin.source, DerivedSource):
        return False
    src = twin.source
    if src.operation != OPERATION or src.source != style.path or src.source_sha256 != style.sha256 or src.params != params:
        return False
    return _same_size(ds, twin)


def _plan(
    ds: Dataset, m: Manifest, options: SmoothOptions, summary: SmoothSummary, reporter: Reporter
) -> tuple[list[_Job], set[str]]:
    """The jobs to run, and the twin path every style record maps to under these options."""
    fmt = options.normalized_format()
    smooth_by_path = {r.path: r for r in m.records(SMOOTH_SET)}
    claimed: dict[str, str] = {}
    jobs: list[_Job] = []
    for style in m.records(STYLE_SET):
        summary.total += 1
        suffix = fmt or PurePosixPath(style.path).suffix.lower()
        target = twin_path(style.path, suffix)
        if target in claimed:
            line = f"{style.path}: its smooth twin {target} would collide with the twin of {claimed[target]}; use --format to keep the formats apart, or rename one"
            reporter.warn(line)
            summary.failed.append(line)
            continue
        claimed[target] = style.path
        params = smooth_params(options, suffix)
        # A style file edited or deleted behind the manifest's back goes to a worker, which
        # reports it; a stat is cheap enough to do for every image on every run.
        if _same_size(ds, style) and _is_current(ds, smooth_by_path.get(target), style, params):
            summary.up_to_date += 1
            continue
        jobs.append(_Job(str(ds.abspath(style.path)), style.path, style.sha256, str(ds.abspath(target)), target, options.size, params))
    return jobs, set(claimed)


def _mp_context() -> multiprocessing.context.BaseContext:
    # Never plain fork: a child forked while one of the parent's threads (OpenCV's pool, a
    # progress bar) holds a lock deadlocks. A fork server is started clean, with this module
    # preloaded so that each worker starts in milliseconds; spawn where there is no fork server.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _run_jobs(jobs: list[_Job], workers: int, reporter: Reporter) -> Iterator[tuple[_Job, dict[str, Any]]]:
    """Yield `(job, result)` as they finish; stops submitting when the reporter asks to abort."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            if reporter.should_abort():
                return
            yield job, _smooth_one(job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        pending: dict[Future, _Job] = {}
        queue = iter(jobs)
        # A bounded window keeps memory flat and lets an abort stop quickly.
        for job in queue:
            pending[pool.submit(_smooth_one, job)] = job
            if len(pending) >= workers * 4:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                yield job, fut.result()
            if reporter.should_abort():
                for fut in pending:
                    fut.cancel()
                return
            for job in queue:
                pending[pool.submit(_smooth_one, job)] = job
                if len(pending) >= workers * 4:
                    break


def make_smooth(dataset_root: str | Path, options: SmoothOptions, reporter: Reporter | None = None) -> SmoothSummary:
    """Write the smooth twin of every style record that lacks an up-to-date one, and drop twins
    whose source is gone. Incremental: a twin is current when its record names the style record's
    path and hash and the same parameters. Raises `PartialFailure` if any image failed."""
    reporter = reporter or Reporter()
    if options.size is not None and options.size < 1:
        raise InputError(None, f"--size must be at least 1, got {options.size}")
    if options.batch < 1:
        raise InputError(None, f"batch must be at least 1, got {options.batch}")
    ds = Dataset.open(dataset_root)
    remove_stale_temporaries(ds.root / SMOOTH_SET)  # twins a killed run was writing
    m = ds.manifest
    if not m.records(STYLE_SET) and not m.records(SMOOTH_SET):
        raise InputError(ds.root, "the dataset has no style images; add some with `animegan extract-frames` or `animegan add-images --set style`")
    ds.require_files([STYLE_SET])
    summary = SmoothSummary()
    jobs, expected = _plan(ds, m, options, summary, reporter)
    workers = max(1, min(options.workers or available_cores(), len(jobs) or 1))

    # Batches bound how much work a crash can lose without rewriting the manifest per image.
    batch = RecordBatch(ds, SMOOTH_SET, every=options.batch, seconds=2.0)

    processed = 0
    reporter.start("smooth", "smoothing edges", total=len(jobs))
    try:
        for job, result in _run_jobs(jobs, workers, reporter):
            processed += 1
            if "error" in result:
                reporter.warn(result["error"])
                summary.failed.append(result["error"])
            else:
                batch.add(
                    Record(
                        **result,
                        source=DerivedSource(
                            operation=OPERATION,
                            source=job.source_rel,
                            source_sha256=job.source_sha256,
                            params=job.params,
                        ),
                    )
                )
                summary.smoothed += 1
            reporter.advance("smooth")
            batch.commit_if_due()
        summary.aborted = processed < len(jobs)
    finally:
        batch.commit()
        reporter.finish("smooth")

    if not summary.aborted:
        summary.removed = _remove_orphans(ds, expected, reporter)
    if summary.failed:
        raise PartialFailure(
            f"make-smooth: {len(summary.failed)} of {plural(summary.total, 'style image')} failed (listed above); "
            f"{summary.smoothed} smoothed, {summary.up_to_date} already up to date"
        )
    return summary


def _remove_orphans(ds: Dataset, expected: set[str], reporter: Reporter) -> int:
    """Drop make-smooth's records that are not the current twin of a style record (their style
    image is gone, or the twin moved because --format changed), then delete their files.

    Only records make-smooth wrote (derived, operation 'smooth') are dropped, and only files under
    DS/smooth/ that such a record named are deleted: derived data that make-smooth can rebuild.
    Style files and images imported into the smooth set by hand are never touched.
    """
    def orphan(r: Record) -> bool:
        ours = isinstance(r.source, DerivedSource) and r.source.operation == OPERATION
        return ours and r.path not in expected

    # Usually there is nothing to drop: skip rewriting the manifest then.
    if not any(orphan(r) for r in ds.manifest.records(SMOOTH_SET)):
        return 0
    removed: list[str] = []
    with ds.transaction() as m:
        for r in list(m.records(SMOOTH_SET)):
            if orphan(r):
                m.remove(SMOOTH_SET, r.path)
                removed.append(r.path)
        still_listed = {r.path for records in m.sets.values() for r in records}
    smooth_root = (ds.root / SMOOTH_SET).resolve()
    for rel in removed:
        if rel in still_listed:  # another set lists the same file: keep it, drop only the record
            reporter.info(f"dropped the record of {rel}: not the current twin of any style image (the file stays: another set lists it)")
            continue
        reporter.info(f"removed {rel}: not the current twin of any style image")
        path = ds.abspath(rel)
        try:
            if path.resolve().is_relative_to(smooth_root):
                path.unlink(missing_ok=True)
        except OSError as exc:
            reporter.warn(f"{path}: could not delete ({exc.strerror or exc})")
    return len(removed)

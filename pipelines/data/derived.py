"""Derived sets: a set whose every image is computed from one image of another set, kept current.

make-smooth (style -> smooth) and make-sketch (illustration -> sketch) are each one `Derivation` run
through `derive`: plan (which twins are missing or out of date, from the source's hash and the
parameters recorded with each twin), compute in a process pool (forkserver workers that die with a
killed parent), write atomically, commit records in batches, and drop the twins whose source record
is gone. Twins sit at the same relative path as their source, under the target set's folder.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from ..errors import AnimeganError, InputError, PartialFailure, output_error, stops_all_writes
from ..fileio import read_regular_file, IMAGE_EXTENSIONS, decode_image, remove_stale_temporaries, sha256_bytes, write_image
from ..processes import die_with
from ..progress import Reporter, plural
from .manifest import Dataset, DerivedSource, Manifest, Record, RecordBatch


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


@dataclass(frozen=True)
class Derivation:
    """A derived set: `target_set` holds one image computed from each record of `source_set`.

    `compute(rgb, params)` maps `[H, W, 3] uint8 RGB` to the same; it must be a module-level function
    (it is sent to worker processes). `recipe` names the algorithm and its version; with the options'
    size and format it makes `DerivedSource.params`, so a twin is redone when any of them changes.
    """

    operation: str  # DerivedSource.operation, e.g. "smooth", "sketch"
    source_set: str
    target_set: str
    recipe: str
    compute: Callable[[np.ndarray, dict[str, Any]], np.ndarray]
    noun: str = "image"  # what the messages call a source image ("style image", "illustration")
    hint: str = ""  # how to fill an empty source set (the command to run)


@dataclass
class DeriveOptions:
    """Options of a derived-set command (`make-smooth`, `make-sketch`).

    - `size`: resize so the short side is `size` before computing; None keeps the stored size.
    - `format`: output suffix ('.png', '.jpg', ...); None keeps each source's format.
    - `workers`: worker processes; None uses every core available; 1 runs in this process.
    - `batch`: records committed to the manifest per transaction.
    """

    size: int | None = None
    format: str | None = None
    workers: int | None = None
    batch: int = 16
    params: dict[str, Any] = field(default_factory=dict)  # the operation's own settings (recorded with each twin)

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
class DeriveSummary:
    total: int = 0  # source records considered
    made: int = 0  # twins written this run
    up_to_date: int = 0  # twins already current
    removed: int = 0  # twin records dropped (source gone, or replaced by a twin at a new path)
    failed: list[str] = field(default_factory=list)  # one line per failed source image
    aborted: bool = False

    @property
    def smoothed(self) -> int:  # make-smooth's name for `made`
        return self.made


def derive_params(d: Derivation, options: DeriveOptions, suffix: str) -> dict[str, Any]:
    """What a twin depends on besides its source bytes; stored in `DerivedSource.params`."""
    return {"recipe": d.recipe, "size": options.size, "format": suffix, **options.params}


def twin_path(d: Derivation, source_path: str, suffix: str) -> str:
    """`style/a/b.jpg` -> `smooth/a/b<suffix>` (the same path relative to the set folder)."""
    p = PurePosixPath(source_path)
    rel = PurePosixPath(*p.parts[1:]) if p.parts[0] == d.source_set and len(p.parts) > 1 else p
    return str(PurePosixPath(d.target_set) / rel.with_suffix(suffix))


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
    compute: Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def _init_worker(parent_pid: int) -> None:
    # Parallelism comes from the process pool; OpenCV's own threads would only compete with it.
    cv2.setNumThreads(1)
    die_with(parent_pid)  # a killed command takes its workers with it


def _make_one(job: _Job) -> dict[str, Any]:
    """Read, compute and atomically write one twin; returns the record fields or {'error': line}.

    Runs in a worker process, so it returns plain data and never raises for a bad input.
    """
    try:
        try:
            data = read_regular_file(job.source_abs)
        except OSError as exc:
            raise InputError(job.source_abs, f"cannot read ({exc.strerror or exc})") from None
        if sha256_bytes(data) != job.source_sha256:
            raise InputError(job.source_abs, "changed since it was recorded in the manifest (run `animegan dataset --check`)")
        rgb = decode_image(data, job.source_abs)
        if job.size is not None:
            rgb = resize_short_side(rgb, job.size)
        smoothed = job.compute(rgb, job.params)  # [H, W, 3] uint8 RGB
        try:
            out = write_image(job.target_abs, smoothed)
        except OSError as exc:  # a full disk is about the file being written, not the source image
            if stops_all_writes(exc):  # every other twin would fail the same way: the command stops (_derive)
                return {"stop": [exc.errno, exc.strerror or str(exc)]}
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


def _is_current(ds: Dataset, d: Derivation, twin: Record | None, style: Record, params: dict[str, Any]) -> bool:
    if twin is None or not isinstance(twin.source, DerivedSource):
        return False
    src = twin.source
    if src.operation != d.operation or src.source != style.path or src.source_sha256 != style.sha256 or src.params != params:
        return False
    return _same_size(ds, twin)


def _plan(
    ds: Dataset, m: Manifest, d: Derivation, options: DeriveOptions, summary: DeriveSummary, reporter: Reporter
) -> tuple[list[_Job], set[str]]:
    """The jobs to run, and the twin path every source record maps to under these options."""
    fmt = options.normalized_format()
    smooth_by_path = {r.path: r for r in m.records(d.target_set)}
    claimed: dict[str, str] = {}
    jobs: list[_Job] = []
    for style in m.records(d.source_set):
        summary.total += 1
        suffix = fmt or PurePosixPath(style.path).suffix.lower()
        target = twin_path(d, style.path, suffix)
        if target in claimed:
            line = f"{style.path}: its {d.operation} twin {target} would collide with the twin of {claimed[target]}; use --format to keep the formats apart, or rename one"
            reporter.warn(line)
            summary.failed.append(line)
            continue
        claimed[target] = style.path
        params = derive_params(d, options, suffix)
        # A source file edited behind the manifest's back goes to a worker, which reports it; a stat
        # is cheap enough to do for every image on every run.
        if _same_size(ds, style) and _is_current(ds, d, smooth_by_path.get(target), style, params):
            summary.up_to_date += 1
            continue
        try:
            target_abs = ds.inside_path(target)
        except InputError as exc:
            reporter.warn(str(exc))
            summary.failed.append(str(exc))
            continue
        jobs.append(_Job(str(ds.abspath(style.path)), style.path, style.sha256, str(target_abs), target,
                         options.size, params, d.compute))
    return jobs, set(claimed)


def _mp_context(preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    # Never plain fork: a child forked while one of the parent's threads (OpenCV's pool, a
    # progress bar) holds a lock deadlocks. A fork server is started clean, with this module (and
    # the compute function's) preloaded so that each worker starts in milliseconds; spawn where
    # there is no fork server.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__, *preload])
        return ctx
    return multiprocessing.get_context("spawn")


def _run_jobs(jobs: list[_Job], workers: int, reporter: Reporter) -> Iterator[tuple[_Job, dict[str, Any]]]:
    """Yield `(job, result)` as they finish; stops submitting when the reporter asks to abort."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            if reporter.should_abort():
                return
            yield job, _make_one(job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context((jobs[0].compute.__module__,)), initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        pending: dict[Future, _Job] = {}
        queue = iter(jobs)
        try:
            # A bounded window keeps memory flat and lets an abort stop quickly.
            for job in queue:
                pending[pool.submit(_make_one, job)] = job
                if len(pending) >= workers * 4:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    yield job, fut.result()
                if reporter.should_abort():
                    return
                for job in queue:
                    pending[pool.submit(_make_one, job)] = job
                    if len(pending) >= workers * 4:
                        break
        finally:  # an abort, or the caller stopping at an error: what has not started never will
            for fut in pending:
                fut.cancel()


def derive(dataset_root: str | Path, d: Derivation, options: DeriveOptions, reporter: Reporter | None = None,
           task: str = "deriving") -> DeriveSummary:
    """Write the twin of every source record that lacks an up-to-date one, and drop twins whose source
    record is gone. Incremental: a twin is current when its record names the source record's path and
    hash and the same parameters. Raises `PartialFailure` if any image failed."""
    reporter = reporter or Reporter()
    if options.size is not None and options.size < 1:
        raise InputError(None, f"--size must be at least 1, got {options.size}")
    if options.batch < 1:
        raise InputError(None, f"batch must be at least 1, got {options.batch}")
    ds = Dataset.open(dataset_root)
    with _one_writer(ds, d, reporter):
        return _derive(ds, d, options, reporter, task)


@contextmanager
def _one_writer(ds: Dataset, d: Derivation, reporter: Reporter) -> Iterator[None]:
    """One writer of a derived set at a time: two make-smooth runs with different options would each plan against
    the other's half-written twins and drop them as orphans. The second waits for the first, then finds its work
    done or plans against the finished set."""
    from filelock import FileLock, Timeout

    lock = FileLock(ds.root / f".make-{d.operation}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        reporter.info(f"{ds.root}: another make-{d.operation} is writing this dataset's '{d.target_set}' set; waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _derive(ds: Dataset, d: Derivation, options: DeriveOptions, reporter: Reporter, task: str) -> DeriveSummary:
    remove_stale_temporaries(ds.inside_path(f"{d.target_set}/twin").parent)  # twins a killed run was writing (a set folder leading outside is refused)
    ds.reload()  # what a writer before this one left
    m = ds.manifest
    if not m.records(d.source_set) and not any(_ours(d, r) for r in m.records(d.target_set)):
        raise InputError(ds.root, f"the dataset has no {d.noun}s ('{d.source_set}' set); {d.hint}")
    ds.require_files([d.source_set])
    summary = DeriveSummary()
    jobs, expected = _plan(ds, m, d, options, summary, reporter)
    workers = max(1, min(options.workers or available_cores(), len(jobs) or 1))

    # Batches bound how much work a crash can lose without rewriting the manifest per image.
    batch = RecordBatch(ds, d.target_set, every=options.batch, seconds=2.0)

    processed = 0
    reporter.start(d.operation, task, total=len(jobs))
    try:
        for job, result in _run_jobs(jobs, workers, reporter):
            processed += 1
            if "stop" in result:  # a full disk, a read-only folder: stop at the first such error, in one line
                errno_, reason = result["stop"]
                raise output_error(Path(job.target_abs).parent, OSError(errno_, reason),
                                   f"{plural(summary.made, 'twin')} made before it are kept")
            if "error" in result:
                reporter.warn(result["error"])
                summary.failed.append(result["error"])
            else:
                batch.add(Record(**result, source=DerivedSource(
                    operation=d.operation, source=job.source_rel, source_sha256=job.source_sha256, params=job.params)))
                summary.made += 1
            reporter.advance(d.operation)
            batch.commit_if_due()
        summary.aborted = processed < len(jobs)
    finally:
        batch.commit()
        reporter.finish(d.operation)

    if not summary.aborted:
        summary.removed = _remove_orphans(ds, d, expected, reporter)
    if summary.failed:
        raise PartialFailure(
            f"make-{d.operation}: {len(summary.failed)} of {plural(summary.total, d.noun)} failed (listed above); "
            f"{summary.made} made, {summary.up_to_date} already up to date"
        )
    return summary


def _ours(d: Derivation, r: Record) -> bool:
    """Whether `r` is a twin this derivation made from its source set (not imported, not another source's)."""
    return (isinstance(r.source, DerivedSource) and r.source.operation == d.operation
            and r.source.source.split("/", 1)[0] == d.source_set)


def _remove_orphans(ds: Dataset, d: Derivation, expected: set[str], reporter: Reporter) -> int:
    """Drop the records this operation wrote that are not the current twin of a source record (the
    source is gone, or the twin moved because --format changed), then delete their files.

    Only records of this operation are dropped, and only files under DS/<target set>/ that such a
    record named are deleted: derived data that can be rebuilt. Source files and images imported into
    the target set by hand are never touched.
    """
    def orphan(r: Record) -> bool:
        return _ours(d, r) and r.path not in expected

    # Usually there is nothing to drop: skip rewriting the manifest then.
    if not any(orphan(r) for r in ds.manifest.records(d.target_set)):
        return 0
    removed: list[str] = []
    with ds.transaction() as m:
        for r in list(m.records(d.target_set)):
            if orphan(r):
                m.remove(d.target_set, r.path)
                removed.append(r.path)
        still_listed = {r.path for records in m.sets.values() for r in records}
    target_root = (ds.root / d.target_set).resolve()
    for rel in removed:
        if rel in still_listed:  # another set lists the same file: keep it, drop only the record
            reporter.info(f"dropped the record of {rel}: not the current twin of any {d.noun} (the file stays: another set lists it)")
            continue
        reporter.info(f"removed {rel}: not the current twin of any {d.noun}")
        try:
            path = ds.inside_path(rel)
            if path.is_symlink() or path.resolve().is_relative_to(target_root):
                path.unlink(missing_ok=True)  # a link is removed, never followed
        except InputError as exc:
            reporter.warn(str(exc))
        except OSError as exc:
            reporter.warn(f"{ds.abspath(rel)}: could not delete ({exc.strerror or exc})")
    return len(removed)

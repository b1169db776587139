"""`extract-frames`: sample film frames into the style set, resumably.

Frames go to `DS/style/<film stem>/f<frame index>.jpg` (7 digits; `_s<size>` or `_full` is appended
when `--size` is not the default, so two extractions of one film at different sizes never collide).
The record's `FrameSource.time` holds the exact timestamp.

Sampling (`--every S`): slot k is at `start + k*S`; the first frame whose time is at or after a slot
is that slot's candidate. With `--scenes`, instead one frame per shot: the first frame `settle`
seconds after each detected cut (shots shorter than that are skipped as flashes).
A candidate is dropped when it is near-black (mean luma below `black_level`), near-uniform (at least
`flat_fraction` of its pixels within 12 levels of the median: fades, title cards), or, with dedupe,
when its 64-bit dHash is within `dedupe_distance` bits of the last kept frame.

Resume: the manifest's `extractions[<film id>-<options hash>]` holds `done_until`, a time from which
decoding again reproduces the uninterrupted run exactly: the last kept frame (grid sampling; it is
decoded again, re-kept under the same name, and re-seeds dedupe) or the start of the current shot
(scene sampling). Records and `done_until` are committed every few kept frames; frames written but
not yet committed when a run is killed are simply rewritten (same name, same bytes) on resume.
`complete` makes a re-run with the same options skip the film without decoding it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PartialFailure
from ..fileio import atomic_write_bytes, encode_image, is_image_path, remove_stale_temporaries
from .manifest import Dataset, ExtractionState, FrameSource, Manifest, RecordBatch, make_record, recordable_path, storable_stem
from ..progress import Reporter, plural
from .video import RawFrame, iter_raw_frames, parse_time, probe_video

STYLE_SET = "style"
DEFAULT_SIZE = 720
COMMIT_EVERY_FRAMES = 16
COMMIT_EVERY_SECONDS = 2.0  # a kill loses at most this much work (a manifest write costs milliseconds)
_FLAT_TOLERANCE = 12  # luma levels around the median that still count as "the same flat colour"
_TINY_WIDTH = 64  # width of the luma thumbnail used for darkness, flatness and cut detection

@dataclass
class ExtractOptions:
    every: float = 2.0
    start: float | str = 0.0
    end: float | str | None = None
    size: int = DEFAULT_SIZE  # short side in pixels; 0 keeps the original size; never upscales
    dedupe: bool = True
    dedupe_distance: int = 6  # of 64 dHash bits
    black_level: float = 16.0  # mean luma (0-255) below which a frame is "black"; 0 disables
    flat_fraction: float = 0.9  # share of near-median pixels above which a frame is "flat"; 1.0 disables
    scenes: bool = False
    scene_threshold: float = 30.0  # mean absolute luma change (0-255) between frames that is a cut
    settle: float = 0.5  # seconds after a cut before the shot's frame is taken

    def __post_init__(self) -> None:
        self.start = parse_time(self.start, "--start") or 0.0
        self.end = parse_time(self.end, "--end")
        if self.end is not None and self.end <= self.start:
            raise InputError(None, f"--end {self.end:g} must be after --start {self.start:g}")
        if not (self.every > 0 and math.isfinite(self.every)):
            raise InputError(None, f"--every {self.every!r}: must be a positive number of seconds")
        if self.size < 0:
            raise InputError(None, f"--size {self.size}: must be 0 (original) or a positive short side")
        if not 0 <= self.dedupe_distance <= 64:
            raise InputError(None, f"--dedupe-distance {self.dedupe_distance}: must be 0..64")
        if not 0 < self.flat_fraction <= 1:
            raise InputError(None, f"--flat-fraction {self.flat_fraction}: must be in (0, 1]")
        if self.settle < 0:
            raise InputError(None, f"--settle {self.settle}: must be >= 0")

    def key_fields(self) -> dict[str, Any]:
        """The options that decide which frames are written (so: part of the resume key)."""
        d = asdict(self)
        if self.scenes:
            d.pop("every")
        else:
            for k in ("scene_threshold", "settle"):
                d.pop(k)
        if not self.dedupe:
            d.pop("dedupe_distance")
        return d

    def suffix(self) -> str:
        return "" if self.size == DEFAULT_SIZE else ("_full" if self.size == 0 else f"_s{self.size}")


@dataclass
class FilmResult:
    film: Path
    kept: int = 0  # frames written in this run (re-kept frames of a resume included)
    dark: int = 0
    flat: int = 0
    duplicates: int = 0
    decoded: int = 0
    skipped_complete: bool = False
    error: str | None = None


@dataclass
class ExtractSummary:
    films: list[FilmResult] = field(default_factory=list)
    aborted: bool = False

    @property
    def kept(self) -> int:
        return sum(f.kept for f in self.films)

    @property
    def failed(self) -> int:
        return sum(1 for f in self.films if f.error)


def film_sha256(path: Path) -> str:
    """Identity of a film without reading all of it: size + first and last MiB."""
    mib = 1 << 20
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(mib))
        if size > mib:
            fh.seek(max(mib, size - mib))
            h.update(fh.read(mib))
    return h.hexdigest()


def dhash(gray9x8: np.ndarray) -> int:
    """64-bit difference hash of a `[8, 9] uint8` luma thumbnail: bit = left pixel brighter than right."""
    bits = (gray9x8[:, :-1] > gray9x8[:, 1:]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _tiny_gray(raw: RawFrame) -> np.ndarray:
    w, h = raw.size
    return raw.to_gray(_TINY_WIDTH, max(1, round(_TINY_WIDTH * h / w)))  # [h, 64] uint8


FILM_MARK = ".film"  # in a film's frame folder: the sha256 key of the film that owns the folder


def _film_folder(ds: Dataset, manifest, stem: str, film_id: str) -> str:
    """`style/<stem>`, or `style/<stem>-<8 hex digits of the film's hash>` when another film owns it.

    A folder is owned by the film whose key its `.film` mark holds, created with O_EXCL so that two
    extract-frames of different films with the same name, started at the same moment, can never both
    take it. Folders from before marks existed are judged by their records.
    """
    for rel in (f"{STYLE_SET}/{stem}", f"{STYLE_SET}/{stem}-{film_id[:8]}"):
        prefix = rel + "/"
        if any(r.path.startswith(prefix) and getattr(r.source, "film_sha256", None) not in (None, film_id)
               for r in manifest.records(STYLE_SET)):
            continue
        folder = ds.abspath(rel)
        folder.mkdir(parents=True, exist_ok=True)
        mark = folder / FILM_MARK
        try:
            with open(mark, "x", encoding="ascii") as fh:
                fh.write(film_id)
            return rel
        except FileExistsError:
            try:
                if mark.read_text(encoding="ascii").strip() == film_id:
                    return rel
            except (OSError, UnicodeDecodeError):
                pass
    return f"{STYLE_SET}/{stem}-{film_id[:16]}"


class _Sampler:
    """Chooses frames: grid or scene candidates, then darkness / flatness / duplicate filters."""

    def __init__(self, opts: ExtractOptions, origin: float):
        self.o = opts
        self.next_slot = origin  # grid: time of the next slot
        self.prev_tiny: np.ndarray | None = None  # scenes: thumbnail of the previous frame
        self.shot_start: float | None = origin  # scenes: None once the current shot has its frame
        self.last_hash: int | None = None
        self.anchor = origin  # the resume point to record (see module docstring)

    def candidate(self, raw: RawFrame) -> np.ndarray | None:
        """The frame's tiny luma thumbnail if it is a candidate, else None."""
        t = raw.time
        if not self.o.scenes:
            if t + 1e-9 < self.next_slot:
                return None
            # Skip slots that fall between this frame and the next (every < frame interval).
            k = math.floor((t - self.o.start) / self.o.every + 1e-9) + 1
            self.next_slot = max(self.next_slot + self.o.every, self.o.start + k * self.o.every)
            return _tiny_gray(raw)
        tiny = _tiny_gray(raw)
        prev, self.prev_tiny = self.prev_tiny, tiny
        if prev is not None and prev.shape == tiny.shape:
            change = float(np.mean(np.abs(tiny.astype(np.int16) - prev.astype(np.int16))))
            if change > self.o.scene_threshold:
                self.shot_start = t
                self.anchor = t
        if self.shot_start is not None and t + 1e-9 >= self.shot_start + self.o.settle:
            self.shot_start = None
            return tiny
        return None

    def verdict(self, raw: RawFrame, tiny: np.ndarray) -> str:
        """'keep', 'dark', 'flat' or 'duplicate'."""
        if self.o.black_level > 0 and float(tiny.mean()) < self.o.black_level:
            return "dark"
        if self.o.flat_fraction < 1:
            median = float(np.median(tiny))
            if float(np.mean(np.abs(tiny.astype(np.int16) - median) <= _FLAT_TOLERANCE)) >= self.o.flat_fraction:
                return "flat"
        h = dhash(raw.to_gray(9, 8)) if self.o.dedupe else None
        if h is not None and self.last_hash is not None and bin(h ^ self.last_hash).count("1") <= self.o.dedupe_distance:
            return "duplicate"
        self.last_hash = h
        if not self.o.scenes:
            self.anchor = raw.time
        return "keep"


def extract_frames(
    movies: Iterable[str | Path],
    dataset_root: str | Path,
    options: ExtractOptions | None = None,
    reporter: Reporter | None = None,
) -> ExtractSummary:
    """Sample frames of each film into `dataset_root/style/<film stem>/`; see the module docstring.

    A missing, corrupt or non-video file is reported with `reporter.warn` and the other films are
    still processed; `PartialFailure` is raised at the end if any failed.
    """
    options = options or ExtractOptions()
    reporter = reporter or Reporter()
    ds = Dataset.open(dataset_root, create=True)
    remove_stale_temporaries(ds.inside_path(f"{STYLE_SET}/frame").parent)  # frames an earlier, killed run was writing
    summary = ExtractSummary()
    for movie in movies:
        result = FilmResult(film=Path(movie))
        summary.films.append(result)
        try:
            _extract_one(Path(movie), ds, options, reporter, result)
        except InputError as exc:
            result.error = str(exc)
            reporter.warn(str(exc))
        if result.error is None and not result.skipped_complete:
            skipped = [f"{n} {what}" for n, what in ((result.dark, "dark"), (result.flat, "flat"),
                                                     (result.duplicates, "duplicate" if result.duplicates == 1 else "duplicates")) if n]
            reporter.info(f"{movie}: {plural(result.kept, 'frame')} kept" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
            if result.kept == 0 and not summary.aborted:
                reporter.warn(f"{movie}: no frame kept" + (f" (all skipped: {', '.join(skipped)})" if skipped else "")
                              + "; check --start/--end and the skip thresholds (--black-level, --flat-fraction)")
        if reporter.should_abort():
            summary.aborted = True
            break
    if summary.failed:
        raise PartialFailure(f"{summary.failed} of {plural(len(summary.films), 'film')} could not be used (see the warnings above)")
    return summary


def _extract_one(film: Path, ds: Dataset, o: ExtractOptions, reporter: Reporter, result: FilmResult) -> None:
    info = probe_video(film)  # InputError for missing / non-video / corrupt files
    if info.duration is not None and o.start >= info.duration:
        raise InputError(film, f"--start {o.start:g} s is past the end of the film ({info.duration:.1f} s long): no frames to take")
    if is_image_path(film) or info.frame_count == 1:
        reporter.warn(f"{film}: a still image, not a film (one frame); `animegan add-images {film} --set style` is "
                      f"the command for images")
    film_abs = recordable_path(film)
    film_id = film_sha256(film)
    opts = o.key_fields()
    opt_hash = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()
    key = f"{film_id[:16]}-{opt_hash[:12]}"

    manifest = ds.reload()
    state = manifest.extractions.get(key)
    if state is not None and state.complete:
        result.skipped_complete = True
        reporter.info(f"{film}: already extracted with these options ({plural(state.kept, 'frame')}); nothing to do")
        return
    others = [s for k, s in manifest.extractions.items()
              if k.startswith(f"{film_id[:16]}-") and s.kept and s.options.get("size") != opts.get("size")]
    if others:
        # Frames of one extraction are named for their size (`_s720`), so another --size puts a second
        # copy of the film beside the first: allowed (a multi-scale style set), but said.
        was = "; ".join(f"{plural(s.kept, 'frame')} at --size {s.options.get('size')}" for s in others)
        reporter.warn(f"{film}: already in the style set from another extraction ({was}); these frames are added beside "
                      f"them, so the set holds this film twice. To keep one, delete the other's files "
                      f"(their names end in _s<size>) and run `animegan dataset --prune`")
    stem = storable_stem(film.stem, fallback="film")
    folder = _film_folder(ds, manifest, stem, film_id)
    if stem != film.stem:
        reporter.info(f"{film_abs}: its name cannot be kept in the manifest; its frames go to {folder}/")
    ds.inside_path(f"{folder}/frame.jpg")  # a folder that leads outside the dataset is refused before any write
    resume_from = state.done_until if state is not None else o.start
    kept_total = state.kept if state is not None else 0
    known = {r.path for r in manifest.records(STYLE_SET)}
    if state is not None:
        reporter.info(f"{film}: resuming at {resume_from:.3f} s")

    sampler = _Sampler(o, resume_from)
    if not o.scenes:
        # Slot grid stays anchored at --start; resuming at the last kept frame re-picks it for its own slot.
        sampler.next_slot = o.start + math.floor((resume_from - o.start) / o.every + 1e-9) * o.every
    span_end = o.end if o.end is not None else info.duration
    total = None if span_end is None else max(0, math.ceil((span_end - resume_from) * info.fps))
    pkey = f"extract:{film_abs}"
    reporter.start(pkey, film.name, total=total)

    # The resume point is saved in the same transaction as the frames it covers.
    progress = {"done_until": resume_from, "complete": False}

    def save_state(m: Manifest) -> None:
        m.extractions[key] = ExtractionState(film=film_abs, options=opts, done_until=max(0.0, progress["done_until"]),
                                             complete=progress["complete"], kept=kept_total)

    batch = RecordBatch(ds, STYLE_SET, every=COMMIT_EVERY_FRAMES, seconds=COMMIT_EVERY_SECONDS, on_commit=save_state)

    def commit(done_until: float, complete: bool = False) -> None:
        progress.update(done_until=done_until, complete=complete)
        batch.commit()

    advanced = 0
    try:
        for raw in iter_raw_frames(film, resume_from, o.end):
            result.decoded += 1
            advanced += 1
            if advanced >= 8:
                reporter.advance(pkey, advanced, kept=result.kept)
                advanced = 0
            tiny = sampler.candidate(raw)
            if tiny is not None:
                verdict = sampler.verdict(raw, tiny)
                if verdict == "keep":
                    rgb = raw.to_rgb(o.size)  # [H, W, 3] uint8 RGB, upright
                    data = encode_image(rgb, ".jpg")
                    rel = f"{folder}/f{raw.index:07d}{o.suffix()}.jpg"
                    atomic_write_bytes(ds.abspath(rel), data)
                    batch.add(make_record(
                        rel, data, rgb.shape[1], rgb.shape[0],
                        FrameSource(film=film_abs, film_sha256=film_id, time=raw.time, frame_index=raw.index),
                    ))
                    result.kept += 1
                    if rel not in known:
                        known.add(rel)
                        kept_total += 1
                elif verdict == "dark":
                    result.dark += 1
                elif verdict == "flat":
                    result.flat += 1
                else:
                    result.duplicates += 1
            if batch.due():
                commit(sampler.anchor)
            if reporter.should_abort():
                commit(sampler.anchor)
                reporter.warn(f"{film}: stopped at {raw.time:.3f} s; run the same command again to resume")
                return
    except InputError as exc:
        # Keep what was extracted before the damage; the film still counts as failed.
        commit(sampler.anchor)
        raise exc
    finally:
        if advanced:
            reporter.advance(pkey, advanced, kept=result.kept)
        reporter.finish(pkey)
    commit(span_end if span_end is not None else sampler.anchor, True)

"""Stylizing one video: decode, stylize, stabilize, encode with the source's audio.

Three threads so that the network never waits on FFmpeg: the decoder reads frames (and computes the
optical flow between consecutive inputs that the stabilizer needs, beside the network), the main thread
stylizes them in batches (`Engine`), the encoder blends each output with the previous result
(`pipelines.inference.stabilize`) and encodes it with its source timestamp (`video_encode.VideoWriter`).
Everything goes to a temporary file renamed at the end, so a killed run leaves nothing under the real name
and the next run redoes the video.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import AnimeganError, InputError
from ..fileio import atomic_path
from ..progress import Reporter, plural
from .stabilize import DEFAULT_STRENGTH, Stabilizer

_END = object()


@dataclass
class VideoSettings:
    max_side: int | None = None  # downscale so the long side is at most this
    batch_size: int = 4
    start: float = 0.0  # seconds (already parsed)
    end: float | None = None
    crf: int = 18
    preset: str = "medium"
    chroma: str = "420"  # "420" plays everywhere; "444" keeps full colour resolution
    stabilize: float = DEFAULT_STRENGTH  # blend weight of the previous result on trusted pixels; 0 = frame by frame


def _frames_between(start: float, end: float, fps) -> int | None:
    """How many frames of a constant-rate video have `start <= time < end` (what the decoder yields): frame k is
    at k / fps. A progress total, so 110 % never shows for an end between two frames."""
    if not fps:
        return None
    eps = 1e-6  # the decoder's own slack at both ends
    return max(1, math.ceil((end - eps) * float(fps)) - math.ceil((start - eps) * float(fps)))


def no_frames(src: Path, settings: VideoSettings, duration: float | None) -> InputError:
    """The error for a time range without frames, with the video's length where the container says it."""
    length = f" (the video is {duration:.1f} s long)" if duration else ""
    return InputError(src, f"no frames from {settings.start:g} s to "
                           f"{'the end' if settings.end is None else f'{settings.end:g} s'}{length}")


def check_time_range(src: Path, settings: VideoSettings) -> None:
    """Raise `no_frames` before any work when the container's length puts `settings.start` past the end (a
    damaged or unreadable file is left to `stylize_video`, which names its problem)."""
    from ..data.video import probe_video

    if settings.start <= 0:
        return
    try:
        duration = probe_video(src).duration
    except InputError:
        return
    if duration is not None and settings.start >= duration:
        raise no_frames(src, settings, duration)


def stylize_video(src: Path, dst: Path, engine, settings: VideoSettings, reporter: Reporter) -> None:
    """Stylize the video `src` into `dst` with `engine` (`engine.Engine` or `onnx_engine.OnnxEngine`). Raises InputError
    naming the file."""
    from ..data.video import TruncatedVideo, iter_frames, probe_video
    from .video_encode import VideoWriter, pick_encoder

    info = probe_video(src)
    w, h = info.width, info.height
    if settings.max_side and max(w, h) > settings.max_side:
        s = settings.max_side / max(w, h)
        w, h = max(2, round(w * s)), max(2, round(h * s))
    encoder = pick_encoder()
    if encoder != "libx264":
        reporter.warn(f"{src}: libx264 is not available in this PyAV build; encoding with {encoder}")
    if settings.chroma == "420" and (w % 2 or h % 2):
        reporter.info(f"{src}: {w}x{h} has an odd side; H.264 (yuv420p) drops the last row/column")
    end = settings.end if settings.end is None or info.duration is None else min(settings.end, info.duration)
    stop = end if end is not None else info.duration  # None when neither the user nor the container says
    total = _frames_between(settings.start, stop, info.fps) if stop is not None and stop > settings.start else None
    key = f"video:{src}"
    reporter.start(key, src.name, total=total)
    stabilizer = Stabilizer(settings.stabilize) if settings.stabilize > 0 else None
    cuts = [0]

    frames_q: queue.Queue = queue.Queue(maxsize=2 * settings.batch_size + 2)
    enc_q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    errors: list[BaseException] = []
    truncated: list[TruncatedVideo] = []

    def decode() -> None:
        try:
            for fr in iter_frames(src, settings.start, settings.end):
                if stop.is_set():
                    return
                img = fr.image  # [H, W, 3] uint8 RGB, upright
                if img.shape[1] != w or img.shape[0] != h:
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                motion = stabilizer.motion(img) if stabilizer is not None else None
                frames_q.put((img, fr.time, motion))
        except TruncatedVideo as exc:  # the frames that were there are stylized; said at the end
            truncated.append(exc)
        except BaseException as exc:  # handed to the main thread, which reports it
            errors.append(exc)
        finally:
            frames_q.put(_END)

    with atomic_path(dst) as tmp:
        writer = VideoWriter(tmp, src, w, h, info.fps, start=settings.start, end=settings.end,
                             crf=settings.crf, preset=settings.preset, encoder=encoder, chroma=settings.chroma)

        def encode() -> None:
            try:
                while (item := enc_q.get()) is not _END:
                    for out, t, motion in zip(*item):
                        if stabilizer is not None:
                            out, step = stabilizer.blend(out, motion)
                            cuts[0] += step.cut and motion is not None
                        writer.write(out, t)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                while enc_q.get() is not _END:  # keep draining so the producer never blocks
                    pass

        threads = [threading.Thread(target=decode, daemon=True), threading.Thread(target=encode, daemon=True)]
        for t in threads:
            t.start()
        n, t_start = 0, time.perf_counter()
        try:
            limit = engine.batch_limit(h, w, settings.batch_size)
            ended = False
            while not ended and not stop.is_set():
                imgs, times, motions = [], [], []
                while len(imgs) < limit:
                    item = frames_q.get()
                    if item is _END:
                        ended = True
                        break
                    imgs.append(item[0])
                    times.append(item[1])
                    motions.append(item[2])
                if not imgs:
                    break
                if engine.needs_tiling(h, w):
                    outs = [engine.stylize_image(im) for im in imgs]
                else:
                    outs = list(engine.stylize_batch(np.stack(imgs)))
                enc_q.put((outs, times, motions))
                n += len(imgs)
                reporter.advance(key, len(imgs), fps=n / max(1e-9, time.perf_counter() - t_start))
                if reporter.should_abort():
                    raise AnimeganError(f"{src}: interrupted")
        finally:
            stop.set()  # the decoder stops at its next frame (it has already ended on success)
            enc_q.put(_END)
            # Unblock the decoder if it is waiting on a full queue, then wait for both threads.
            while threads[0].is_alive():
                try:
                    frames_q.get(timeout=0.05)
                except queue.Empty:
                    pass
            for t in threads:
                t.join()
        if errors:
            writer.abort()
            exc = errors[0]
            if isinstance(exc, AnimeganError):
                raise exc
            raise InputError(src, f"could not stylize video ({type(exc).__name__}: {exc})")
        if n == 0:
            writer.abort()
            raise no_frames(src, settings, info.duration)
        try:
            writer.close()
        except Exception as exc:
            raise InputError(dst, f"could not finish writing the video ({type(exc).__name__}: {exc})") from None
    reporter.finish(key)
    audio = {None: "no audio", "copy": "audio copied", "aac": "audio re-encoded to AAC"}[writer.audio_mode]
    stable = (f", stabilized ({plural(cuts[0], 'cut')})" if stabilizer is not None else ", frame by frame")
    reporter.info(f"{dst}: {plural(n, 'frame')}, {w}x{h}, {audio}{stable}")
    for exc in truncated:
        reporter.warn(f"{exc}; {dst} has the {plural(n, 'frame')} that could be decoded")

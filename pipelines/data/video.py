"""Video probing and decoding with PyAV: exact timestamps, rotation applied, cheap partial decoding.

Conventions shared by every caller (extract-frames, stylize of a video):

- A frame's `time` is exact: `(pts - stream.start_time) * time_base`, seconds from the start of the
  video stream. Frame k of a constant-rate 25 fps film has time k/25 (no accumulated float error,
  no guessing from a frame counter).
- A frame's `index` is `round(time * fps)`: its position in a constant-rate film, and stable however
  the decode started (seeking does not renumber frames).
- `rotation` is in degrees counter-clockwise, one of 0, 90, 180, 270, the convention of PyAV's
  `VideoFrame.rotation` and `VideoStream.set_display_rotation`, so a writer can copy it as is.
  Images handed out are already rotated: `[H, W, 3] uint8 RGB` as a player would display them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError

try:  # PyAV is a hard dependency; imported lazily in functions would only hide a broken install.
    import av
    from av.error import FFmpegError
except ImportError as exc:  # pragma: no cover - install problem
    raise ImportError("PyAV (`av`) is required for video support") from exc


_SLACK = Fraction(1, 2_000_000)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed (after rotation)
    height: int  # as displayed (after rotation)
    rotation: int  # degrees counter-clockwise to display: 0, 90, 180 or 270
    fps: Fraction  # the stream's real frame rate (r_frame_rate), average rate as fallback
    time_base: Fraction
    duration: float | None  # seconds, None when the container does not say
    frame_count: int | None  # None when the container does not say
    has_audio: bool
    codec: str

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the frames as stored, before rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


@dataclass(frozen=True)
class VideoFrame:
    index: int
    time: float  # seconds, exact (see module docstring)
    image: np.ndarray  # [H, W, 3] uint8 RGB (or [H, W] uint8 for format="gray"), rotation applied


def _normalize_rotation(deg: float) -> int:
    # Only quarter turns are meaningful for pixel rotation; anything else is rounded to the nearest.
    return int(round(deg / 90.0)) % 4 * 90


def _metadata_rotation(stream) -> int | None:
    # Old muxers wrote a 'rotate' tag, clockwise degrees; newer ones a display matrix (read from frames).
    tag = (stream.metadata or {}).get("rotate")
    if tag is None:
        return None
    try:
        return _normalize_rotation(-float(tag))
    except ValueError:
        return None


def _open(path: Path):
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "not a file")
    try:
        container = av.open(str(path), mode="r")
    except FFmpegError as exc:
        raise InputError(path, f"not a readable video ({_why(exc)})") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    if not container.streams.video:
        container.close()
        raise InputError(path, "contains no video stream")
    return container


def _why(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(msg).split())[:160]


def _stream_fps(stream) -> Fraction:
    for rate in (stream.base_rate, stream.average_rate, stream.guessed_rate):
        if rate:
            return Fraction(rate)
    return Fraction(25)  # nothing declared at all; only used for frame indices


def _start_pts(stream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's geometry, rate and length; decodes at most one frame (to read its rotation).

    Raises `InputError(path, ...)` for a missing, non-video or corrupt file.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rotation = _metadata_rotation(stream)
        first = None
        try:
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                first = frame
                break
        except FFmpegError as exc:
            raise InputError(path, f"corrupt video ({_why(exc)})") from None
        if first is None:
            raise InputError(path, "video stream has no decodable frames")
        if rotation is None or getattr(first, "rotation", 0):
            rotation = _normalize_rotation(getattr(first, "rotation", 0))
        cw, ch = first.width, first.height
        width, height = (ch, cw) if rotation in (90, 270) else (cw, ch)
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1_000_000)
        duration = None
        if stream.duration:
            duration = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            rotation=rotation,
            fps=_stream_fps(stream),
            time_base=time_base,
            duration=duration,
            frame_count=stream.frames or None,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )
    finally:
        container.close()


class RawFrame:
    """A decoded but not yet converted frame: converting only the frames a caller keeps is what
    makes sparse sampling cheap (colour conversion and scaling cost more than decoding here).

    `to_rgb(short_side)` -> `[H, W, 3] uint8 RGB`; `to_gray(width, height)` -> `[h, w] uint8`,
    a tiny luma copy for hashing / scene detection. Both apply the rotation.
    """

    __slots__ = ("index", "time", "rotation", "_frame")

    def __init__(self, index: int, time: float, rotation: int, frame):
        self.index = index
        self.time = time
        self.rotation = rotation
        self._frame = frame

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        w, h = self._frame.width, self._frame.height
        return (h, w) if self.rotation in (90, 270) else (w, h)

    def _coded(self, width: int, height: int) -> tuple[int, int]:
        return (height, width) if self.rotation in (90, 270) else (width, height)

    def _rotate(self, arr: np.ndarray) -> np.ndarray:
        k = self.rotation // 90
        return np.ascontiguousarray(np.rot90(arr, k)) if k else arr

    def to_rgb(self, short_side: int = 0) -> np.ndarray:
        """Full-size (`short_side=0`) or downscaled so the short side is `short_side` (never upscaled)."""
        w, h = self.size
        if short_side and short_side < min(w, h):
            s = short_side / min(w, h)
            w, h = max(1, round(w * s)), max(1, round(h * s))
            cw, ch = self._coded(w, h)
            arr = self._frame.reformat(width=cw, height=ch, format="rgb24", interpolation="AREA").to_ndarray()
        else:
            arr = self._frame.to_ndarray(format="rgb24")
        return self._rotate(arr)

    def to_gray(self, width: int, height: int) -> np.ndarray:
        cw, ch = self._coded(width, height)
        arr = self._frame.reformat(width=cw, height=ch, format="gray", interpolation="AREA").to_ndarray()
        return self._rotate(arr)


class TruncatedVideo(InputError):
    """Decoding ended well before the length the container states: a truncated or damaged file.
    Raised after the frames that could be decoded were yielded."""

    def __init__(self, path: Path, decoded_until: float, stated: float):
        self.decoded_until, self.stated = decoded_until, stated
        super().__init__(path, f"decoding ended at {decoded_until:.2f} s of the {stated:.2f} s the file states: "
                               f"it is truncated or damaged")


def _stated_end(stream, container) -> float | None:
    """The stream's length in seconds as its container states it (None when it does not say)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def iter_raw_frames(path: str | Path, start: float = 0.0, end: float | None = None) -> Iterator[RawFrame]:
    """Decode frames with `start <= time < end` without converting them (see `RawFrame`).

    Seeks to the keyframe at or before `start` rather than decoding from zero; threaded decoding.
    A decode error mid-stream raises `InputError` (frames before it were already yielded); decoding
    that ends more than two frames (and a quarter second) before the stated length raises
    `TruncatedVideo`, also after the frames it could decode.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = Fraction(stream.time_base)
        fps = _stream_fps(stream)
        start_pts = _start_pts(stream)
        rotation = _metadata_rotation(stream)
        start_f = Fraction(start).limit_denominator(1_000_000) if start > 0 else Fraction(0)
        end_f = None if end is None else Fraction(end).limit_denominator(1_000_000)
        if start_f > 0:
            target = start_pts + math.floor(start_f / time_base)
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except FFmpegError:
                container.seek(0)  # unseekable: decode from the beginning and drop frames
        last_pts = None
        last_t = None
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    # No timestamps at all (raw streams): count on from the previous frame.
                    pts = (last_pts if last_pts is not None else start_pts - 1) + max(1, round(1 / (fps * time_base)))
                last_pts = pts
                t = (pts - start_pts) * time_base
                # Half a microsecond of slack: `start` may be a float copy of an exact frame time.
                if t < start_f - _SLACK:
                    continue
                if end_f is not None and t >= end_f - _SLACK:
                    break
                if rotation is None or getattr(frame, "rotation", 0):
                    rotation = _normalize_rotation(getattr(frame, "rotation", 0))
                last_t = t
                yield RawFrame(round(t * fps), float(t), rotation, frame)
            else:  # the stream ended (not a `break` at `end`): did it end where the container says?
                stated = _stated_end(stream, container)
                expected = stated if end_f is None or stated is None else min(stated, float(end_f))
                if stated is not None and last_t is not None and expected - float(last_t) > max(2 / float(fps), 0.25):
                    raise TruncatedVideo(path, float(last_t) + 1 / float(fps), stated)
        except FFmpegError as exc:
            raise InputError(path, f"corrupt video ({_why(exc)})") from None
    finally:
        container.close()


def iter_frames(
    path: str | Path,
    start: float = 0.0,
    end: float | None = None,
    *,
    format: str = "rgb24",
    select: Callable[[int, float], bool] | None = None,
    short_side: int = 0,
) -> Iterator[VideoFrame]:
    """Yield `VideoFrame`s with `start <= time < end`, rotation applied.

    `format`: "rgb24" -> `[H, W, 3] uint8 RGB`; "gray" -> `[H, W] uint8`.
    `select(index, time)`: frames it rejects are decoded (codecs need them) but never converted.
    `short_side`: downscale (never up) during conversion so the short side is this many pixels.
    """
    if format not in ("rgb24", "gray"):
        raise ValueError(f"format must be 'rgb24' or 'gray', not {format!r}")
    for raw in iter_raw_frames(path, start, end):
        if select is not None and not select(raw.index, raw.time):
            continue
        if format == "rgb24":
            img = raw.to_rgb(short_side)
        else:
            w, h = raw.size
            if short_side and short_side < min(w, h):
                s = short_side / min(w, h)
                w, h = max(1, round(w * s)), max(1, round(h * s))
            img = raw.to_gray(w, h)
        yield VideoFrame(raw.index, raw.time, img)


_TIME_RE = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_time(value: str | float | int | None, what: str = "time") -> float | None:
    """Seconds from `12.5`, `"12.5"`, `"MM:SS[.fff]"` or `"HH:MM:SS[.fff]"`; None stays None."""
    if value is None or isinstance(value, (int, float)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InputError(None, f"{what} {value!r}: must be a non-negative number of seconds")
        return None if value is None else float(value)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        m = _TIME_RE.match(text)
        if not m:
            raise InputError(None, f"{what} {value!r}: use seconds (75.5) or HH:MM:SS[.fff] (00:01:15.5)") from None
        hours, minutes, secs = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
        if minutes >= 60 or secs >= 60:
            raise InputError(None, f"{what} {value!r}: minutes and seconds must be below 60")
        seconds = hours * 3600 + minutes * 60 + secs
    return parse_time(seconds, what)

"""Writing a stylized video with PyAV: H.264 at the source's frame times, the source's audio copied.

`VideoWriter` takes upright `[H, W, 3] uint8 RGB` frames with their source times (seconds from the
start of the source's video stream, as `pipelines.data.video.VideoFrame.time` gives them) and:

- encodes H.264 with libx264 (`crf`, `preset`, `chroma` 4:2:0 or 4:4:4), or the first other H.264 / MPEG-4 encoder
  available (the caller is told which, to warn the user);
- keeps every frame's own timestamp (variable frame rate survives), shifted so that `start` is 0;
- writes no rotation metadata (frames arrive upright), so width and height are what a player
  showed for the source;
- copies the source's first audio stream packet by packet, restricted to `[start, end)` and
  interleaved with the video; the audio is re-encoded to AAC only when the output container
  cannot hold its codec.

The caller writes to a temporary path (`fileio.atomic_path`) so that a failure leaves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError

# Containers that can hold H.264: an input in one of these keeps its container, others get .mp4.
H264_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv", ".ts", ".flv", ".avi")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Encoders tried in order; the first is the one users expect, the others are fallbacks.
ENCODERS = ("libx264", "libopenh264", "h264_videotoolbox", "mpeg4")
# Chroma subsampling: 4:2:0 plays everywhere (phones, browsers, QuickTime) but halves colour resolution on a
# grid that does not move with the picture, which adds flicker of its own at a stylized video's saturated
# outlines (docs/benchmarks.md); 4:4:4 adds none and plays in VLC, mpv, ffmpeg-based editors.
CHROMA = ("420", "444")


def output_suffix(input_path: Path) -> str:
    s = input_path.suffix.lower()
    return s if s in H264_CONTAINERS else ".mp4"


def pick_encoder() -> str:
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # PyAV raises UnknownCodecError or ValueError depending on version
            continue
    raise InputError(None, "no H.264 or MPEG-4 video encoder is available in this PyAV/FFmpeg build")


class VideoWriter:
    """Encode frames and mux the source's audio into `path` (normally a temporary file)."""

    def __init__(self, path: Path, source: Path, width: int, height: int, fps: Fraction,
                 start: float = 0.0, end: float | None = None, crf: int = 18, preset: str = "medium",
                 encoder: str | None = None, copy_audio: bool = True, chroma: str = "420"):
        self.path = Path(path)
        self.start = float(start)
        self.end = end
        self.encoder = encoder or pick_encoder()
        if chroma not in CHROMA:
            raise ValueError(f"chroma must be one of {CHROMA}, not {chroma!r}")
        # 4:4:4 only where x264 encodes it (High 4:4:4 Predictive); the fallbacks get 4:2:0.
        self.chroma = chroma if self.encoder == "libx264" else "420"
        # yuv420p needs even sides; an odd source loses its last row/column (reported by the caller).
        sub = 2 if self.chroma == "420" else 1
        self.width, self.height = width - width % sub, height - height % sub
        self.out = av.open(str(self.path), mode="w")
        fps = Fraction(fps) if fps else Fraction(25)
        # 1/90000 s (the MPEG clock) holds the frame times of every common rate exactly or to 6 us.
        self.time_base = Fraction(1, 90000)
        self.vstream = self.out.add_stream(self.encoder, rate=fps)
        self.vstream.width, self.vstream.height = self.width, self.height
        self.vstream.pix_fmt = f"yuv{self.chroma}p"
        cc = self.vstream.codec_context
        cc.time_base = self.time_base
        self.vstream.time_base = self.time_base
        if self.encoder == "libx264":
            self.vstream.options = {"crf": str(int(crf)), "preset": preset}
        elif self.encoder == "mpeg4":
            # No CRF: a fixed quantizer of similar visual quality (2 = best, 31 = worst).
            cc.qscale = max(2, min(31, round(2 + (crf - 0) * 29 / 51)))
            cc.flags |= getattr(av.codec.context.Flags, "qscale", 0x0002)
            cc.global_quality = cc.qscale * 118  # FF_QP2LAMBDA
        else:
            cc.bit_rate = int(width * height * float(fps) * 0.15)
        self._last_pts = -1
        self._video_time = 0.0
        self._audio = _AudioCopy(source, self.out, self.start, end) if copy_audio else None

    @property
    def audio_mode(self) -> str | None:
        return None if self._audio is None or self._audio.stream is None else self._audio.mode

    def write(self, rgb: np.ndarray, time: float) -> None:
        """`rgb`: `[H, W, 3] uint8 RGB` upright; `time`: seconds in the source's video timeline."""
        if rgb.shape[0] != self.height or rgb.shape[1] != self.width:
            rgb = np.ascontiguousarray(rgb[: self.height, : self.width])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        pts = round((time - self.start) / self.time_base)
        pts = max(pts, self._last_pts + 1)  # strictly increasing, whatever rounding did
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self.time_base
        for packet in self.vstream.encode(frame):
            self.out.mux(packet)
        self._video_time = float(pts * self.time_base)
        if self._audio is not None:
            self._audio.mux_until(self._video_time + 0.5)

    def close(self) -> None:
        """Flush the encoder and the rest of the audio, write the trailer."""
        try:
            for packet in self.vstream.encode(None):
                self.out.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(math.inf)
        finally:
            if self._audio is not None:
                self._audio.close()
            self.out.close()

    def abort(self) -> None:
        try:
            if self._audio is not None:
                self._audio.close()
            self.out.close()
        except Exception:
            pass


class _AudioCopy:
    """The source's first audio stream, trimmed to [start, end) of the video timeline."""

    def __init__(self, source: Path, out, start: float, end: float | None):
        self.inp = av.open(str(source))
        self.stream = None
        self.mode = "copy"
        self.out = out
        self.start, self.end = start, end
        if not self.inp.streams.audio:
            return
        a = self.inp.streams.audio[0]
        v = self.inp.streams.video[0] if self.inp.streams.video else None
        # Times are relative to the video stream's start, as the frames' are.
        self.offset = 0.0
        if v is not None and v.start_time is not None:
            self.offset = float(v.start_time * v.time_base)
        self.src = a
        self.tb = Fraction(a.time_base)
        if a.codec_context.name in out.supported_codecs:
            self.stream = out.add_stream_from_template(a)
            self.stream.time_base = self.tb
        else:
            self.mode = "aac"
            self.stream = out.add_stream("aac", rate=a.codec_context.sample_rate or 48000)
            layout = a.codec_context.layout.name if a.codec_context.layout else "stereo"
            self.stream.layout = layout
            self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.stream.rate)
        self._packets: Iterator = self.inp.demux(a)
        self._pending = None
        self._done = False

    def _times(self, pts: int) -> float:
        return float(pts * self.tb) - self.offset

    def mux_until(self, t: float) -> None:
        """Mux source audio whose (video-timeline) time is before `t`."""
        if self.stream is None or self._done:
            return
        while True:
            pkt = self._pending
            if pkt is None:
                try:
                    pkt = next(self._packets)
                except StopIteration:
                    self._finish()
                    return
            if pkt.pts is None or pkt.size == 0:
                self._pending = None
                if pkt.size == 0:  # demux flush packet
                    self._finish()
                    return
                continue
            when = self._times(pkt.pts)
            if when >= t:
                self._pending = pkt
                return
            self._pending = None
            if self.end is not None and when >= self.end:
                self._finish()
                return
            if when < self.start:
                continue
            shift = round((self.start + self.offset) / self.tb)
            if self.mode == "copy":
                pkt.pts -= shift
                if pkt.dts is not None:
                    pkt.dts -= shift
                pkt.stream = self.stream
                self.out.mux(pkt)
            else:
                for frame in pkt.decode():
                    frame.pts = None  # the encoder numbers samples itself, from 0
                    for f in self.resampler.resample(frame):
                        for p in self.stream.encode(f):
                            self.out.mux(p)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self.mode == "aac" and self.stream is not None:
            for f in self.resampler.resample(None):
                for p in self.stream.encode(f):
                    self.out.mux(p)
            for p in self.stream.encode(None):
                self.out.mux(p)

    def close(self) -> None:
        self.inp.close()

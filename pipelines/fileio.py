"""File helpers every stage shares: atomic writes, image decoding to RGB, hashing, discovery.

Images cross module boundaries as numpy arrays `[H, W, 3] uint8 RGB`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import io
import os
import re
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

# OpenCV prints its own decoder errors to stderr ("readHeader ..."); we report unreadable files
# ourselves in one line, so its log is silenced.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")

# The largest image any command decodes, in pixels: a header is read before any pixel is, so a
# "decompression bomb" (a few bytes claiming 30000x30000) is refused with one line instead of filling
# memory. 120 megapixels holds any camera photo (24 MP), an 8K frame (33 MP) and large scans; raise it
# with `--max-pixels` (add-images, stylize) or the ANIMEGAN_MAX_PIXELS environment variable. PIL's own
# bomb check is switched off: it would raise its own error for what this check already refuses.
DEFAULT_MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = None


def max_pixels() -> int:
    """The current limit: ANIMEGAN_MAX_PIXELS when set (the CLI's --max-pixels sets it), else the default."""
    try:
        return max(1, int(os.environ.get("ANIMEGAN_MAX_PIXELS", DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def check_pixels(width: int, height: int, name: str | Path) -> None:
    """Raise `InputError` naming `name` when `width` x `height` is over `max_pixels()`."""
    limit = max_pixels()
    if width * height > limit:
        raise InputError(name, f"{width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
                               f"{limit / 1e6:g}; if the image is real, raise the limit with --max-pixels")


# Quality used whenever we encode lossy images; high because these images are training data.
JPEG_QUALITY = 95
WEBP_QUALITY = 95


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; outputs get the usual permissions instead.
_FILE_MODE = 0o666 & ~_current_umask()


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


NAME_MAX = 255  # bytes in one file name on the common file systems (ext4, APFS, NTFS in UTF-16 units)


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """(prefix, suffix) for `tempfile.mkstemp` beside `path`: `.<stem>.` and `.tmp<suffix>`, the stem cut (on bytes,
    which the file system counts) so that the temporary name fits NAME_MAX even when `path`'s own name just does."""
    suffix = f".tmp{path.suffix}"
    room = NAME_MAX - len(os.fsencode(suffix)) - 2 - 8  # the two dots and mkstemp's 8 random characters
    return f".{os.fsdecode(os.fsencode(path.stem)[:max(1, room)])}.", suffix


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    The temporary name keeps the suffix so that writers which infer the format from the name
    (PyAV, OpenCV) still work. On any exception the temporary file is removed and `path` is
    left as it was: a killed or failed write never leaves a half-written file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _FILE_MODE)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def claim_write(candidates: Iterable[Path], data: bytes, adoptable: Callable[[Path], bool] = lambda p: True) -> Path:
    """Write `data` under the first of `candidates` (all in one folder) that is free, atomically and
    race-free: the bytes go to a temporary file first, and each name is claimed with `os.link`, which
    fails when the name exists, so two processes can never both take one name (the other moves on to
    the next). A name that already holds exactly `data` and is `adoptable` is taken as is (the
    leftover of a killed run: nothing is rewritten). `candidates` must not run out. Returns the path."""
    candidates = iter(candidates)
    first = next(candidates)
    first.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(first)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=first.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        for target in itertools.chain([first], candidates):
            try:
                os.link(tmp, target)
            except FileExistsError:
                try:
                    if adoptable(target) and target.stat().st_size == len(data) and target.read_bytes() == data:
                        return target
                except OSError:
                    pass
                continue
            _fsync_dir(target.parent)
            return target
        raise ValueError("claim_write: the candidate names ran out")
    finally:
        Path(tmp).unlink(missing_ok=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def decode_image(data: bytes, name: str | Path = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to `[H, W, 3] uint8 RGB`, EXIF orientation applied.

    Grayscale becomes three equal channels, 16-bit is scaled to 8-bit, and transparent images
    are composited over white (the usual look of a transparent drawing). Raises `InputError`.
    """
    if not data:
        raise InputError(name, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            check_pixels(*header.size, name)
    except (UnidentifiedImageError, OSError, ValueError):
        pass  # not for PIL to judge: OpenCV below may still read it, or says it cannot
    if not _has_alpha(data) and not _damaged_png(data):
        # OpenCV applies EXIF orientation and depth/channel conversion itself and is the fastest
        # decoder available; PIL below covers what it cannot read.
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if arr is not None:
            return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im)
    except UnidentifiedImageError:
        raise InputError(name, "not a readable image (unrecognised format; animegan reads JPEG, PNG, WebP, BMP and TIFF)") from None
    except Exception as exc:  # PIL raises many types for corrupt data
        raise InputError(name, f"not a readable image ({type(exc).__name__}: {exc})") from None


def _damaged_png(data: bytes) -> bool:
    """Whether PNG data has a chunk whose CRC does not match. Such files go to PIL, which reports them
    in our one line, rather than to OpenCV, whose libpng prints its own "libpng error" line to stderr."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    data = memoryview(data)  # every image decode passes here (training reads each sample): slice, never copy
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return True  # truncated
        if zlib.crc32(data[pos + 4:pos + 8 + length]) != int.from_bytes(data[pos + 8 + length:end], "big"):
            return True
        if data[pos + 4:pos + 8].tobytes() == b"IEND":
            return False
        pos = end
    return True  # no IEND


def _has_alpha(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:  # parses the header only
            return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
                im.mode == "P" and "transparency" in im.info
            )
    except Exception:
        return False


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).copy()
    return np.asarray(im.convert("RGB")).copy()


# The largest file any command reads whole (an image, a manifest, a config): larger ones are refused before reading.
MAX_FILE_BYTES = 2 << 30


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path`, only if it is a regular file of at most `max_bytes` (symlinks followed).

    Opened without blocking, so a FIFO in a file's place is refused at once instead of hanging the command;
    devices (`/dev/zero`), sockets and folders are refused; a file that cannot be read whole (`/proc/self/mem`)
    is an error, not a crash. Every refusal is an `OSError` whose `strerror` says why, so callers' existing
    "cannot read (...)" lines name the file and the reason.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_file_kind(st.st_mode)}, not a regular file", str(path))
        too_big = OSError(errno.EFBIG, f"larger than the {max_bytes / 2**30:g} GiB a file may have here", str(path))
        if st.st_size > max_bytes:
            raise too_big
        chunks, total = [], 0
        while True:
            try:
                chunk = os.read(fd, max(1 << 16, min(st.st_size + 1 - total, 64 << 20)))
            except (SystemError, ValueError, OverflowError) as exc:  # special files of /proc and the like
                raise OSError(errno.EIO, f"cannot be read as a file ({type(exc).__name__})", str(path)) from None
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > max_bytes:  # grew while read, or a size the file system does not report (/proc)
                raise too_big
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as `[H, W, 3] uint8 RGB`; raises `InputError` naming the file."""
    path = Path(path)
    try:
        data = read_regular_file(path)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    return decode_image(data, path)


def encode_image(rgb: np.ndarray, suffix: str) -> bytes:
    """Encode `[H, W, 3] uint8 RGB` in the format named by `suffix` ('.png', '.jpg', ...)."""
    suffix = suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise InputError(None, f"unsupported image format {suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY]
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise InputError(None, f"could not encode image as {suffix}")
    return buf.tobytes()


def write_image(path: str | Path, rgb: np.ndarray) -> bytes:
    """Atomically write `[H, W, 3] uint8 RGB` to `path` (format from its suffix); returns the bytes."""
    path = Path(path)
    data = encode_image(rgb, path.suffix)
    atomic_write_bytes(path, data)
    return data


def iter_files(paths: Iterable[str | Path], accept) -> Iterator[tuple[Path, Path]]:
    """Yield `(file, root)` for every accepted file under `paths`, recursively and sorted.

    `root` is the argument the file was found under (the file itself for a file argument), so
    callers can keep the relative folder structure. Missing paths raise `InputError`.
    """
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file() and accept(x)):
                if not any(part.startswith(".") for part in f.relative_to(p).parts):
                    yield f, p
        elif p.is_file():
            yield p, p
        else:
            try:
                mode = p.stat().st_mode
            except OSError:
                raise InputError(p, "no such file or folder") from None
            raise InputError(p, f"{_file_kind(mode)}, not a regular file")


# Atomic writes leave `.<stem>.<random>.tmp<suffix>` beside their target until the rename; one older
# than this was left by a killed command (a live write renames its file within seconds).
STALE_TEMPORARY_SECONDS = 600
_TEMPORARY_RE = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")


def stale_temporaries(root: Path, now: float | None = None) -> list[Path]:
    """Temporary files of atomic writes under `root` that a killed command left behind."""
    now = time.time() if now is None else now
    found = []
    if not root.is_dir():
        return []
    real_root = root.resolve()
    for f in root.rglob(".*"):
        try:
            if f.is_symlink() or not f.resolve().is_relative_to(real_root):
                continue  # a planted link: never ours, and deleting through it would reach outside `root`
            if f.is_file() and _TEMPORARY_RE.match(f.name) and now - f.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                found.append(f)
        except OSError:
            continue
    return sorted(found)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete what `stale_temporaries` finds (a command's own leftovers from a killed run); returns them."""
    removed = []
    for f in stale_temporaries(root):
        try:
            f.unlink()
            removed.append(f)
        except OSError:
            continue  # gone already, or not ours to delete: not worth stopping a command for
    return removed

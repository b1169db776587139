"""`add-images`: copy image files into a dataset set (`DS/<set>/`), recorded in the manifest.

Storage rule: a file is copied byte for byte when it already is what training reads best, a plain
8-bit RGB JPEG or PNG with no EXIF rotation and no transparency. Anything else (grayscale, CMYK,
alpha, 16-bit, EXIF-rotated, WebP/BMP/TIFF) is decoded to upright 8-bit RGB (`fileio.decode_image`)
and re-encoded: JPEG sources as JPEG (quality `fileio.JPEG_QUALITY`, one generation at 95 is
invisible at training scale and keeps files small), everything else as lossless PNG.

`--size N` scales images whose short side is longer than N down to N (INTER_AREA) before storing them:
training takes `--image-size` crops at the stored scale, so a 12-megapixel photo would otherwise give
crops covering a few percent of it, and every sample would decode the whole file.

Duplicates: the key is the SHA-256 of the bytes that would be stored, compared with the `sha256` of
the set's records (the manifest already keeps it, so no second index is needed). Re-importing the
same files, the common case (running the command twice over a folder), is caught exactly, and
re-encoding is deterministic so converted files are caught too. The same picture saved in two
different files is not treated as a duplicate: a pixel hash would only catch the rare lossless
re-save, and a perceptual hash would drop genuinely different near-identical photos.
"""

from __future__ import annotations

import difflib
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import InputError, PartialFailure
from ..fileio import (NAME_MAX, read_regular_file, IMAGE_EXTENSIONS, claim_write, decode_image, encode_image, is_image_path, iter_files,
                      remove_stale_temporaries, sha256_bytes)
from .derived import resize_short_side
from .manifest import SET_NAME_RE, Dataset, ImportedSource, RecordBatch, make_record, recordable_path, storable_stem
from ..progress import Reporter, plural

# Sets other commands compute; importing into them would break their provenance.
DERIVED_SETS = {"smooth": "make-smooth"}
# Commit to the manifest at least this often, so that a killed import loses little bookkeeping.
COMMIT_EVERY_FILES = 16
COMMIT_EVERY_SECONDS = 2.0  # a kill loses at most this much bookkeeping; files on disk are adopted anyway
_EXIF_ORIENTATION = 0x0112


@dataclass
class ImportSummary:
    set_name: str
    dataset: Path
    imported: int = 0
    copied: int = 0  # of `imported`, stored byte for byte
    converted: int = 0  # of `imported`, decoded and re-encoded
    duplicates: int = 0
    failed: int = 0
    failed_files: list[Path] = field(default_factory=list)
    aborted: bool = False

    def line(self) -> str:
        parts = [f"{self.imported} imported into {self.dataset / self.set_name}"]
        if self.imported:
            parts.append(f"{self.copied} copied as is, {self.converted} converted")
        parts.append(f"{plural(self.duplicates, 'duplicate')} skipped")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)


# The sets the recipes read (and `make-sketch` can stand in for): a name outside these and the dataset's own sets
# is most likely a typo (`--set photos`), which would silently start a set no command reads.
KNOWN_SETS = ("photo", "style", "cartoon", "illustration", "sketch")


def check_set_name(set_name: str, existing: Iterable[str] = (), new_set: bool = True) -> str:
    """`set_name` if it may be imported into; with `new_set` False, it must be a known set or one the dataset
    (`existing`) already has."""
    if not SET_NAME_RE.match(set_name):
        raise InputError(None, f"--set {set_name!r}: use lower-case letters, digits and '_' (e.g. style, photo)")
    if set_name in DERIVED_SETS:
        raise InputError(None, f"--set {set_name}: this set is computed by `animegan {DERIVED_SETS[set_name]}`, not imported")
    known = sorted({*KNOWN_SETS, *existing} - set(DERIVED_SETS))
    if not new_set and set_name not in known:
        close = difflib.get_close_matches(set_name, known, n=1)
        hint = f"did you mean --set {close[0]}? " if close else ""
        raise InputError(None, f"--set {set_name}: no such set in this dataset ({', '.join(known)}); {hint}"
                               f"to start a new set, add --new-set")
    return set_name


def plan_storage(data: bytes, name: str | Path, size: int | None = None) -> tuple[bytes, str, int, int, bool]:
    """Decide how a file is stored: `(stored bytes, suffix, width, height, copied_as_is)`.

    `size`: scale down (never up) so the short side is at most this many pixels; a file that is scaled is
    converted. Raises `InputError` naming `name` when the file is not a readable image.
    """
    fmt = mode = None
    oriented = transparent = wide = False
    try:
        with Image.open(io.BytesIO(data)) as im:  # header only
            fmt, mode = im.format, im.mode
            oriented = im.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None)
            transparent = "transparency" in im.info
            if fmt == "PNG":
                # PIL reports 16-bit RGB PNGs as mode "RGB"; IHDR byte 24 holds the bit depth.
                wide = len(data) > 24 and data[24] != 8
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass  # leave it to decode_image, which tries OpenCV too and raises InputError
    # Decoding fully also validates plain files (a truncated JPEG is caught here, not in training).
    rgb = decode_image(data, name)  # [H, W, 3] uint8 RGB, upright
    scaled = size is not None and min(rgb.shape[:2]) > size
    if scaled:
        rgb = resize_short_side(rgb, size)  # INTER_AREA: downscaling only
    h, w = rgb.shape[:2]
    plain = fmt in ("JPEG", "PNG") and mode == "RGB" and not (oriented or transparent or wide or scaled)
    if plain:
        return data, ".jpg" if fmt == "JPEG" else ".png", w, h, True
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    return encode_image(rgb, suffix), suffix, w, h, False


def _names(directory: Path, stem: str, suffix: str) -> Iterator[Path]:
    """`stem.suffix`, then `stem-1.suffix`, `stem-2.suffix`, ... in `directory`; a stem is cut (on bytes) where a
    numbered name would pass the file system's NAME_MAX, so every name offered can be created."""
    yield directory / f"{stem}{suffix}"
    for n in itertools.count(1):
        tail = f"-{n}{suffix}"
        yield directory / f"{os.fsdecode(os.fsencode(stem)[:NAME_MAX - len(os.fsencode(tail))])}{tail}"


def add_images(
    paths: Iterable[str | Path],
    set_name: str,
    dataset_root: str | Path,
    reporter: Reporter | None = None,
    size: int | None = None,
    new_set: bool = True,
) -> ImportSummary:
    """Import image files and folders (recursively) into `dataset_root/<set_name>/`; with `size`, images
    whose short side is longer are scaled down to it (multi-megapixel photos at a training scale). With
    `new_set` False (the command line's default), a set name that is neither known nor in the dataset is refused.

    Unreadable files are reported one line each with `reporter.warn` and the rest imported; at the
    end `PartialFailure` is raised if any failed (after everything good was committed).
    """
    reporter = reporter or Reporter()
    check_set_name(set_name)
    ds = Dataset.open(dataset_root, create=True)
    check_set_name(set_name, [k for k, v in ds.manifest.sets.items() if v], new_set)
    set_dir = ds.inside_path(f"{set_name}/file").parent  # refused when it leads outside the dataset
    remove_stale_temporaries(set_dir)  # left by an import killed mid-write
    summary = ImportSummary(set_name=set_name, dataset=ds.root)

    files: list[Path] = []
    problems: list[InputError] = []
    for arg in map(Path, paths):
        try:
            # Files named explicitly are tried whatever their extension; folders contribute images only.
            found = [f for f, _ in iter_files([arg], is_image_path if arg.is_dir() else (lambda _p: True))]
            if not found:
                raise InputError(arg, f"holds no image files ({', '.join(IMAGE_EXTENSIONS)}, in it and its subfolders)")
            files.extend(found)
        except InputError as exc:
            problems.append(exc)
            summary.failed += 1
            summary.failed_files.append(arg)
    if not files and problems:  # nothing to import at all: one error, not an empty import that "succeeded"
        for exc in problems[:-1]:
            reporter.warn(str(exc))
        raise problems[-1]
    for exc in problems:
        reporter.warn(str(exc))

    manifest = ds.manifest
    known_hashes = manifest.hashes(set_name)
    taken = {r.path.split("/", 1)[1] for r in manifest.records(set_name) if r.path.count("/") == 1}
    batch = RecordBatch(ds, set_name, every=COMMIT_EVERY_FILES, seconds=COMMIT_EVERY_SECONDS)

    key = f"add-images:{set_name}"
    reporter.start(key, f"import into {set_name}", total=len(files))
    try:
        for src in files:
            if reporter.should_abort():
                summary.aborted = True
                break
            try:
                try:
                    data = read_regular_file(src)
                except OSError as exc:
                    raise InputError(src, f"cannot read ({exc.strerror or exc})") from None
                stored, suffix, w, h, as_is = plan_storage(data, src, size)
                digest = sha256_bytes(stored)
                if digest in known_hashes:
                    summary.duplicates += 1
                    continue
                # The name is claimed on disk, not chosen from this process's view of the manifest:
                # another import into the same set at the same moment can then never overwrite it. A
                # file with these exact bytes that no record lists is a killed import's: adopted.
                stem = storable_stem(src.stem)
                target = claim_write(_names(set_dir, stem, suffix), stored, adoptable=lambda p: p.name not in taken)
                rel = f"{set_name}/{target.name}"
                if stem != src.stem:  # a backslash, bytes that are not UTF-8, or only dots: a record cannot hold it
                    reporter.info(f"{recordable_path(src)}: its name cannot be kept in the manifest; stored as {rel}")
                batch.add(make_record(rel, stored, w, h, ImportedSource(original=recordable_path(src))))
                taken.add(target.name)
                known_hashes.add(digest)
                summary.imported += 1
                if as_is:
                    summary.copied += 1
                else:
                    summary.converted += 1
            except InputError as exc:
                reporter.warn(str(exc))
                summary.failed += 1
                summary.failed_files.append(src)
            finally:
                reporter.advance(key, imported=summary.imported)
            batch.commit_if_due()
    finally:
        # Whatever was written is recorded, even when the loop stops on an unexpected error.
        batch.commit()
        reporter.finish(key)

    reporter.info(summary.line())
    if summary.failed:
        total = summary.failed + summary.imported + summary.duplicates
        raise PartialFailure(f"{summary.failed} of {total} inputs could not be imported (see the warnings above)")
    return summary

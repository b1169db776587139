"""The dataset manifest: one typed `manifest.json` at the root of a dataset folder.

Every command reads and writes datasets through `Dataset`, which validates the file strictly
(errors name the file and the field), migrates older schema versions, and writes atomically
under a lock so that two commands running at once cannot lose each other's records.

Layout on disk::

    DS/manifest.json
    DS/style/<film stem>/<frame>.jpg     frames from extract-frames, or images from add-images
    DS/smooth/<same relative path>       edge-smoothed twins written by make-smooth
    DS/photo/<name>.jpg                  real photos from add-images
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import DatasetError, InputError, describe_validation_error
from ..fileio import read_regular_file, atomic_write_bytes, sha256_bytes

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".manifest.lock"
SCHEMA_VERSION = 1

# Sets the current model families use; the manifest accepts any lower-case name so that later
# families (cartoon images for White-box, sketches for Style2paints) need no schema change.
KNOWN_SETS = {
    "style": "anime frames (the target look)",
    "smooth": "edge-smoothed twins of the style frames (AnimeGAN)",
    "photo": "real photos (the inputs to translate)",
    "cartoon": "cartoon images (White-box Cartoonization, optional; style is used when absent)",
    "illustration": "colour illustrations (Style2paints: the targets and references)",
    "sketch": "line-art sketches of the illustrations (Style2paints; make-sketch, or imported)",
}
MAX_SIDE = 1_000_000  # pixels; a larger recorded width or height means a damaged manifest
SET_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def check_relpath(value: str) -> str:
    """A record path: relative, POSIX separators, normalized, never leaving the dataset."""
    if not isinstance(value, str) or not value:
        raise ValueError("path must be a non-empty string")
    if "\x00" in value:
        raise ValueError(f"path {value!r} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"path {value!r} is not valid Unicode (a lone surrogate)") from None
    if "\\" in value:
        raise ValueError(f"path {value!r} must use '/' separators")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"path {value!r} must be relative to the dataset folder")
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"path {value!r} must be normalized and stay inside the dataset (no '.', '..' or '//')")
    return value


def storable_stem(stem: str, fallback: str = "image") -> str:
    """`stem` as a record path can hold it: each backslash and each byte that is not UTF-8 (Python's
    surrogate escapes of undecodable names) becomes '_', leading dots are dropped (a hidden file, or the
    '.' / '..' of a path), and a stem left empty becomes `fallback`. Names that are fine are unchanged."""
    out = re.sub(r"[\\\x00\ud800-\udfff]", "_", stem).lstrip(".")
    return out or fallback


def recordable_path(path: str | os.PathLike) -> str:
    """An absolute path as the manifest records where a file came from: bytes that are not UTF-8 written as
    `\\xNN` (a manifest is UTF-8 JSON; the name is for people to read, never opened again)."""
    return os.fsencode(str(Path(path).resolve())).decode("utf-8", "backslashreplace")


RelPath = Annotated[str, Field(description="POSIX path relative to the dataset root")]


class _Strict(BaseModel):
    # strict: no silent coercion (true is not 1, "12" is not 12), since a manifest is written by this
    # toolkit and anything else in it means it was edited by hand or damaged.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class FrameSource(_Strict):
    """A frame sampled from a film by extract-frames."""

    kind: Literal["frame"] = "frame"
    film: str = Field(description="the film's path as it was given (absolute)")
    film_sha256: str | None = Field(default=None, description="hash of the film's first and last MiB and size")
    time: float = Field(ge=0, description="presentation time of the frame, in seconds")
    frame_index: int = Field(ge=0, description="index of the frame in decode order of its stream")


class DerivedSource(_Strict):
    """An image computed from another record (make-smooth)."""

    kind: Literal["derived"] = "derived"
    operation: str
    source: RelPath = Field(description="path of the record it was computed from")
    source_sha256: str
    params: dict[str, Any] = Field(default_factory=dict)

    _check_source = field_validator("source")(classmethod(lambda cls, v: check_relpath(v)))


class ImportedSource(_Strict):
    """An image copied into the dataset by add-images."""

    kind: Literal["imported"] = "imported"
    original: str = Field(description="the original file's path (absolute)")


Provenance = Annotated[Union[FrameSource, DerivedSource, ImportedSource], Field(discriminator="kind")]


class Record(_Strict):
    path: RelPath
    width: int = Field(gt=0, le=MAX_SIDE)
    height: int = Field(gt=0, le=MAX_SIDE)
    bytes: int = Field(ge=0, le=2**50, description="file size, for a cheap staleness check")
    sha256: str
    source: Provenance

    _check_path = field_validator("path")(classmethod(lambda cls, v: check_relpath(v)))

    @field_validator("sha256")
    @classmethod
    def _check_hash(cls, v: str) -> str:
        if not SHA256_RE.match(v):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return v


class ExtractionState(_Strict):
    """Progress of extract-frames on one film with one set of options, for resume."""

    film: str
    options: dict[str, Any]
    done_until: float = Field(ge=0, description="seconds of the film fully processed")
    complete: bool = False
    kept: int = Field(default=0, ge=0)


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    created: str = Field(default_factory=lambda: _now())
    updated: str = Field(default_factory=lambda: _now())
    sets: dict[str, list[Record]] = Field(default_factory=dict)
    extractions: dict[str, ExtractionState] = Field(default_factory=dict)

    @field_validator("sets")
    @classmethod
    def _check_sets(cls, sets: dict[str, list[Record]]) -> dict[str, list[Record]]:
        for name, records in sets.items():
            if not SET_NAME_RE.match(name):
                raise ValueError(f"set name {name!r} must be lower-case letters, digits and '_'")
            seen: set[str] = set()
            for r in records:
                if r.path in seen:
                    raise ValueError(f"set {name!r} lists {r.path!r} twice")
                seen.add(r.path)
        return sets

    # -- queries and edits (callers edit inside Dataset.transaction) ----------------------
    def records(self, set_name: str) -> list[Record]:
        return self.sets.get(set_name, [])

    def find(self, set_name: str, path: str) -> Record | None:
        for r in self.sets.get(set_name, []):
            if r.path == path:
                return r
        return None

    def put(self, set_name: str, record: Record) -> None:
        """Add `record`, replacing a record with the same path in that set."""
        if not SET_NAME_RE.match(set_name):
            raise DatasetError(f"invalid set name {set_name!r}")
        records = self.sets.setdefault(set_name, [])
        for i, r in enumerate(records):
            if r.path == record.path:
                records[i] = record
                return
        records.append(record)

    def remove(self, set_name: str, path: str) -> bool:
        records = self.sets.get(set_name, [])
        for i, r in enumerate(records):
            if r.path == path:
                del records[i]
                return True
        return False

    def hashes(self, set_name: str) -> set[str]:
        return {r.sha256 for r in self.sets.get(set_name, [])}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Migrations: MIGRATIONS[v] turns the raw JSON of schema version v into version v + 1.
# Version 1 is the first released layout, so the table is empty today; `_migrate` applies
# whatever steps a future version adds, and tests exercise it with a registered step.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _migrate(raw: dict[str, Any], where: Path) -> dict[str, Any]:
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):  # JSON true is a bool, and bool is an int in Python
        raise DatasetError(f"{where}: schema_version: missing or not an integer")
    if version > SCHEMA_VERSION:
        raise DatasetError(
            f"{where}: schema_version {version} is newer than this animegan understands ({SCHEMA_VERSION}); upgrade animegan"
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise DatasetError(f"{where}: schema_version {version} cannot be migrated (no migration from it)")
        try:
            raw = step(dict(raw))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{where}: cannot migrate from schema_version {version} ({type(exc).__name__}: {exc})") from None
        new_version = raw.get("schema_version")
        # A step that forgets to bump the version would otherwise loop forever.
        if not isinstance(new_version, int) or new_version <= version:
            raise DatasetError(f"{where}: migration from schema_version {version} did not advance the version")
        version = new_version
    return raw


def parse_manifest(data: bytes, where: Path) -> Manifest:
    """Parse and validate manifest bytes; errors name the file and the offending field."""
    try:
        raw = json.loads(data)
    except ValueError as exc:  # JSON and UTF-8 errors, and numbers past Python's 4300-digit limit
        raise DatasetError(f"{where}: not valid JSON ({str(exc).splitlines()[0][:160]})") from None
    except RecursionError:
        raise DatasetError(f"{where}: nested too deeply to be a dataset manifest") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: top level must be a JSON object")
    raw = _migrate(raw, where)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise DatasetError(f"{where}: {describe_validation_error(exc)}") from None


class Dataset:
    """A dataset folder. Read with `.manifest`; change only inside `with ds.transaction() as m:`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST_NAME
        self._lock = FileLock(str(self.root / LOCK_NAME))
        self._manifest: Manifest | None = None

    @classmethod
    def open(cls, root: str | Path, create: bool = False) -> "Dataset":
        ds = cls(root)
        if not ds.manifest_path.exists():
            if not create:
                raise DatasetError(
                    f"{ds.manifest_path}: no dataset here; create one with `animegan add-images` or `animegan extract-frames`"
                )
            if ds.root.exists() and not ds.root.is_dir():
                raise DatasetError(f"{ds.root}: exists and is not a folder")
            ds.root.mkdir(parents=True, exist_ok=True)
            with ds.transaction():
                pass
        return ds

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = self._read()
        return self._manifest

    def reload(self) -> Manifest:
        self._manifest = None
        return self.manifest

    def _read(self) -> Manifest:
        try:
            data = read_regular_file(self.manifest_path)
        except FileNotFoundError:
            raise DatasetError(f"{self.manifest_path}: no dataset here") from None
        except OSError as exc:  # a folder named manifest.json, no permission, ...
            raise DatasetError(f"{self.manifest_path}: cannot read the manifest ({exc.strerror or exc})") from None
        return parse_manifest(data, self.manifest_path)

    def manifest_sha256(self) -> str:
        return sha256_bytes(read_regular_file(self.manifest_path))

    @contextlib.contextmanager
    def transaction(self, timeout: float = 60.0) -> Iterator[Manifest]:
        """Lock, re-read the newest manifest, yield it for editing, then write it atomically.

        If the body raises, nothing is written. Re-reading under the lock is what keeps
        concurrent writers from overwriting each other's records.
        """
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise DatasetError(f"{self.root / LOCK_NAME}: dataset is locked by another command for over {timeout:.0f} s") from None
        try:
            manifest = self._read() if self.manifest_path.exists() else Manifest()
            yield manifest
            manifest.updated = _now()
            data = json.dumps(manifest.model_dump(mode="json"), indent=1, ensure_ascii=False).encode() + b"\n"
            # Validate what we are about to write, so a bug can never store an unreadable manifest.
            parse_manifest(data, self.manifest_path)
            atomic_write_bytes(self.manifest_path, data)
            self._manifest = manifest
        finally:
            self._lock.release()

    def require_files(self, set_names: list[str] | tuple[str, ...]) -> None:
        """Raise one `DatasetError` line when files that these sets list are gone (deleted by hand, say),
        naming the first and saying how to repair the manifest; a stat per record."""
        gone = [r.path for s in set_names for r in self.manifest.records(s) if not self.abspath(r.path).is_file()]
        if gone:
            n = len(gone)
            raise DatasetError(
                f"{self.root}: {n} file{'s' if n != 1 else ''} listed in the manifest {'are' if n != 1 else 'is'} gone "
                f"(first: {gone[0]}); run `animegan dataset {self.root} --prune` to drop {'them' if n != 1 else 'it'} "
                f"(and their derived twins) from the manifest"
            )

    def abspath(self, relpath: str) -> Path:
        return self.root / Path(*check_relpath(relpath).split("/"))

    def inside_path(self, relpath: str) -> Path:
        """`abspath(relpath)` for a write, rename or delete: refused (`InputError`) when its folder leads out of
        the dataset on the real filesystem (a symbolic link, `smooth/` itself or one inside it, pointing
        elsewhere: a received dataset may hold such links). The last component may be a link: a rename
        replaces the link and a delete removes it, neither follows it."""
        path = self.abspath(relpath)
        real = path.parent.resolve()
        if not real.is_relative_to(self.root.resolve()):
            raise InputError(path, f"its folder leads outside the dataset (through a symbolic link, to {real}); "
                                   f"refused: nothing is written or deleted there")
        return path

    def relpath(self, path: Path) -> str:
        """The record path for a file under the dataset root."""
        return check_relpath(Path(path).resolve().relative_to(self.root.resolve()).as_posix())


def make_record(relpath: str, data: bytes, width: int, height: int, source: FrameSource | DerivedSource | ImportedSource) -> Record:
    """The record for an image whose encoded bytes `data` were (or are about to be) stored at `relpath`."""
    return Record(path=relpath, width=width, height=height, bytes=len(data), sha256=sha256_bytes(data), source=source)


class RecordBatch:
    """Records of one set waiting to be committed, written in one transaction per `every` records or
    `seconds`: long commands neither rewrite the manifest for every file nor lose more than one batch
    when killed (the files themselves are already on disk; a re-run re-records them).

    `on_commit(manifest)` runs inside each transaction, for state that must be saved with the records
    (extract-frames' resume point).
    """

    def __init__(self, ds: Dataset, set_name: str, every: int = 64, seconds: float = 10.0,
                 on_commit: Callable[[Manifest], None] | None = None):
        self.ds, self.set_name, self.every, self.seconds, self.on_commit = ds, set_name, every, seconds, on_commit
        self.pending: list[Record] = []
        self._last = time.monotonic()

    def add(self, record: Record) -> None:
        self.pending.append(record)

    def due(self) -> bool:
        return len(self.pending) >= self.every or (bool(self.pending) and time.monotonic() - self._last > self.seconds)

    def commit_if_due(self) -> None:
        if self.due():
            self.commit()

    def commit(self) -> None:
        if self.pending or self.on_commit is not None:
            with self.ds.transaction() as m:
                for rec in self.pending:
                    m.put(self.set_name, rec)
                if self.on_commit is not None:
                    self.on_commit(m)
        self.pending = []
        self._last = time.monotonic()

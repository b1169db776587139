"""`animegan dataset`: what a dataset holds, and (`--check`) whether its files still match the manifest.

Without `check` only the manifest and file sizes are read, so the summary is instant even for
large datasets; `check` re-hashes every file.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AnimeganError, InputError
from ..fileio import (read_regular_file, atomic_write_bytes, is_image_path, remove_stale_temporaries, sha256_bytes, sha256_file,
                      stale_temporaries)
from .manifest import KNOWN_SETS, Dataset, DerivedSource, Record
from ..progress import Reporter

# Problem lines listed by the CLI before it summarizes the rest with a count.
MAX_LISTED_PROBLEMS = 20


@dataclass
class Spread:
    """min / median / max of a list of integers (0s for an empty set)."""

    min: int = 0
    median: float = 0.0
    max: int = 0

    @classmethod
    def of(cls, values: list[int]) -> "Spread":
        if not values:
            return cls()
        return cls(min(values), float(statistics.median(values)), max(values))


@dataclass
class SetSummary:
    name: str
    description: str
    count: int
    width: Spread
    height: Spread
    bytes_on_disk: int  # sizes of the files that exist
    missing: int  # listed, file absent
    stale: int  # file size differs from the record
    modified: int | None  # hash differs from the record (None: not checked)
    out_of_date: int | None  # smooth twins whose style source changed or vanished (None: not a derived set)
    untracked: int  # image files in the set's folder that no record lists (information, not a problem)


@dataclass
class DatasetSummary:
    root: str
    manifest: str
    schema_version: int
    created: str
    updated: str
    checked: bool
    sets: list[SetSummary] = field(default_factory=list)
    extractions: int = 0  # films with extract-frames resume state
    problems: list[str] = field(default_factory=list)  # one line each: file and problem
    temporaries: int = 0  # stale temporary files of killed commands (`--prune` deletes them)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def summarize(dataset_root: str | Path, check: bool = False, reporter: Reporter | None = None) -> DatasetSummary:
    """Summarize the dataset at `dataset_root`; with `check`, re-hash every file.

    Missing, stale (size changed), modified (hash changed, `check` only) files and smooth twins
    out of date with their style source each add a problem line. Raises `DatasetError` when the
    manifest itself is missing or invalid.
    """
    reporter = reporter or Reporter()
    ds = Dataset.open(dataset_root)
    m = ds.manifest
    summary = DatasetSummary(
        root=str(ds.root),
        manifest=str(ds.manifest_path),
        schema_version=m.schema_version,
        created=m.created,
        updated=m.updated,
        checked=check,
        extractions=len(m.extractions),
    )
    total = sum(len(r) for r in m.sets.values())
    if check:
        reporter.start("check", "hashing files", total=total)
    hashes = {r.path: r.sha256 for records in m.sets.values() for r in records}
    listed = {r.path for records in m.sets.values() for r in records}
    for name in sorted(m.sets):
        records = m.sets[name]
        on_disk = missing = stale = modified = out_of_date = 0
        derived = any(isinstance(r.source, DerivedSource) for r in records)
        for r in records:
            path = ds.abspath(r.path)
            try:
                size = path.stat().st_size
            except OSError:
                missing += 1
                summary.problems.append(f"{r.path}: missing (listed in set {name!r})")
                size = None
            if size is not None:
                on_disk += size
                if size != r.bytes:
                    stale += 1
                    summary.problems.append(f"{r.path}: size changed ({r.bytes} bytes recorded, {size} on disk)")
                elif check and sha256_file(path) != r.sha256:
                    modified += 1
                    summary.problems.append(f"{r.path}: contents changed since it was recorded (hash differs)")
            if isinstance(r.source, DerivedSource):
                src_hash = hashes.get(r.source.source)
                if src_hash is None:
                    out_of_date += 1
                    summary.problems.append(f"{r.path}: its source {r.source.source} is no longer in the dataset (run make-smooth)")
                elif src_hash != r.source.source_sha256:
                    out_of_date += 1
                    summary.problems.append(f"{r.path}: out of date with {r.source.source} (run make-smooth)")
            if check:
                reporter.advance("check")
        summary.sets.append(
            SetSummary(
                name=name,
                description=KNOWN_SETS.get(name, ""),
                count=len(records),
                width=Spread.of([r.width for r in records]),
                height=Spread.of([r.height for r in records]),
                bytes_on_disk=on_disk,
                missing=missing,
                stale=stale,
                modified=modified if check else None,
                out_of_date=out_of_date if derived else None,
                untracked=_untracked(ds.root / name, ds.root, listed),
            )
        )
    if check:
        reporter.finish("check")
    summary.temporaries = len(stale_temporaries(ds.root))
    # A smooth set is expected once there are style images: missing entirely is worth one line.
    if m.records("style") and not m.records("smooth"):
        reporter.info("no smooth set yet: AnimeGAN training needs one (run `animegan make-smooth`)")
    return summary


def _untracked(folder: Path, root: Path, listed: set[str]) -> int:
    if not folder.is_dir():
        return 0
    n = 0
    for f in folder.rglob("*"):
        rel = f.relative_to(root)
        # Hidden names are atomic-write temporaries or tool droppings, not user images.
        if f.is_file() and is_image_path(f) and not any(p.startswith(".") for p in rel.parts):
            n += rel.as_posix() not in listed
    return n


# ---- prune ----------------------------------------------------------------------------------------

@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)  # records whose file was gone
    removed_twins: list[str] = field(default_factory=list)  # derived records (and files) of removed or gone sources
    rerecorded: list[str] = field(default_factory=list)  # records whose file changed: new size, hash, pixel size
    stale_twins: list[str] = field(default_factory=list)  # derived records now out of date (make-smooth remakes them)
    unreadable: list[str] = field(default_factory=list)  # changed files that no longer decode as images: left as they are
    temporaries: list[str] = field(default_factory=list)  # stale temporary files deleted

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.removed_twins or self.rerecorded or self.temporaries)


# The derived files a prune is about to delete, written inside its manifest transaction: a prune killed after the
# manifest no longer lists them, but before they were deleted, leaves this list, and the next prune finishes it.
PRUNE_JOURNAL = ".prune-pending.json"


def _delete_twins(ds: Dataset, files: list[str], reporter: Reporter) -> list[str]:
    """Delete the derived files `files` (relative paths) that the manifest does not list (any more); the deleted ones."""
    listed = {r.path for recs in ds.reload().sets.values() for r in recs}
    deleted = []
    for rel in files:
        if rel in listed:  # listed again (or the kill came before the manifest was written): not ours to delete
            continue
        try:
            path = ds.inside_path(rel)  # the folder is checked; a link itself is removed, not followed
            if path.exists() or path.is_symlink():
                path.unlink()
                deleted.append(rel)
        except InputError as exc:
            reporter.warn(str(exc))
        except ValueError as exc:  # a crafted journal (a dataset received from someone else): not a dataset path
            reporter.warn(f"{ds.root / PRUNE_JOURNAL}: entry refused, {exc}")
        except OSError as exc:
            reporter.warn(f"{ds.abspath(rel)}: could not delete ({exc.strerror or exc})")
    return deleted


def _finish_killed_prune(ds: Dataset, reporter: Reporter) -> list[str]:
    """The derived files a killed prune had dropped from the manifest but not yet deleted: delete them now."""
    journal = ds.root / PRUNE_JOURNAL
    try:
        files = json.loads(journal.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reporter.warn(f"{journal}: unreadable journal of a killed prune ({exc}); ignored")
        journal.unlink(missing_ok=True)
        return []
    deleted = _delete_twins(ds, [f for f in files if isinstance(f, str)], reporter)
    journal.unlink(missing_ok=True)
    return deleted


def prune(dataset_root: str | Path, reporter: Reporter | None = None) -> PruneResult:
    """Make the manifest match the files again after hand edits: drop records whose file is gone
    (with every record derived from them, and those derived files), re-record files that changed
    (their derived twins become out of date, so make-smooth remakes them), delete stale temporaries.

    Files are hashed outside the lock; the edit re-checks under the lock that each record is still the
    one hashed, so a command running at the same time loses nothing.
    """
    from ..fileio import decode_image

    reporter = reporter or Reporter()
    ds = Dataset.open(dataset_root)
    result = PruneResult()
    result.removed_twins.extend(_finish_killed_prune(ds, reporter))
    m = ds.manifest
    gone: set[tuple[str, str]] = set()
    updates: dict[tuple[str, str], tuple[str, Record]] = {}  # (set, path) -> (old sha, new record)
    total = sum(len(r) for r in m.sets.values())
    reporter.start("prune", "checking files", total=total)
    for name, records in m.sets.items():
        for r in records:
            path = ds.abspath(r.path)
            try:
                data = read_regular_file(path)
            except FileNotFoundError:
                gone.add((name, r.path))
                reporter.advance("prune")
                continue
            except OSError as exc:
                result.unreadable.append(f"{r.path}: cannot read ({exc.strerror or exc})")
                reporter.advance("prune")
                continue
            sha = sha256_bytes(data)
            if sha != r.sha256 or len(data) != r.bytes:
                try:
                    img = decode_image(data, path)
                except AnimeganError as exc:
                    result.unreadable.append(f"{exc}")
                else:
                    updates[(name, r.path)] = (r.sha256, r.model_copy(update={
                        "bytes": len(data), "sha256": sha, "width": int(img.shape[1]), "height": int(img.shape[0])}))
            reporter.advance("prune")
    reporter.finish("prune")

    twin_files: list[str] = []
    with ds.transaction() as m:
        current = {(s, r.path): r for s, recs in m.sets.items() for r in recs}
        for key in sorted(gone):
            if key in current and not ds.abspath(key[1]).exists():
                m.remove(*key)
                result.removed.append(key[1])
        for key, (old_sha, new) in sorted(updates.items()):
            if key in current and current[key].sha256 == old_sha:
                m.put(key[0], new)
                result.rerecorded.append(key[1])
        # Derived records whose source record is gone go too; those whose source changed are now
        # out of date (their source_sha256 no longer matches) and are remade by their command.
        listed = {r.path: r.sha256 for recs in m.sets.values() for r in recs}
        for s, recs in m.sets.items():
            for r in list(recs):
                if isinstance(r.source, DerivedSource):
                    if r.source.source not in listed:
                        m.remove(s, r.path)
                        result.removed_twins.append(r.path)
                        twin_files.append(r.path)
                    elif r.source.source in result.rerecorded:
                        result.stale_twins.append(r.path)
        if twin_files:  # written before the manifest: a kill from here on leaves the list for the next prune
            atomic_write_bytes(ds.root / PRUNE_JOURNAL, json.dumps({"files": twin_files}).encode())
    # Derived files are the toolkit's own output: deleted with their record.
    _delete_twins(ds, twin_files, reporter)
    (ds.root / PRUNE_JOURNAL).unlink(missing_ok=True)
    result.temporaries = [f.relative_to(ds.root).as_posix() for f in remove_stale_temporaries(ds.root)]
    return result

"""What made each output: the record behind `stylize`'s and `colorize`'s "up to date".

An output is up to date only when it was made from the same input (size and modification time), by the same
weights (their content's SHA-256, not the file's date: `cp -p` keeps a date) and with the same options that
change pixels (stylize: `--max-side`, `--tile`, `--overlap`, `--precision`; for videos also `--start`, `--end`,
`--crf`, `--preset`, `--chroma`, `--stabilize`; colorize: the reference, `--keep-lines`, `--match-colors`,
`--invert`, `--max-side`, `--precision`, `--vgg-weights`). A video stylized with `--end 1` is then redone for the
whole video.

The record is `OUT/.animegan-made.json` (`{"version": 1, "outputs": {relative path: {"input": [size, mtime_ns],
"recipe": key}}}`), written atomically under a lock, in batches (`MadeWith.flush`): an output whose entry a
killed run had not yet written is simply made again. An output folder without a record (made before it
existed) keeps the old rule: newer than its input and the weights file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..fileio import read_regular_file, atomic_write_bytes, sha256_file

RECORD_NAME = ".animegan-made.json"
FLUSH_EVERY = 32  # outputs
FLUSH_SECONDS = 10.0


def recipe_key(weights_sha256: str, options: dict[str, Any]) -> str:
    """A short key for (weights content, pixel-changing options)."""
    text = json.dumps({"weights": weights_sha256, **options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def weights_sha256(path: Path) -> str:
    """SHA-256 of the weights file behind `path` (a run folder's generator.safetensors, or the file)."""
    from ..models.weight_files import resolve_weights_file

    return sha256_file(resolve_weights_file(path))


def input_signature(path: Path) -> list[int]:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


class MadeWith:
    """The record of one output folder. `fresh(src, dst, key, ...)` says whether `dst` is up to date for `key`
    (`recipe_key`); `add(src, dst, key)` notes an output just written; `flush()` writes what was noted (also called
    by `add` every FLUSH_EVERY outputs or FLUSH_SECONDS)."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RECORD_NAME
        self.exists = self.path.is_file()
        self.entries = self._read()
        self._pending: dict[str, dict[str, Any]] = {}
        self._last_flush = time.monotonic()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(read_regular_file(self.path))
            outputs = data.get("outputs") if isinstance(data, dict) and data.get("version") == 1 else None
            return {k: v for k, v in outputs.items() if isinstance(v, dict)} if isinstance(outputs, dict) else {}
        except (OSError, ValueError):
            return {}  # none yet, or damaged: every output is made again, which is always safe

    def _rel(self, dst: Path) -> str:
        try:
            return Path(os.path.abspath(dst)).relative_to(os.path.abspath(self.out_dir)).as_posix()
        except ValueError:
            return Path(os.path.abspath(dst)).as_posix()

    def fresh(self, src: Path, dst: Path, key: str, legacy_newer_than: float) -> bool:
        """Whether `dst` was made from `src` as it is now, with this run's weights and options. In a folder
        without a record: whether `dst` is newer than `src` and `legacy_newer_than` (the old rule)."""
        try:
            if not dst.is_file():
                return False
            if not self.exists:
                t = dst.stat().st_mtime
                return t > src.stat().st_mtime and t > legacy_newer_than
            entry = self.entries.get(self._rel(dst))
            return bool(entry) and entry.get("recipe") == key and entry.get("input") == input_signature(src)
        except OSError:
            return False

    def add(self, src: Path, dst: Path, key: str) -> None:
        try:
            self._pending[self._rel(dst)] = {"input": input_signature(src), "recipe": key}
        except OSError:
            return  # the input vanished after it was read: the output is made again next time
        if len(self._pending) >= FLUSH_EVERY or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=60):
            self.entries = self._read()  # another run into the same folder may have added its own
            self.entries.update(self._pending)
            atomic_write_bytes(self.path, json.dumps({"version": 1, "outputs": self.entries}, indent=1,
                                                      sort_keys=True).encode())
        self.exists = True
        self._pending.clear()
        self._last_flush = time.monotonic()

"""How long-running pipelines report progress without knowing about any console library.

A pipeline receives a `Reporter` and calls it; the CLI passes one that draws rich progress
bars, tests pass `Reporter()` (silent) or a `RecordingReporter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Reporter:
    """Silent by default; subclasses override what they display.

    - `start(key, description, total)` opens a progress task (`total=None`: unknown length).
    - `advance(key, n=1, **fields)` moves it on; `fields` are live values (losses, fps).
    - `finish(key)` closes it.
    - `info` / `warn` are one-line messages; `warn` is for a skipped or failed input.
    - `should_abort()` lets the caller stop a long loop cleanly (Ctrl-C handling, tests).
    """

    def start(self, key: str, description: str, total: int | None = None, done: int = 0) -> None:
        """A task of `total` units (None: unknown) of which `done` are already done (a resumed run's)."""

    def advance(self, key: str, n: int = 1, **fields: Any) -> None:
        pass

    def finish(self, key: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def should_abort(self) -> bool:
        return False


@dataclass
class RecordingReporter(Reporter):
    """Keeps every message; used by tests to check what a user would have been told."""

    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    advanced: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int | None] = field(default_factory=dict)

    def start(self, key: str, description: str, total: int | None = None, done: int = 0) -> None:
        self.totals[key] = total

    def advance(self, key: str, n: int = 1, **fields: Any) -> None:
        self.advanced[key] = self.advanced.get(key, 0) + n

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 frame`, `2 frames`, `0 frames`; `many` for irregular plurals (`plural(2, "copy", "copies")`)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"

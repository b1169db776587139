"""The console edge: rich progress for pipelines, and domain errors turned into one line + exit code."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipelines.errors import AnimeganError, describe_os_error
from pipelines.progress import Reporter

# Messages go to stderr so that stdout stays clean for what a command prints as its result.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

T = TypeVar("T")


# Without a terminal (output to a log file, a scheduler, CI) a live bar is never drawn: a plain line per task every
# this many seconds says how far it is, so a 20-minute stylize is not silent until it ends.
PLAIN_EVERY_S = 30.0


@dataclass
class _PlainTask:
    description: str
    total: int | None
    done: int = 0
    live: str = ""
    started: float = field(default_factory=time.monotonic)
    said: float = field(default_factory=time.monotonic)
    before: int = 0  # done by an earlier run (a resume): counted in the total, not in the rate
    # Where the last line was said (time, count): the time left comes from the pace since then, not since the start.
    # A training run's GAN phase is several times slower per step than its init phase (the demo on an AVX2 CPU: 3.3
    # against 0.75 steps/s), and the average over both said "about 1 min 30 s left" for seven minutes.
    mark: tuple[float, int] | None = None

    def line(self, final: bool = False) -> str:
        now = time.monotonic()
        elapsed = now - self.started
        count = f"{self.done}/{self.total} ({self.done / self.total:.0%})" if self.total else f"{self.done}"
        left = ""
        since, done_then = self.mark if self.mark is not None and self.mark[1] < self.done else (self.started, self.before)
        if self.total and done_then < self.done < self.total and not final:
            left = f", about {_duration((now - since) * (self.total - self.done) / (self.done - done_then))} left"
        return (f"{self.description}: {'done, ' if final else ''}{count} in {_duration(elapsed)}{left}"
                + (f"  {self.live}" if self.live else ""))


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


class RichReporter(Reporter):
    """Draws one progress bar per pipeline task; live fields are shown after the bar. Without a terminal, plain
    progress lines every PLAIN_EVERY_S seconds instead (and a last one for a task that took that long)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._plain: dict[str, _PlainTask] | None = None  # tasks, when stderr is not a terminal
        self.warnings = 0
        self.stop_signal: int | None = None  # set by `graceful_stop` when SIGINT/SIGTERM asked for a stop

    def should_abort(self) -> bool:
        return self.stop_signal is not None

    def __enter__(self) -> "RichReporter":
        if not self.quiet and not err_console.is_terminal:
            self._plain = {}
        elif not self.quiet:
            # At 80 columns a full row (spinner, name, bar, M/N, elapsed, eta, live values) does not fit and
            # rich cuts every column to "…": narrow terminals get a short bar and no elapsed time.
            narrow = err_console.width < 110
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=10 if narrow else 40),
                MofNCompleteColumn(),
                *(() if narrow else (TimeElapsedColumn(),)),
                TextColumn("eta"),
                TimeRemainingColumn(compact=narrow),
                TextColumn("{task.fields[live]}"),
                console=err_console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, key: str, description: str, total: int | None = None, done: int = 0) -> None:
        if self._plain is not None:
            self._plain[key] = _PlainTask(description, total, done=done, before=done)
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(description, total=total, completed=done, live="")

    def advance(self, key: str, n: int = 1, **fields: Any) -> None:
        task = self._plain.get(key) if self._plain is not None else None
        if task is not None:
            task.done += n
            if fields:
                task.live = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
            if time.monotonic() - task.said >= PLAIN_EVERY_S:
                task.said = time.monotonic()
                self._print(task.line(), "", soft_wrap=True)
                task.mark = (task.said, task.done)
        if self._progress is not None and key in self._tasks:
            live = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
            self._progress.update(self._tasks[key], advance=n, **({"live": live} if fields else {}))

    def finish(self, key: str) -> None:
        task = self._plain.pop(key, None) if self._plain is not None else None
        if task is not None and time.monotonic() - task.started >= PLAIN_EVERY_S:
            self._print(task.line(final=True), "", soft_wrap=True)
        if self._progress is not None and key in self._tasks:
            task = self._tasks.pop(key)
            t = self._progress.tasks[task] if isinstance(task, int) and task < len(self._progress.tasks) else None
            if t is not None and t.total is None:
                self._progress.update(task, total=t.completed)

    def _print(self, message: str, style: str, soft_wrap: bool = False) -> None:
        console = self._progress.console if self._progress is not None else err_console
        console.print(message, style=style, markup=False, soft_wrap=soft_wrap)

    def info(self, message: str) -> None:
        if not self.quiet:
            self._print(message, "")

    def warn(self, message: str) -> None:
        self.warnings += 1
        # One line however long, like errors: a file name is never broken across lines (copy, grep).
        self._print(f"warning: {message}", "yellow", soft_wrap=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run(fn: Callable[[], T]) -> T:
    """Call `fn`; a domain error becomes `error: <one line>` on stderr and its exit code."""
    try:
        return fn()
    except AnimeganError as exc:
        err_console.print(f"error: {exc}", style="bold red", markup=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted", style="bold red")
        raise typer.Exit(130) from None
    except OSError as exc:
        # A full disk, a read-only folder, a vanished mount: the system's reason and the file, on one
        # line. Every output is written to a temporary name first, so nothing half-written is left.
        err_console.print(f"error: {describe_os_error(exc)}", style="bold red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def graceful_stop(reporter: RichReporter) -> Iterator[None]:
    """SIGINT (Ctrl-C) or SIGTERM (schedulers, `docker stop`) asks the pipeline to stop at its next safe
    point (`reporter.should_abort()`), where it saves its state; a second Ctrl-C stops at once."""
    if threading.current_thread() is not threading.main_thread():  # signals can only be handled there
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if reporter.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if reporter.stop_signal is None:
            reporter.stop_signal = signum
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            reporter._print(f"{name}: stopping after the current step and saving a checkpoint "
                            f"(Ctrl-C again to stop at once, losing the steps since the last checkpoint)", "yellow")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"error: {message}", style="bold red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def is_interactive() -> bool:
    return sys.stderr.isatty()

"""Worker processes that end with the command that started them.

A pool's workers normally learn that their parent is gone only when it closes the pool; a parent
killed with SIGKILL (or by the OOM killer) never does, and its workers would go on writing into the
dataset for as long as they have work, with the fork server they came from. `die_with(pid)`, run in a
worker's initializer, watches the parent from a daemon thread and ends the worker within a second
of the parent's death.
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of `pid` from Linux's /proc; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except FileNotFoundError:
        return ("X", "")  # no such process (any more)
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # after the command name, which may hold spaces and ')'
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _alive(pid: int, started: str | None = None) -> bool:
    """Whether `pid` still runs: not gone, not a zombie (a dead process its own parent has not reaped yet,
    which signal 0 still reaches), and not a new process that reused the number (`started`: its start time)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (cannot be our parent, but it is alive)
        return True
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (macOS): signal 0 is all there is
        return True
    state, start = stat
    return state not in ("Z", "X", "x") and (started is None or start == started)


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    return pid > 0 and _alive(pid)


def die_with(parent_pid: int) -> None:
    """End this process (exit code 1, no clean-up: the parent that would use the results is gone)
    when `parent_pid` has exited, even while it lingers as an unreaped zombie."""
    if parent_pid == os.getpid():
        return
    stat = _proc_stat(parent_pid)
    started = stat[1] if stat is not None and stat[1] else None

    def watch() -> None:
        while _alive(parent_pid, started):
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (cannot be our parent, but it is alive)
        return True
    return True


def die_with(parent_pid: int) -> None:
    """End this process (exit code 1, no clean-up: the parent that would use the results is gone)
    when `parent_pid` no longer exists."""
    if parent_pid == os.getpid():
        return

    def watch() -> None:
        while _alive(parent_pid):
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()

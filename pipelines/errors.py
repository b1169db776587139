"""Domain errors. The CLI turns each into one line on stderr and a non-zero exit code."""

from __future__ import annotations

from pathlib import Path


class AnimeganError(Exception):
    """Base class: `str(err)` is a complete one-line message for the user."""

    exit_code = 1


class InputError(AnimeganError):
    """A user-supplied file or option is unusable (unreadable image, corrupt video, bad value)."""

    exit_code = 2

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{shown_path(path)}: {problem}" if path is not None else problem)


def shown_path(path: str | Path) -> str:
    """A path as messages show it: quoted (Python's repr) when it holds a newline or another control
    character, so that a warning stays one line and the name is unambiguous."""
    text = str(path)
    return repr(text) if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


class DatasetError(AnimeganError):
    """The dataset manifest is missing, invalid, or lacks a set a command needs."""

    exit_code = 3


class TrainingError(AnimeganError):
    """Training cannot continue (NaN loss, missing checkpoint to resume, bad configuration)."""

    exit_code = 4


class PartialFailure(AnimeganError):
    """Some inputs failed while the others were processed; the per-file lines were already reported."""

    exit_code = 1


def describe_os_error(exc: OSError) -> str:
    """An `OSError` as one line naming the file, with what to do for the usual causes."""
    import errno

    where = exc.filename if exc.filename is not None else None
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = {
        errno.ENOSPC: "free some space and run the same command again: it continues where it stopped",
        getattr(errno, "EDQUOT", -1): "the disk quota is used up; free some space and run the same command again",
        errno.EROFS: "the folder is on a read-only file system; choose another output folder",
        errno.EACCES: "no permission; choose another folder or fix its permissions",
    }.get(exc.errno)
    return f"{where}: {reason}" + (f"; {advice}" if advice else "") if where else reason + (f"; {advice}" if advice else "")


class OutputError(AnimeganError):
    """Nothing more can be written where the output goes (a full disk, a read-only folder, no permission): the
    command stops at the first such error instead of failing the same way on every remaining file."""

    exit_code = 1


def stops_all_writes(exc: OSError) -> bool:
    """Whether a failed write means every other write into the same folder would fail as well."""
    import errno

    return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EROFS, errno.EACCES, errno.EPERM)


def output_error(folder: str | Path, exc: OSError, done: str = "") -> OutputError:
    """`OutputError` for a write into `folder` that failed with `exc`: one line, the folder, what to do."""
    line = describe_os_error(OSError(exc.errno, exc.strerror or str(exc), str(folder)))
    return OutputError(line + (f" ({done})" if done else ""))


def describe_validation_error(exc, name=None) -> str:
    """A pydantic `ValidationError` as one line: the first offending field and its problem.

    `name(loc)` may turn the field's location into what the user typed (a command-line option)."""
    err = exc.errors()[0]
    field = (name(err["loc"]) if name else None) or ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{field}: {err['msg']}{more}"

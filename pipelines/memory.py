"""How much memory this process may still take: the least of what the machine has free, what its control group
(a container, a systemd slice, a batch scheduler's job) leaves, and its own address-space limit (`ulimit -v`).

The machine's free memory alone overstates it wherever a limit is set: a 3000x2400 photo sized for a machine's
20 GB ended in an allocator error under a 5 GB limit (issue 23). Linux only where it reads /proc and cgroups;
elsewhere the machine's figure is all there is.
"""

from __future__ import annotations

import os
from pathlib import Path

FALLBACK = 8 << 30  # where nothing can be read


def _read_int(path: Path) -> int | None:
    """An integer file of /proc or cgroupfs; None for "max", a missing file or anything else."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def machine_free() -> int:
    """Free physical memory (`MemAvailable` where /proc/meminfo has it: it counts reclaimable cache)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return FALLBACK


def cgroup_room(proc: Path = Path("/proc/self"), cgroupfs: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What this process's memory control group and its ancestors still allow (limit minus usage, the least
    of them), or None when no limit is set or none can be read. cgroup v2 (`memory.max`) and v1
    (`memory.limit_in_bytes`)."""
    try:
        lines = (proc / "cgroup").read_text().splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2: one unified hierarchy (under unified/ where v1 controllers sit beside it)
            unified = cgroupfs / "unified"
            base = unified if unified.is_dir() else cgroupfs
            limit_name, usage_name = "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            base, limit_name, usage_name = cgroupfs / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        # Inside a container the group's own path is often not visible under its name: its files are at the root.
        folder = base / rel.lstrip("/")
        candidates = [folder, *folder.parents] if folder.is_dir() else [base]
        for d in candidates:
            limit, usage = _read_int(d / limit_name), _read_int(d / usage_name)
            if limit is not None and usage is not None and limit < (1 << 60):  # v1 writes "no limit" as ~2^63
                rooms.append(max(0, limit - usage))
            if d == base:
                break
    return min(rooms) if rooms else None


def address_space_room(proc: Path = Path("/proc/self")) -> int | None:
    """What `ulimit -v` (RLIMIT_AS) leaves of this process's address space, or None when unlimited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    size = None
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - (size or 0))


def available_ram() -> int:
    """The bytes this process can still allocate: the least of the machine's free memory, its control group's
    room and its address-space room."""
    return min(r for r in (machine_free(), cgroup_room(), address_space_room()) if r is not None)

"""Kills: the work done before a SIGKILL is kept, and nothing the command started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.data.importing import add_images
from pipelines.fileio import write_image

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; it only waits for its parent to collect it


# A supervisor that starts make-smooth and never reaps it: once make-smooth is killed it stays a zombie, which
# signal 0 still reaches, so workers that only asked "does my parent's PID exist?" lived on (issue 23).
SUPERVISOR = """
import subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("reaped", [True, False], ids=["parent-reaped", "parent-left-a-zombie"])
def test_make_smooth_workers_die_with_a_killed_parent(tmp_path, reaped: bool):
    rng = np.random.default_rng(0)
    for i in range(120):
        write_image(tmp_path / "frames" / f"f{i:03d}.png", rng.integers(0, 256, (360, 480, 3), dtype=np.uint8))
    add_images([tmp_path / "frames"], "style", tmp_path / "ds")
    command = [sys.executable, "-m", "animegan_cli", "make-smooth", str(tmp_path / "ds"), "-j", "2", "-q"]
    supervisor = None
    if reaped:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pid = proc.pid
    else:
        supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, *command], stdout=subprocess.PIPE, text=True)
        pid = int(supervisor.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while alive(pid) and time.monotonic() < deadline:
            workers = descendants(pid)
            if len(workers) >= 3:  # the fork server and its two workers
                break
            time.sleep(0.01)
        assert alive(pid) and len(workers) >= 3, "make-smooth ended before its pool could be seen"
        os.kill(pid, signal.SIGKILL)
        if reaped:
            proc.wait(timeout=10)
        else:
            time.sleep(0.2)
            assert Path(f"/proc/{pid}").exists() and not alive(pid), "make-smooth should linger as a zombie"
        deadline = time.monotonic() + 10
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in workers if alive(p)]
        assert left == [], f"processes outlived the killed make-smooth: {left}"
    finally:
        for p in descendants(pid) | {pid} | ({supervisor.pid} if supervisor else set()):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if supervisor is not None:
            supervisor.wait(timeout=10)


def test_each_command_cleans_its_own_stale_temporaries(tmp_path):
    """What a SIGKILL mid-write leaves (a hidden `.name.random.tmp.ext`) is deleted by the next run of
    the same command once it is old enough not to belong to a command still running."""
    import torch
    from typer.testing import CliRunner

    from animegan_cli.app import app
    from pipelines.models.animegan import GeneratorV2

    from conftest import skimage_photo

    def leftover(folder: Path, age: float = 3600) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / f".f{int(age):07d}.k3j4.tmp.jpg"
        f.write_bytes(b"half a file")
        os.utime(f, (time.time() - age, time.time() - age))
        return f

    runner = CliRunner()
    write_image(tmp_path / "in" / "p.png", skimage_photo("coffee", 40))
    photo_tmp, fresh = leftover(tmp_path / "ds" / "photo"), leftover(tmp_path / "ds" / "photo", age=5)
    assert runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds"), "-q"]).exit_code == 0
    assert not photo_tmp.exists() and fresh.exists()  # a fresh one may be another command's write in progress

    style_tmp, smooth_tmp = leftover(tmp_path / "ds" / "style" / "film"), leftover(tmp_path / "ds" / "smooth")
    assert runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "style", "--dataset", str(tmp_path / "ds"), "-q"]).exit_code == 0
    assert runner.invoke(app, ["make-smooth", str(tmp_path / "ds"), "-q"]).exit_code == 0
    assert not smooth_tmp.exists() and not style_tmp.exists()  # a set's writers clean the whole set's folder

    torch.manual_seed(0)
    torch.save(GeneratorV2().state_dict(), tmp_path / "g.pt")
    video_tmp = leftover(tmp_path / "out", age=7200)
    assert runner.invoke(app, ["stylize", str(tmp_path / "in"), "--weights", str(tmp_path / "g.pt"), "--out", str(tmp_path / "out"), "-q"]).exit_code == 0
    assert not video_tmp.exists()

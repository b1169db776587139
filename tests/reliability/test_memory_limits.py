"""The memory budget follows the process's own limits, not only the machine's free memory (issue 23): a cgroup
(containers, systemd slices, batch jobs) and `ulimit -v`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import memory
from pipelines.inference.sizing import Sizing

GB = 1 << 30


def _proc(tmp_path: Path, cgroup_lines: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup_lines)
    return proc


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text + "\n")


def test_cgroup_v2_limit_minus_usage_least_over_ancestors(tmp_path):
    fs = tmp_path / "cg"
    _write(fs / "user.slice" / "job", memory_max="max", memory_current=str(1 * GB))
    _write(fs / "user.slice", memory_max=str(5 * GB), memory_current=str(2 * GB))
    assert memory.cgroup_room(_proc(tmp_path, "0::/user.slice/job\n"), fs) == 3 * GB


def test_cgroup_v2_beside_v1_controllers_and_inside_a_container(tmp_path):
    fs = tmp_path / "cg"
    _write(fs / "unified", memory_max=str(4 * GB), memory_current=str(1 * GB))  # the group's path is not visible
    assert memory.cgroup_room(_proc(tmp_path, "4:memory:/\n0::/docker/abc\n"), fs) == 3 * GB


def test_cgroup_v1_and_its_no_limit_value(tmp_path):
    fs = tmp_path / "cg"
    _write(fs / "memory" / "batch" / "42", memory_limit_in_bytes=str(6 * GB), memory_usage_in_bytes=str(GB // 2))
    _write(fs / "memory", memory_limit_in_bytes="9223372036854771712", memory_usage_in_bytes=str(9 * GB))
    proc = _proc(tmp_path, "4:memory:/batch/42\n1:cpu:/\n")
    assert memory.cgroup_room(proc, fs) == 6 * GB - GB // 2
    (fs / "memory" / "batch" / "42" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert memory.cgroup_room(proc, fs) is None  # no limit anywhere


def test_nothing_readable_means_no_cgroup_limit(tmp_path):
    assert memory.cgroup_room(tmp_path / "no-proc", tmp_path / "no-cg") is None
    assert memory.cgroup_room(_proc(tmp_path, "0::/\n"), tmp_path / "empty") is None


def test_the_engine_budget_follows_the_smallest_room(monkeypatch):
    monkeypatch.setattr(memory, "machine_free", lambda: 64 * GB)
    monkeypatch.setattr(memory, "cgroup_room", lambda: 2 * GB)
    monkeypatch.setattr(memory, "address_space_room", lambda: None)
    sizing = Sizing(torch.device("cpu"), 3400, None, 32, None, None)
    assert sizing.memory_budget == 1 * GB  # half of what the cgroup leaves, not of the machine's 64 GB
    monkeypatch.setattr(memory, "cgroup_room", lambda: None)
    assert Sizing(torch.device("cpu"), 3400, None, 32, None, None).memory_budget == 4 * GB  # the CPU cap


@pytest.mark.skipif(torch.cuda.is_available(), reason="a PyTorch without CUDA is the case")
def test_onnx_runtime_cuda_beside_a_pytorch_without_it_gets_a_budget_not_a_traceback():
    # onnxruntime-gpu with a CPU-only PyTorch: the ONNX engine runs on "cuda" and PyTorch cannot say how much
    # memory the GPU has free
    assert Sizing("cuda", 3400, None, 32, None, None).memory_budget == 4 * GB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_ulimit_v_is_seen():
    code = ("import resource\nfrom pipelines import memory\n"
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))\n"
            "print(memory.address_space_room(), memory.available_ram())")
    room, available = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                              cwd=Path(__file__).resolve().parents[2]).stdout.split())
    assert 0 < room < 3 << 30 and available <= room

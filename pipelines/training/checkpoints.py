"""Training checkpoints: `RUN/checkpoints/step-XXXXXXX.pt`, written atomically, loaded without executing code.

A checkpoint is a plain nested dict of tensors, lists, dicts and primitives so that it loads with
`torch.load(weights_only=True)`: no pickled classes, no numpy objects. RNG states are converted to
such containers here (`capture_rng` / `restore_rng`).
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, TrainingError
from ..models.weights import load_torch_file
from ..fileio import atomic_path

CHECKPOINT_DIR = "checkpoints"
_NAME_RE = re.compile(r"^step-(\d{7,})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first. Temporary files of a killed write are ignored."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files a write killed by SIGKILL left behind (atomic_path names them `.step-*.tmp.pt`)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for p in folder.glob(".step-*.tmp*"):
            p.unlink(missing_ok=True)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` as the checkpoint of `step`, atomically, then keep only the newest `keep`."""
    path = checkpoint_path(run_dir, step)
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as exc:
        # torch.save reports a full disk as "unexpected pos N vs M" from its zip writer; say what it is.
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write failed"
        raise TrainingError(f"{path}: could not write the checkpoint ({reason}; {free / 2**20:.0f} MiB free on that disk). "
                            f"The previous checkpoint is kept: free some space, then resume with "
                            f"`animegan train --out {run_dir} --resume`") from None
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (never runs code from the file); errors name the file."""
    try:
        state = load_torch_file(path)
    except InputError as exc:  # a poisoned, truncated or foreign file: one line, never "retry unsafely"
        raise TrainingError(f"{path}: not a usable checkpoint: {exc.problem}") from None
    if not isinstance(state, dict) or "step" not in state or "networks" not in state:
        raise TrainingError(f"{path}: not an animegan training checkpoint (no 'step' or 'networks')")
    return state


# -- RNG states as weights_only-safe containers ------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])

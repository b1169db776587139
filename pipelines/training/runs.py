"""`animegan runs`: where each training run under a folder stands, read from its run folder alone.

A run folder (see loop.py) is recognised by its config.json. Its state:
- finished: the final export was written (samples/final.png) at the planned last step;
- training: a `train` process holds the folder now (its PID file names a live process);
- interrupted: a checkpoint past step 0 and fewer steps than planned (`train --out RUN --resume` goes on);
- not started: config.json but no checkpoint past step 0 (a fresh `train --out RUN` reuses the folder).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import list_checkpoints
from ..processes import running
from .config import CONFIG_NAME, LOCK_PID_NAME, METRICS_NAME


@dataclass
class RunInfo:
    path: str
    model: str
    style: str
    step: int  # the newest checkpoint's step
    total_steps: int | None  # planned, as written when the run (last) started
    state: str  # finished | training | interrupted | not started
    losses: dict[str, float] = field(default_factory=dict)  # the last loss row's generator and discriminator totals
    eval: dict[str, float] = field(default_factory=dict)  # the last held-out evaluation
    warnings: list[str] = field(default_factory=list)  # health warnings logged so far (kinds)
    init_weights: str | None = None  # fine-tuned from this file (`--init-weights`)
    init_weights_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_info(run_dir: Path) -> RunInfo | None:
    """What `run_dir` holds, or None when it is not a run folder (no readable config.json)."""
    try:
        doc = json.loads((run_dir / CONFIG_NAME).read_text())
        config = doc["config"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    checkpoints = list_checkpoints(run_dir)
    step = checkpoints[-1][0] if checkpoints else 0
    total = doc.get("total_steps")
    rows = _rows(run_dir / METRICS_NAME)
    loss_rows = [r for r in rows if "step_time_s" in r]
    eval_rows = [r for r in rows if any(k.startswith("eval/") for k in r)]
    losses = {k.removeprefix("loss/"): v for k, v in (loss_rows[-1] if loss_rows else {}).items()
              if k.startswith("loss/total_")}
    evals = {k.removeprefix("eval/"): v for k, v in (eval_rows[-1] if eval_rows else {}).items() if k.startswith("eval/")}
    if (run_dir / "samples" / "final.png").exists() and (total is None or step >= total):
        state = "finished"
    elif _trainer(run_dir) is not None:
        state = "training"
    elif step > 0:
        state = "interrupted"
    else:
        state = "not started"
    warnings = sorted({r["warning"] for r in rows if "warning" in r})
    return RunInfo(str(run_dir), str(config.get("model")), str(config.get("style")), step, total, state,
                   losses, evals, warnings, config.get("init_weights"), config.get("init_weights_sha256"))


def _trainer(run_dir: Path) -> int | None:
    """The process training `run_dir` now, from the PID file `train` keeps while it holds the folder (a killed
    `train` leaves the file behind, naming a process that is gone)."""
    try:
        pid = int((run_dir / LOCK_PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if running(pid) else None


def list_runs(root: Path) -> list[RunInfo]:
    """Every run folder at `root` or directly under it, oldest first by name."""
    root = Path(root)
    if (root / CONFIG_NAME).is_file():
        found = run_info(root)
        return [found] if found else []
    if not root.is_dir():
        return []
    runs = [run_info(p) for p in sorted(root.iterdir()) if p.is_dir()]
    return [r for r in runs if r is not None]

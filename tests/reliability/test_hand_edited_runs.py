"""Hand-edited run folders (issue 23): `train --resume` answers with one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from tests.conftest import build_tiny_dataset

FAST = ["--model", "whitebox", "--vgg-weights", "random", "--image-size", "64", "--batch-size", "3",
        "--init-epochs", "1", "--epochs", "1", "--workers", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("edited")
    ds = build_tiny_dataset(root / "dataset", size=72, with_smooth=False)
    run = root / "run"
    res = CliRunner().invoke(app, ["train", str(ds.root), "--out", str(run), *FAST, "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def _resume(run: Path) -> tuple[int, list[str]]:
    res = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--max-steps", "2", "--quiet"])
    return res.exit_code, [line for line in res.output.splitlines() if line.strip()]


@pytest.mark.parametrize("field, value, says", [
    ("image_size", 33, "image_size"),
    ("weights", "x", "weights"),
])
def test_an_invalid_config_value_is_one_line(trained, tmp_path, field, value, says):
    run = _copy(trained, tmp_path)
    doc = json.loads((run / "config.json").read_text())
    doc["config"][field] = value
    (run / "config.json").write_text(json.dumps(doc))
    code, lines = _resume(run)
    assert code == 2 and len(lines) == 1
    assert str(run / "config.json") in lines[0] and says in lines[0]


def test_a_checkpoint_without_its_rng_is_one_line_and_an_odd_history_is_no_traceback(trained, tmp_path):
    run = _copy(trained, tmp_path)
    doc = json.loads((run / "config.json").read_text())
    doc["resumed"] = 5  # hand-edited history
    (run / "config.json").write_text(json.dumps(doc))
    last = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    state = torch.load(last, weights_only=True)
    state.pop("rng")
    torch.save(state, last)
    code, lines = _resume(run)
    assert code != 0 and len(lines) == 1
    assert str(last) in lines[0] and "'rng'" in lines[0] and "Traceback" not in lines[0]

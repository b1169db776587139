"""`animegan train --init-weights`: fine-tuning from a run, an export or a community file; the init phase skipped
and said; a wrong architecture refused in one line; exact resume; the source's hash recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.errors import InputError
from pipelines.fileio import sha256_file
from pipelines.models.animegan import GeneratorV2
from pipelines.training.loop import resolve_config
from tests.conftest import build_tiny_dataset

FAST = ["--model", "whitebox", "--vgg-weights", "random", "--image-size", "64", "--batch-size", "3",
        "--epochs", "1", "--workers", "0", "--device", "cpu", "--log-every", "1"]


def _train(*args: str) -> str:
    res = CliRunner().invoke(app, ["train", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _generator(run: Path, step: int | None = None) -> dict[str, torch.Tensor]:
    ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
    ckpt = ckpts[-1] if step is None else run / "checkpoints" / f"step-{step:07d}.pt"
    return torch.load(ckpt, weights_only=True)["networks"]["generator"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ft")
    ds = build_tiny_dataset(root / "dataset", size=72, with_smooth=False)
    run = root / "source"
    _train(str(ds.root), "--out", str(run), *FAST, "--init-epochs", "1", "--quiet")
    return {"dataset": ds.root, "run": run, "root": root}


def test_fine_tune_starts_from_the_run_skips_the_init_phase_and_records_the_source(source):
    out = source["root"] / "ft"
    log = _train(str(source["dataset"]), "--out", str(out), *FAST, "--init-weights", str(source["run"]))
    assert "generator starts from" in log and "init phase skipped" in log
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in rows if "phase" in r} == {"gan"}
    config = json.loads((out / "config.json").read_text())["config"]
    exported = source["run"] / "generator.safetensors"
    assert config["init_weights"] == str(exported.resolve())
    assert config["init_weights_sha256"] == sha256_file(exported)
    assert config["init_epochs"] == 0
    start = _generator(out, 0)  # the checkpoint written before the first step
    want = load_file(str(exported))
    assert all(torch.equal(start[k].float(), want[k].float()) for k in want)
    res = CliRunner().invoke(app, ["runs", str(out), "--json"])
    assert json.loads(res.output)[0]["init_weights"] == str(exported.resolve())


def test_fine_tune_resumes_exactly(source):
    straight, resumed = source["root"] / "straight", source["root"] / "resumed"
    args = [*FAST, "--init-weights", str(source["run"] / "generator.safetensors"), "--quiet"]
    _train(str(source["dataset"]), "--out", str(straight), *args, "--max-steps", "2")
    _train(str(source["dataset"]), "--out", str(resumed), *args, "--max-steps", "1")
    # The same file named another way (the run folder instead of its export) is no change on resume.
    _train(str(source["dataset"]), "--out", str(resumed), "--resume", "--max-steps", "2", "--quiet",
           "--init-weights", str(source["run"]))
    a, b = _generator(straight), _generator(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_community_file_loads_into_its_family_and_a_mismatch_is_one_line(source, tmp_path):
    torch.manual_seed(0)
    community = tmp_path / "paprika.pt"
    torch.save({"state_dict": GeneratorV2().state_dict()}, community)  # nested, as some ports save it
    cfg = resolve_config(overrides={"dataset": str(source["dataset"]), "model": "animeganv2",
                                    "init_weights": str(community)})
    assert cfg.init_epochs == 0 and cfg.init_weights_sha256 == sha256_file(community)
    res = CliRunner().invoke(app, ["train", str(source["dataset"]), *FAST, "--init-weights", str(community),
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "animegan_v2 generator" in lines[0] and "--model animeganv2" in lines[0]
    assert not (tmp_path / "x").exists()


def test_the_recorded_hash_follows_the_file_and_the_init_phase_runs_when_asked(source, tmp_path):
    path = tmp_path / "g.pt"
    torch.manual_seed(1)
    torch.save(GeneratorV2().state_dict(), path)
    first = resolve_config(overrides={"dataset": "d", "model": "animeganv2", "init_weights": str(path)})
    torch.manual_seed(2)
    torch.save(GeneratorV2().state_dict(), path)
    second = resolve_config(overrides={"dataset": "d", "model": "animeganv2", "init_weights": str(path),
                                       "init_epochs": 2})
    assert first.init_weights_sha256 != second.init_weights_sha256
    assert second.init_epochs == 2
    with pytest.raises(InputError, match="no such weights file"):
        resolve_config(overrides={"dataset": "d", "model": "animeganv2", "init_weights": str(tmp_path / "none.pt")})

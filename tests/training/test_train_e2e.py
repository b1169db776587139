"""`animegan train` end to end on a tiny dataset: run folder, exact resume, SIGKILL, export, NaN stop.

64x64 crops, batch 2, random VGG, 3 steps per epoch (6 photos / 2). Every run here uses one thread:
bitwise-identical results need the same thread count, and the test machines are shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.training import losses
from pipelines.training.checkpoints import list_checkpoints, load_checkpoint
from pipelines.fileio import read_image
from pipelines.models.weights import load_generator

from conftest import build_tiny_dataset

pytestmark = pytest.mark.slow

COMMON = ["--vgg-weights", "random", "--image-size", "64", "--batch-size", "2", "--init-epochs", "1",
          "--epochs", "2", "--log-every", "2", "-q"]




def train(*args: str) -> "object":
    return CliRunner().invoke(app, ["train", *args])


@contextlib.contextmanager
def train_process(ds: Path, run: Path, *extra: str):
    """`animegan train` (8 steps, 2 loader workers) as a child process, killed if a test leaves it running."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "animegan_cli", "train", str(ds), "--out", str(run), *COMMON,
         "--workers", "2", "--max-steps", "8", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def wait_for_checkpoint(proc: subprocess.Popen, run: Path, step: int) -> None:
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(s >= step for s, _ in list_checkpoints(run)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step {step} while running (exit code {proc.poll()})")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, run) of 8 uninterrupted steps: init epoch (3 steps), then 5 GAN steps."""
    root = tmp_path_factory.mktemp("train")
    ds = root / "ds"
    build_tiny_dataset(ds)
    res = train(str(ds), "--out", str(root / "straight"), *COMMON, "--workers", "0", "--max-steps", "8")
    assert res.exit_code == 0, res.output
    return ds, root / "straight"


def said(res) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def same_generator(a: Path, b: Path) -> bool:
    x, y = load_file(a / "generator.safetensors"), load_file(b / "generator.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_run_folder_contents(straight):
    _, run = straight
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["model"] == "animeganv2" and doc["config"]["max_steps"] == 8
    assert {"python", "torch", "animegan"} <= set(doc["versions"]) and len(doc["dataset_manifest_sha256"]) == 64

    all_rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in all_rows if "step_time_s" in r]  # the loss rows
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    evals = [r for r in all_rows if "eval/psnr" in r]  # held-out evaluation at the init phase's end and the last step
    assert [r["step"] for r in evals] == [3, 8]
    assert {"eval/ssim", "eval/edge_corr", "eval/color_shift", "eval/mean", "eval/std", "eval/saturated"} <= set(evals[0])
    assert rows[0]["phase"] == "init" and rows[-1]["phase"] == "gan"
    assert {"loss/g_adv", "loss/content", "loss/style", "loss/color", "loss/tv", "loss/d_real",
            "loss/d_smooth", "lr/g", "lr/d", "step_time_s", "images_per_s"} <= set(rows[-1])
    # The first step of each phase reports every weighted term (the balance between them, #11 item 9).
    balance = [r for r in all_rows if "balance" in r]
    assert [(r["step"], r["phase"]) for r in balance] == [(1, "init"), (4, "gan")]
    assert set(balance[0]["balance"]) == {"content"}
    assert {"g_adv", "content", "style", "color", "tv", "d_real", "d_fake", "d_gray", "d_smooth"} == set(balance[1]["balance"])
    assert all(v >= 0 for v in balance[1]["balance"].values())

    for name in ("epoch-0001.png", "epoch-0002.png", "final.png"):
        assert read_image(run / "samples" / name).shape == (2 * 64, 4 * 64, 3)  # photos over their stylized versions

    steps = [s for s, _ in list_checkpoints(run)]
    assert steps == [3, 6, 8]  # epoch ends and the last step; only --keep-checkpoints (3) kept
    state = load_checkpoint(run / "checkpoints" / "step-0000008.pt")  # weights_only=True inside
    assert state["step"] == 8 and state["epoch"] == 2 and state["epoch_step"] == 2
    assert set(state["networks"]) == {"generator", "discriminator"} and set(state["optimizers"]) == {"g_init", "g", "d"}
    assert not list((run / "checkpoints").glob(".*"))  # no temporary files left

    loaded = load_generator(run)
    assert loaded.arch == "animegan_v2" and loaded.info["meta"]["step"] == 8
    with torch.no_grad():
        out = loaded.model(torch.rand(1, 3, 40, 52) * 2 - 1)
    assert out.shape == (1, 3, 40, 52) and out.abs().max() <= 1


def test_exports_and_samples_show_the_weight_average(straight, tmp_path):
    """The exported generator is the checkpoint's weight average (ema.py), not the raw weights; --ema 0 exports
    the raw weights. The average starts with the GAN phase, so after 5 GAN steps the two differ."""
    ds, run = straight
    state = load_checkpoint(run / "checkpoints" / "step-0000008.pt")
    exported = load_file(run / "generator.safetensors")
    assert state["ema"]["updates"] == 5  # steps 4-8: the GAN phase
    assert all(torch.equal(exported[k], state["ema"]["weights"][k]) for k in exported)
    assert any(not torch.equal(exported[k], state["networks"]["generator"][k]) for k in exported)
    assert json.loads((run / "generator.json").read_text())["meta"]["ema"] == 0.999

    raw_run = tmp_path / "raw"
    res = train(str(ds), "--out", str(raw_run), *COMMON, "--workers", "0", "--max-steps", "8", "--ema", "0")
    assert res.exit_code == 0, res.output
    state = load_checkpoint(raw_run / "checkpoints" / "step-0000008.pt")
    exported = load_file(raw_run / "generator.safetensors")
    assert "ema" not in state
    assert all(torch.equal(exported[k], state["networks"]["generator"][k]) for k in exported)


def test_resume_is_exact_and_reruns_are_refused(straight, tmp_path):
    ds, ref = straight
    run = tmp_path / "run"
    res = train(str(ds), "--out", str(run), *COMMON, "--workers", "0", "--max-steps", "6")
    assert res.exit_code == 0, res.output
    assert not same_generator(run, ref)

    again = train(str(ds), "--out", str(run), *COMMON, "--max-steps", "8")
    assert again.exit_code == 4 and "already holds a training run" in said(again) and "--resume" in said(again)

    changed = train("--out", str(run), "--resume", "--seed", "3")
    assert changed.exit_code == 4
    assert "--seed is 0 in this run" in said(changed)

    res = train("--out", str(run), "--resume", "--max-steps", "8", "-q")
    assert res.exit_code == 0, res.output
    assert same_generator(run, ref)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "step_time_s" in r] == [2, 4, 6, 8]  # loss rows: none lost or repeated
    assert [r["step"] for r in rows if "eval/psnr" in r] == [3, 6, 8]  # the init phase's end, each invocation's last step

    done = train("--out", str(run), "--resume", "--max-steps", "8")
    assert done.exit_code == 0 and "already at step 8" in said(done)


def test_sigkill_then_resume_matches_straight_run(straight, tmp_path):
    """Killed (kill -9) once a checkpoint past step 1 exists, with 2 loader workers; resumed to the end."""
    ds, ref = straight
    run = tmp_path / "killed"
    with train_process(ds, run, "--checkpoint-every", "1") as proc:
        wait_for_checkpoint(proc, run, 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    res = train("--out", str(run), "--resume")
    assert res.exit_code == 0, res.output
    assert same_generator(run, ref)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(straight, tmp_path, monkeypatch):
    ds, _ = straight
    real = losses.color_loss
    calls = {"n": 0}

    def color_loss_nan_on_second_call(a, b, grade=None):
        calls["n"] += 1
        value = real(a, b, grade)
        return value * float("nan") if calls["n"] == 2 else value

    monkeypatch.setattr(losses, "color_loss", color_loss_nan_on_second_call)
    run = tmp_path / "nan"
    res = train(str(ds), "--out", str(run), *COMMON[:-1], "--init-epochs", "0", "--workers", "0",
                "--checkpoint-every", "1", "--max-steps", "4")
    assert res.exit_code == 4, res.output
    assert "loss term 'color' is nan at step 2" in said(res)
    assert [s for s, _ in list_checkpoints(run)] == [0, 1]
    assert not (run / "generator.safetensors").exists()


def test_a_run_that_ends_before_its_gan_phase_says_so_and_runs_lists_it(straight, tmp_path):
    ds, _ = straight
    run = tmp_path / "runs" / "short"
    res = train(str(ds), "--out", str(run), "--vgg-weights", "random", "--image-size", "64", "--batch-size", "2",
                "--init-epochs", "2", "--epochs", "1", "--max-steps", "2", "--workers", "0")
    assert res.exit_code == 0, res.output
    text = said(res)
    assert "init phase: steps 1-2 (--max-steps ends it before its 2 epochs)" in text
    assert "before its gan phase starts at step 7" in text and "--max-steps" in text
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["warning"] for r in rows if "warning" in r] == ["phase_skipped"]

    listed = CliRunner().invoke(app, ["runs", str(tmp_path / "runs"), "--json"])
    assert listed.exit_code == 0, listed.output
    (info,) = json.loads(listed.output)
    assert (info["model"], info["step"], info["total_steps"], info["state"]) == ("animeganv2", 2, 2, "finished")
    assert info["warnings"] == ["phase_skipped"] and "psnr" in info["eval"] and "total_g_init" in info["losses"]
    table = CliRunner().invoke(app, ["runs", str(tmp_path / "runs")])
    assert table.exit_code == 0 and "short" in table.output and "finished" in table.output


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_or_sigterm_saves_a_checkpoint_and_says_how_to_resume(straight, tmp_path, sig, code):
    """Ctrl-C / `docker stop` with 2 loader workers: the current step finishes, a checkpoint is written at
    that step (not the last periodic one), the exact resume command is printed, and resuming equals a
    straight run."""
    ds, ref = straight
    run = tmp_path / "stopped"
    with train_process(ds, run, "--checkpoint-every", "100") as proc:
        wait_for_checkpoint(proc, run, 3)  # epoch 1 ends at step 3 with a checkpoint; stop in epoch 2
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    steps = [s for s, _ in list_checkpoints(run)]
    stopped_at = steps[-1]
    assert 3 <= stopped_at < 8
    text = " ".join(out.split())
    assert f"stopped at step {stopped_at}/8; checkpoint saved. Resume with: animegan train --out {run} --resume" in text
    assert "stopping after the current step" in err and "Traceback" not in err

    res = train("--out", str(run), "--resume")
    assert res.exit_code == 0, res.output
    assert same_generator(run, ref)


def test_a_run_that_failed_before_its_first_step_is_reused(straight, tmp_path):
    """No VGG file: the attempt stops before training began; the same command with the problem fixed
    (or --resume) then starts the run in that folder instead of refusing it."""
    ds, ref = straight
    run = tmp_path / "run"
    bad = train(str(ds), "--out", str(run), *COMMON, "--workers", "0", "--max-steps", "8",
                "--vgg-weights", str(tmp_path / "missing-vgg.pth"))
    assert bad.exit_code == 2 and "missing-vgg.pth" in said(bad)
    assert (run / "config.json").is_file() and not list_checkpoints(run)
    listed = CliRunner().invoke(app, ["runs", str(run), "--json"])
    assert json.loads(listed.stdout)[0]["state"] == "not started"

    res = train(str(ds), "--out", str(run), *COMMON[:-1], "--workers", "0", "--max-steps", "8")  # not -q
    assert res.exit_code == 0, res.output
    assert "holds no checkpoint" in said(res)
    assert same_generator(run, ref)  # the same run a clean folder gives
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["vgg_weights"] == "random" and "resumed" not in doc


def test_resume_of_a_never_started_run_starts_it(straight, tmp_path):
    ds, ref = straight
    run = tmp_path / "run"
    bad = train(str(ds), "--out", str(run), *COMMON, "--workers", "0", "--max-steps", "8",
                "--vgg-weights", str(tmp_path / "missing-vgg.pth"))
    assert bad.exit_code == 2
    # the saved config names the missing VGG file, and --vgg-weights may not change on --resume: the
    # user puts the file in place; here the saved option is pointed at random weights instead
    doc = json.loads((run / "config.json").read_text())
    doc["config"]["vgg_weights"] = "random"
    (run / "config.json").write_text(json.dumps(doc))
    res = train("--out", str(run), "--resume")
    assert res.exit_code == 0, res.output
    assert same_generator(run, ref)


def test_resume_with_another_process_count_is_refused(straight, tmp_path):
    """A run checkpointed by 2 DDP processes resumed by 1 would replay and skip data: one line instead."""
    import shutil

    _, ref = straight
    run = tmp_path / "ddp-run"
    shutil.copytree(ref, run)
    ckpt = list_checkpoints(run)[-1][1]
    state = load_checkpoint(ckpt)
    state["world_size"] = 2
    torch.save(state, ckpt)
    before = (run / "config.json").read_text()
    res = train("--out", str(run), "--resume", "--max-steps", "12")
    assert res.exit_code == 4
    assert "this run trains with 2 processes, not 1; resume it with --nproc 2" in said(res)
    assert (run / "config.json").read_text() == before  # a refused resume changes nothing


def test_two_process_ddp_run_stopped_and_resumed_equals_a_straight_one(tmp_path):
    """`--nproc 2` on CPU (gloo) through the CLI: a run stopped at step 4 and resumed to 6 gives the
    generator of a straight 6-step run, and resuming it with one process is refused."""
    ds = tmp_path / "ds"
    build_tiny_dataset(ds, size=64)
    ddp = ["--nproc", "2", "--device", "cpu", "--vgg-weights", "random", "--image-size", "64", "--batch-size", "1",
           "--init-epochs", "1", "--epochs", "2", "--workers", "0", "--eval-every", "2", "-q"]  # rank 0 evaluates
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "animegan_cli", "train", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    for run, steps in (("straight", "6"), ("part", "4")):
        res = cli(str(ds), "--out", str(tmp_path / run), *ddp, "--max-steps", steps)
        assert res.returncode == 0, res.stderr[-2000:]
    # --quiet reaches the launched processes too: only warnings (a 4-step run's outputs are blobs) are said
    assert all(line.startswith("warning: ") for line in res.stderr.splitlines()), res.stderr
    res = cli("--out", str(tmp_path / "part"), "--resume", "--max-steps", "6", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    assert same_generator(tmp_path / "part", tmp_path / "straight")
    # Both ranks held identical networks at every checkpoint (checked collectively before each was written).
    for run in ("straight", "part"):
        ckpts = list_checkpoints(tmp_path / run)
        assert ckpts and all(load_checkpoint(path)["replicas_checked"] for _, path in ckpts)
    res = cli("--out", str(tmp_path / "part"), "--resume", "--max-steps", "8", "--nproc", "1")
    assert res.returncode == 4 and "resume it with --nproc 2" in " ".join(res.stderr.split())


def test_replica_comparison_names_the_network_that_differs():
    from torch import nn

    from pipelines.training.loop import mismatched_replicas, replica_fingerprints

    torch.manual_seed(0)
    nets = {"generator": nn.Conv2d(3, 3, 3), "discriminator": nn.Linear(4, 2)}
    a = replica_fingerprints(nets)
    assert a.shape == (2, 2) and a.dtype == torch.float64
    assert mismatched_replicas(list(nets), torch.stack([a, a.clone()])) == []
    with torch.no_grad():
        nets["discriminator"].weight[0, 0] += 1e-6  # one rank's copy drifts by a hair
    b = replica_fingerprints(nets)
    assert mismatched_replicas(list(nets), torch.stack([a, b])) == ["discriminator"]


def test_a_second_train_into_the_same_run_folder_is_refused(straight, tmp_path):
    """Two `train` into one --out used to both run and exit 0, one silently losing its work."""
    ds, _ = straight
    run = tmp_path / "shared"
    with train_process(ds, run, "--checkpoint-every", "1", "--max-steps", "200") as proc:
        wait_for_checkpoint(proc, run, 1)
        second = train(str(ds), "--out", str(run), *COMMON, "--workers", "0", "--max-steps", "8")
        resumed = train("--out", str(run), "--resume", "--max-steps", "8")
        listed = CliRunner().invoke(app, ["runs", str(run), "--json"])
        assert proc.poll() is None  # the first one is still training
    assert json.loads(listed.output)[0]["state"] == "training"  # not "interrupted" (issue 23)
    for res in (second, resumed):
        assert res.exit_code == 4, res.output
        assert f"(process {proc.pid}) is training this run folder" in said(res)
    # Killed, it leaves its PID file behind: a process that is gone trains nothing.
    (run / ".train.pid").write_text(str(proc.pid))
    assert json.loads(CliRunner().invoke(app, ["runs", str(run), "--json"]).output)[0]["state"] == "interrupted"
    # Once it is gone (killed), the folder is free: the lock is the operating system's.
    res = train("--out", str(run), "--resume", "--max-steps", "4", "-q")
    assert res.exit_code == 0, res.output


def test_a_run_from_before_the_average_and_the_anchor_resumes_as_it_was(straight, tmp_path):
    """A config.json without `ema` and `color_target` (runs of earlier versions) resumes without either."""
    import shutil

    _, ref = straight
    run = tmp_path / "old"
    shutil.copytree(ref, run)
    doc = json.loads((run / "config.json").read_text())
    for key in ("ema", "color_target"):
        doc["config"].pop(key)
    (run / "config.json").write_text(json.dumps(doc))
    res = train("--out", str(run), "--resume", "--max-steps", "9", "-q")
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["ema"] == 0.0 and saved["color_target"] == "photo"

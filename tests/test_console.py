"""The console edge without a terminal: plain progress lines at an interval instead of a live bar."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

import animegan_cli.console as console
from animegan_cli.app import app
from pipelines.fileio import encode_image
from pipelines.models.animegan import GeneratorV2
from tests.conftest import skimage_photo


def test_plain_progress_lines_without_a_terminal(tmp_path: Path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for k, name in enumerate(("astronaut", "coffee", "chelsea")):
        (src / f"{k}.png").write_bytes(encode_image(skimage_photo(name, 24), ".png"))
    torch.manual_seed(0)
    torch.save(GeneratorV2().state_dict(), tmp_path / "w.pt")
    # One image per forward: CPUs without native bf16 batch equal-sized images, which would advance 2 or 3 at once
    args = ["stylize", str(src), "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "out"), "--overwrite",
            "--batch-size", "1"]
    res = CliRunner().invoke(app, args)  # CliRunner's streams are no terminal: default interval, short run
    assert res.exit_code == 0 and "images:" not in res.output, res.output  # under 30 s: nothing but the summary
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)
    res = CliRunner().invoke(app, args)
    lines = [line for line in res.output.splitlines() if line.startswith("images:")]
    assert res.exit_code == 0 and len(lines) == 4, res.output  # one per image, then the last one
    assert lines[0].startswith("images: 1/3 (33%) in ") and "left" in lines[0]
    assert lines[-1].startswith("images: done, 3/3 (100%) in ")
    assert "━" not in res.output  # no bar drawn into a log


def test_a_resumed_task_counts_from_where_it_stopped(monkeypatch):
    """A resumed training run's progress says 47/90, not 1/44, and its time left comes from this run's pace."""
    monkeypatch.setattr(console.time, "monotonic", lambda: 110.0)
    task = console._PlainTask("train", 90, done=46, before=46, started=100.0)
    task.done += 1
    line = task.line()  # one step in 10 s, 43 to go
    assert line.startswith("train: 47/90 (52%) in 10 s, about 7 min 10 s left"), line


def test_time_left_follows_the_pace_since_the_last_line(monkeypatch):
    """A run that slows down (a GAN phase after the init phase) is told by its recent pace, not its average."""
    clock = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    task = console._PlainTask("train", 1300, started=0.0)
    task.done, clock[0] = 1000, 300.0  # 1000 steps in 5 min
    assert task.line().endswith("about 1 min 30 s left"), task.line()
    task.mark = (300.0, 1000)
    task.done, clock[0] = 1020, 330.0  # then 20 steps in 30 s: 280 to go at 1.5 s a step
    assert "about 7 min 00 s left" in task.line(), task.line()


def test_plain_lines_are_never_wrapped(monkeypatch, capsys):
    """A log gets one line per report however long (grep finds `epoch 145/186` whole), as warnings do."""
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)
    rep = console.RichReporter()
    rep._plain = {}  # what __enter__ sets up without a terminal
    rep.start("train", "train", total=1300)
    rep.advance("train", 1014, phase="gan", epoch="145/186", loss=0.9072, run="r" * 60)
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and "epoch 145/186" in lines[0] and "r" * 60 in lines[0], lines

"""The README's first command, `animegan demo`, end to end at toy scale."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.fileio import read_image
from pipelines.data.manifest import Dataset


def test_demo_runs_every_stage_and_writes_a_contact_sheet(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--steps", "2", "--image-size", "32",
                                   "--vgg-weights", "random", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert str(out / "contact-sheet.png") in res.output.replace("\n", "")

    ds = Dataset.open(out / "dataset").manifest
    assert len(ds.records("style")) >= 20  # frames from the generated clip
    assert len(ds.records("smooth")) == len(ds.records("style"))
    assert len(ds.records("photo")) == 5

    run = out / "runs" / "demo"
    assert (run / "generator.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] == 2

    stylized = sorted(p.name for p in (out / "stylized").iterdir())
    assert stylized == ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "stereo_motorcycle.png"]
    for name in stylized:  # outputs keep their input's size
        assert read_image(out / "stylized" / name).shape == read_image(out / "material" / "photos" / name).shape

    sheet = read_image(out / "contact-sheet.png")
    assert sheet.shape[0] >= 5 * 200 and sheet.std() > 10
    assert not np.array_equal(read_image(out / "stylized" / "coffee.png"), read_image(out / "material" / "photos" / "coffee.png"))

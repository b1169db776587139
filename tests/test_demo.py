"""The README's first command, `animegan demo`, end to end at toy scale."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from animegan_cli.app import app
from animegan_cli.demo_command import DEMO_STEPS
from pipelines.data.manifest import Dataset
from pipelines.demo import DemoOptions
from pipelines.evaluation.known_answer import gap_figures
from pipelines.evaluation.metrics import edge_corr
from pipelines.fileio import read_image


def test_demo_learns_its_own_look_on_photos_it_never_saw(tmp_path):
    """240 steps at 48 px (the demo runs 1300 at 64): every stage runs, the held-out quarters keep their structure
    and every output moves towards its known answer (the look applied to it) in colour and structure."""
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--steps", "240", "--image-size", "48",
                                   "--vgg-weights", "random", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert str(out / "contact-sheet.png") in res.output.replace("\n", "")
    assert "colour gap closed" in text and "outline gap closed" in text and "edges kept" in text

    ds = Dataset.open(out / "dataset").manifest
    assert len(ds.records("style")) >= 20  # frames from the generated clip
    assert len(ds.records("smooth")) == len(ds.records("style"))
    assert len(ds.records("photo")) == 15  # halves of the 15 training quarters

    run = out / "runs" / "demo"
    assert (run / "generator.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 240 and "eval/edge_corr" in rows[-1]
    assert any(r.get("phase") == "gan" for r in rows)

    names = sorted(p.stem for p in (out / "heldout" / "photo").iterdir())
    assert len(names) == 5 and sorted(p.stem for p in (out / "stylized").iterdir() if not p.name.startswith(".")) == names
    photos = [read_image(out / "heldout" / "photo" / f"{n}.png") for n in names]
    outputs = [read_image(out / "stylized" / f"{n}.png") for n in names]
    answers = [read_image(out / "heldout" / "answer" / f"{n}.png") for n in names]
    masks = [read_image(out / "heldout" / "outline" / f"{n}.png")[:, :, 0] > 127 for n in names]
    for name, photo, output, answer, mask in zip(names, photos, outputs, answers, masks):
        assert output.shape == photo.shape, name
        assert edge_corr(photo, output) > 0.5, name  # still the same picture
        assert not np.array_equal(photo, output)
        g = gap_figures([photo], [output], [answer], [mask])
        assert g["color_closed"] > 0.0, (name, g)  # towards the answer's colours, never away
    g = gap_figures(photos, outputs, answers, masks)
    assert g["color_closed"] > 0.1 and g["ssim_output"] > g["ssim_photo"], g

    sheet = read_image(out / "contact-sheet.png")
    assert sheet.shape[0] >= 5 * 200 and sheet.std() > 10
    assert (sheet[:40] < 128).any() and (sheet[:40] > 250).mean() > 0.8  # the title strip: dark text on white


def test_cli_default_steps_match_the_pipeline():
    assert DEMO_STEPS == DemoOptions().steps

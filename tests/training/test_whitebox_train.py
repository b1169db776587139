"""`animegan train --model whitebox` end to end on 64x64 crops with a random VGG: train, exact resume,
and the exported run used for inference, directly and through `animegan stylize`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.training.representations import uint8_to_tensor
from tests.conftest import build_tiny_dataset, skimage_photo

FAST = ["--model", "whitebox", "--vgg-weights", "random", "--image-size", "64", "--batch-size", "3",
        "--init-epochs", "1", "--epochs", "1", "--workers", "0", "--device", "cpu", "--log-every", "1", "--quiet"]


def _train(*args: str) -> None:
    res = CliRunner().invoke(app, ["train", *args])
    assert res.exit_code == 0, res.output


# The discriminators' random augmentation is on too, so that exact resume covers it.
AUGMENTED = ("--augment", "translation,cutout")


def _final_networks(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
    return torch.load(ckpts[-1], weights_only=True)["networks"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wb")
    ds = build_tiny_dataset(root / "dataset", size=72, with_smooth=False)  # no smooth set needed
    straight, resumed = root / "straight", root / "resumed"
    # The shift-consistency term is on in these runs so that exact resume covers its random shifts too.
    _train(str(ds.root), "--out", str(straight), *FAST, "--temporal-weight", "1", *AUGMENTED)
    # 4 steps: 2 pretrain, 2 GAN; stop mid-GAN-epoch at step 3, then resume to the end
    _train(str(ds.root), "--out", str(resumed), *FAST, "--temporal-weight", "1", *AUGMENTED, "--max-steps", "3")
    _train(str(ds.root), "--out", str(resumed), "--resume", "--max-steps", "4", "--quiet")
    return {"dataset": ds.root, "straight": straight, "resumed": resumed}


def test_trains_both_phases_and_reports_structure_cost(runs):
    rows = [json.loads(line) for line in (runs["straight"] / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_time_s" in r]  # the loss rows (evaluations are rows of their own)
    assert rows[-1]["step"] == 4
    gan = [r for r in rows if r["phase"] == "gan"]
    assert gan, rows
    terms = {"loss/g_surface", "loss/g_texture", "loss/structure", "loss/content", "loss/tv",
             "loss/d_surface", "loss/d_texture", "loss/temporal", "loss/color", "loss/ink"}
    assert terms <= set(gan[-1]), gan[-1].keys()  # the default preset (anchored) has the colour anchor and ink
    assert gan[-1]["structure/cpu_s_per_image"] > 0
    init = [r for r in rows if r["phase"] == "init"]
    assert len(init) == 2 and all("loss/recon" in r and "loss/content" not in r for r in init)
    assert all("loss/ink" in r for r in init)  # the anchored preset draws its lines from the init phase on
    config = json.loads((runs["straight"] / "config.json").read_text())["config"]
    assert config["weights"]["structure"] == 200.0 and config["weights"]["surface"] == 0.1
    assert config["weights"]["ink"] == 10.0 and config["weights"]["color"] == 10.0
    assert config["augment"] == "translation,cutout"
    assert (runs["straight"] / "samples" / "final.png").is_file()


def test_resume_matches_straight_run(runs):
    a, b = _final_networks(runs["straight"]), _final_networks(runs["resumed"])
    assert set(a) == {"generator", "d_surface", "d_texture"}
    for net in a:
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"


def test_exported_generator_stylizes_any_size(runs):
    from pipelines.models.weights import load_generator

    loaded = load_generator(runs["straight"])
    assert loaded.arch == "whitebox"
    # the anchored preset draws ink: its network is exported to be used bare, without the guided filter that would
    # blur its lines (the released and paper presets keep it: test_released_preset_exports_the_guided_filter)
    assert loaded.info["postprocess"] is None and loaded.model.postprocess is None
    photo = skimage_photo("coffee", 50)[:50, :67]  # odd sizes: padded to a multiple of 4 inside, cropped back
    x = uint8_to_tensor(photo[None])
    with torch.no_grad():
        y = loaded.model(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    with torch.no_grad():
        e = loaded.model.edge_pad  # a reflect margin on every side, then to a multiple of 4 (66x83 -> 68x84)
        xp = torch.nn.functional.pad(torch.nn.functional.pad(x, (e, e, e, e), mode="reflect"), (0, 1, 0, 2), mode="reflect")
        want = loaded.model.generator(xp)[..., e:e + 50, e:e + 67].clamp(-1, 1)
    assert torch.allclose(y, want, atol=1e-5)
    assert np.isfinite(y.numpy()).all()


def test_released_preset_exports_the_guided_filter(tmp_path):
    from pipelines.models.guided_filter import guided_filter
    from pipelines.models.weights import load_generator

    ds = build_tiny_dataset(tmp_path / "dataset", size=72, with_smooth=False)
    run = tmp_path / "released"
    _train(str(ds.root), "--out", str(run), *FAST, "--preset", "released", "--max-steps", "2")
    loaded = load_generator(run)
    assert loaded.info["postprocess"].startswith("guided_filter")
    x = uint8_to_tensor(skimage_photo("coffee", 48)[None, :, :64])  # 48 x 64: a multiple of 4 once the margin is added
    with torch.no_grad():
        y = loaded.model(x)
        e = loaded.model.edge_pad
        xp = torch.nn.functional.pad(x, (e, e, e, e), mode="reflect")
        want = guided_filter(loaded.model.generator(xp), xp, 1, 5e-3)[..., e:e + 48, e:e + 64].clamp(-1, 1)
    assert torch.allclose(y, want, atol=1e-5)


def test_stylize_command_applies_the_run(runs, tmp_path):
    from pipelines.fileio import read_image, write_image

    src = tmp_path / "in" / "coffee.png"
    photo = skimage_photo("coffee", 45)[:45, :61]  # odd sides
    write_image(src, photo)
    res = CliRunner().invoke(app, ["stylize", str(src), "--weights", str(runs["straight"]),
                                   "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    out = read_image(tmp_path / "out" / "coffee.png")
    assert out.shape == photo.shape
    assert not np.array_equal(out, photo)
    assert np.array_equal(read_image(src), photo)  # the input is untouched


def test_paper_preset_and_cartoon_set(tmp_path):
    from pipelines.training.loop import resolve_config

    cfg = resolve_config(overrides={"model": "whitebox", "preset": "paper", "out": str(tmp_path / "r")})
    assert cfg.weights == {"surface": 1.0, "texture": 10.0, "structure": 2000.0, "content": 2000.0, "tv": 1e4, "recon": 1.0,
                           "color": 0.0, "ink": 0.0}
    assert cfg.batch_size == 16 and cfg.lr_g == 2e-4
    # a dedicated cartoon set that the dataset lacks: one clear error naming the set
    ds = build_tiny_dataset(tmp_path / "dataset", size=40, with_smooth=False)
    res = CliRunner().invoke(app, ["train", str(ds.root), "--out", str(tmp_path / "r2"), *FAST, "--cartoon-set", "cartoon"])
    assert res.exit_code != 0
    assert "cartoon" in res.output


def test_init_phase_reconstructs_what_the_anchors_ask_for():
    # anchored: the photo at the style's palette with the style's ink drawn in; released: the photo itself.
    from types import SimpleNamespace

    from pipelines.training.ink import draw_ink
    from pipelines.training.palette import PaletteMap
    from pipelines.training.recipes.whitebox import ANCHORED_WEIGHTS, RELEASED_WEIGHTS, WhiteboxRecipe

    g = torch.Generator().manual_seed(0)
    photo = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    ink = torch.zeros(2, 1, 16, 16)
    ink[..., 5] = 0.5
    warmer = PaletteMap(np.eye(3), np.array([0.0, 5.0, 20.0]))  # CIELAB b* +20: yellower
    recipe = WhiteboxRecipe.__new__(WhiteboxRecipe)
    recipe.palette = warmer
    recipe.config = SimpleNamespace(weights=dict(ANCHORED_WEIGHTS))
    expected = draw_ink(warmer((photo + 1) * 0.5) * 2 - 1, ink)
    assert torch.allclose(recipe._init_target(photo, ink), expected)
    assert recipe._init_target(photo, ink)[:, 2].mean() < photo[:, 2].mean()  # less blue: the palette applied
    recipe.config = SimpleNamespace(weights=dict(RELEASED_WEIGHTS))
    assert torch.equal(recipe._init_target(photo, None), photo)

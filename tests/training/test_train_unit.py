"""Unit tests of the trainer's parts: recipe updates, data determinism, schedule, config, checkpoints."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.training.checkpoints import capture_rng, load_checkpoint, restore_rng, save_checkpoint, list_checkpoints
from pipelines.errors import DatasetError, InputError, TrainingError
from pipelines.fileio import encode_image
from pipelines.data.manifest import Dataset, DerivedSource, ImportedSource, make_record
from pipelines.training.recipes import get_recipe_class
from pipelines.training.loop import resolve_config
from pipelines.training.batches import BatchPlan, CropDataset, SampleKey, SetGroup, epoch_order, load_groups, to_model_range

from conftest import build_tiny_dataset, skimage_photo




# ---------------------------------------------------------------------------------------------
# Recipe: one discriminator + one generator update changes both networks
# ---------------------------------------------------------------------------------------------


def test_one_gan_step_changes_generator_and_discriminator():
    cfg = resolve_config(overrides={"vgg_weights": "random", "image_size": 32, "batch_size": 2, "out": "unused"})
    recipe = get_recipe_class(cfg.model)(cfg)
    torch.manual_seed(0)
    nets = recipe.build_networks()
    frozen = recipe.build_frozen(torch.device("cpu"), lambda m: None)
    opts = recipe.build_optimizers(nets)
    before = {k: [p.detach().clone() for p in v.parameters()] for k, v in nets.items()}
    g = torch.Generator().manual_seed(1)
    batch = {k: torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for k in ("photo", "style", "smooth")}
    gan = next(p for p in recipe.phases() if p.name == "gan")
    ctx: dict = {}
    seen_terms = set()
    for update in gan.updates:
        for name, net in nets.items():
            net.requires_grad_(name not in update.frozen)
        terms = recipe.losses("gan", update, {**frozen, **nets}, batch, ctx)
        assert all(torch.isfinite(t) for t in terms.values())
        seen_terms |= set(terms)
        opts[update.optimizer].zero_grad()
        nets["discriminator"].zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        if update.optimizer == "g":  # the frozen discriminator got no parameter gradients
            assert all(p.grad is None for p in nets["discriminator"].parameters())
        opts[update.optimizer].step()
    assert {"d_real", "d_fake", "d_gray", "d_smooth", "g_adv", "content", "style", "color", "tv"} <= seen_terms
    for name, net in nets.items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))
        assert changed, f"{name} did not change"


def test_v1_defaults_and_presets():
    v1 = resolve_config(overrides={"model": "animegan", "out": "x"})
    assert (v1.batch_size, v1.lr_g, v1.lr_d, v1.weights["tv"], v1.weights["style"]) == (6, 8e-5, 1.6e-5, 0.0, 3.0)
    pap = resolve_config(overrides={"style": "paprika", "out": "x"})
    assert (pap.weights["color"], pap.weights["d_smooth"], pap.epochs, pap.init_epochs) == (50.0, 0.005, 100, 10)


# ---------------------------------------------------------------------------------------------
# Data: deterministic crops and order
# ---------------------------------------------------------------------------------------------


def _dataset_with_identical_twins(root: Path) -> Dataset:
    """photo set plus a style set whose smooth twins are byte-identical copies (so crops must match)."""
    ds = Dataset.open(root, create=True)
    with ds.transaction() as m:
        for i, name in enumerate(("astronaut", "coffee", "chelsea")):
            img = skimage_photo(name, 40 + 30 * i)  # the first is smaller than the crop: upscaled
            data = encode_image(img, ".png")
            for set_name in ("photo", "style", "smooth"):
                rel = f"{set_name}/{name}.png"
                (root / set_name).mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
                src = (DerivedSource(operation="smooth", source=f"style/{name}.png", source_sha256="0" * 64)
                       if set_name == "smooth" else ImportedSource(original=f"/x/{name}.png"))
                m.put(set_name, make_record(rel, data, img.shape[1], img.shape[0], src))
    return ds


def test_crops_are_deterministic_per_seed_epoch_position(tmp_path):
    _dataset_with_identical_twins(tmp_path / "ds")
    groups, held = load_groups(tmp_path / "ds", (SetGroup("photo"), SetGroup("style", ("smooth",))))
    assert held == [] and [len(g) for g in groups] == [3, 3]
    a = CropDataset(groups, seed=7, size=64, epoch_length=4)
    b = CropDataset(groups, seed=7, size=64, epoch_length=4)
    other_seed = CropDataset(groups, seed=8, size=64, epoch_length=4)
    samples = {}
    for key in (SampleKey(0, 0), SampleKey(0, 3), SampleKey(1, 0), SampleKey(5, 2)):
        x, y = a[key], b[key]
        for k in ("photo", "style", "smooth"):
            assert x[k].shape == (3, 64, 64) and x[k].dtype == torch.uint8
            assert torch.equal(x[k], y[k])
        assert torch.equal(x["style"], x["smooth"])  # twins share crop and flip
        samples[key] = x
    # Reading in another order (as a resumed run or a worker would) gives the same pixels.
    assert torch.equal(a[SampleKey(0, 0)]["photo"], samples[SampleKey(0, 0)]["photo"])
    # Something differs across epochs, positions and seeds (crop, flip or record).
    pool = [torch.cat([s["photo"], s["style"]]) for s in samples.values()]
    assert all(not torch.equal(pool[i], pool[j]) for i in range(len(pool)) for j in range(i))
    assert any(not torch.equal(other_seed[k]["photo"], samples[k]["photo"]) for k in samples)


def test_epoch_order_visits_every_record_once_per_pass():
    order = epoch_order(seed=3, epoch=2, group_index=1, size=5, length=12)
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))
    assert np.array_equal(order, epoch_order(3, 2, 1, 5, 12))
    assert not np.array_equal(order, epoch_order(3, 3, 1, 5, 12))


def test_batch_plan_resumes_and_shards():
    full = list(BatchPlan(epochs=3, steps_per_epoch=4, batch=2))
    tail = list(BatchPlan(epochs=3, steps_per_epoch=4, batch=2, start_epoch=1, start_step=2))
    assert tail == full[6:] and len(BatchPlan(epochs=3, steps_per_epoch=4, batch=2, start_epoch=1, start_step=2)) == 6
    ranks = [list(BatchPlan(epochs=1, steps_per_epoch=3, batch=2, rank=r, world=2)) for r in range(2)]
    positions = sorted(k.position for r in ranks for b in r for k in b)
    assert positions == list(range(12))  # disjoint and complete


def test_to_model_range():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    y = to_model_range(x, torch.device("cpu"))
    assert y.dtype == torch.float32 and y.min() == -1 and y.max() == 1


def test_missing_set_names_the_command(tmp_path):
    build_tiny_dataset(tmp_path / "ds", size=40, with_smooth=False)
    with pytest.raises(DatasetError, match=r"'smooth' set is missing or empty; make it with `animegan make-smooth`"):
        load_groups(tmp_path / "ds", (SetGroup("photo"), SetGroup("style", ("smooth",))))


# ---------------------------------------------------------------------------------------------
# Config: validation, TOML, overrides, dry run, resume rules
# ---------------------------------------------------------------------------------------------


def test_toml_then_cli_overrides(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text('model = "animegan"\nbatch-size = 3\nimage_size = 128\n[weights]\ncolor = 20.0\nstyle = 1.0\n')
    cfg = resolve_config(toml, {"batch_size": 5, "weights": {"style": 2.0}, "out": "r"})
    assert cfg.model == "animegan" and cfg.batch_size == 5 and cfg.image_size == 128
    assert cfg.weights["color"] == 20.0 and cfg.weights["style"] == 2.0 and cfg.weights["content"] == 1.5
    assert cfg.lr_g == 8e-5  # v1 default filled in


@pytest.mark.parametrize("text, message", [
    ("batch_size = 0\n", "batch_size: Input should be greater than or equal to 1"),
    ("image_size = 66\n", "image_size: Input should be a multiple of 4"),
    ("colour = 3\n", "unknown option 'colour'"),
    ("[weights]\nsmoothness = 1.0\n", "no loss term 'smoothness'"),
    ("amp = 'fp8'\n", "amp: Input should be"),
    ("batch_size = [\n", "not valid TOML"),
])
def test_config_errors_name_the_file_and_field(tmp_path, text, message):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(InputError) as err:
        resolve_config(toml, {"out": "r"})
    assert str(err.value).startswith(str(toml)) and message in str(err.value)


def test_resume_keeps_the_runs_options(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = resolve_config(overrides={"out": str(run), "batch_size": 2, "seed": 5})
    (run / "config.json").write_text(json.dumps({"config": saved.model_dump(mode="json"), "versions": {}}))
    cfg = resolve_config(overrides={"out": str(run), "max_steps": 9}, resume=True)
    assert (cfg.seed, cfg.batch_size, cfg.max_steps) == (5, 2, 9)
    with pytest.raises(TrainingError, match="--seed is 5 in this run"):
        resolve_config(overrides={"out": str(run), "seed": 6}, resume=True)
    with pytest.raises(TrainingError, match="not a training run"):
        resolve_config(overrides={"out": str(tmp_path / "nothing")}, resume=True)


def test_cli_dry_run_prints_config_and_counts(tmp_path):
    build_tiny_dataset(tmp_path / "ds", size=40)
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), "--dry-run", "--batch-size", "4", "--style", "shinkai",
                                   "--tv-weight", "0.5", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["data"] == {"photo": 6, "style": 6, "smooth": 6, "held_out_photos": 0}
    assert doc["steps_per_epoch"] == 1 and doc["total_steps"] == 110
    assert doc["config"]["weights"]["tv"] == 0.5 and doc["config"]["weights"]["color"] == 10.0
    assert doc["phases"] == [{"phase": "init", "epochs": 10, "first": 1, "last": 10, "runs": True, "complete": True},
                             {"phase": "gan", "epochs": 100, "first": 11, "last": 110, "runs": True, "complete": True}]
    assert not (tmp_path / "run").exists()


def test_dataset_as_argument_or_option(tmp_path):
    """`train` takes the dataset as its argument or as --dataset/-d, as the data commands do (issue 23)."""
    build_tiny_dataset(tmp_path / "ds", size=40)
    for how in (["-d", str(tmp_path / "ds")], ["--dataset", str(tmp_path / "ds")], [str(tmp_path / "ds"), "-d", str(tmp_path / "ds")]):
        res = CliRunner().invoke(app, ["train", *how, "--dry-run", "--batch-size", "4"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["data"]["photo"] == 6
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), "-d", str(tmp_path / "other"), "--dry-run"])
    assert res.exit_code == 2 and "two different datasets" in res.output


def test_dry_run_shows_a_phase_that_max_steps_cuts_off(tmp_path):
    build_tiny_dataset(tmp_path / "ds", size=40)
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), "--dry-run", "--batch-size", "4", "--max-steps", "5"])
    assert res.exit_code == 0, res.output
    phases = json.loads(res.stdout)["phases"]
    assert phases[0]["last"] == 5 and phases[1] == {"phase": "gan", "epochs": 100, "first": 11, "last": 5, "runs": False, "complete": False}


def test_validation_errors_name_the_option_typed(tmp_path):
    build_tiny_dataset(tmp_path / "ds", size=40)
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), "--image-size", "66", "--dry-run"])
    assert res.exit_code == 2
    assert "--image-size: Input should be a multiple of 4" in " ".join(res.output.split())
    cfg = tmp_path / "c.toml"
    cfg.write_text("image-size = 66\n")
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), "--config", str(cfg), "--dry-run"])
    assert res.exit_code == 2 and f"{cfg}: image_size: Input should be a multiple of 4" in " ".join(res.output.split())


def test_cli_rejects_out_of_range_option(tmp_path):
    res = CliRunner().invoke(app, ["train", str(tmp_path), "--batch-size", "0", "--dry-run"])
    assert res.exit_code == 2 and "batch-size" in res.output


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def test_rng_roundtrip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, 4, {"step": 4, "networks": {}, "rng": capture_rng()}, keep=2)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = load_checkpoint(tmp_path / "checkpoints" / "step-0000004.pt")
    restore_rng(state["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_only_the_last_k_checkpoints_are_kept_and_foreign_files_refused(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"step": step, "networks": {}}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    bad = tmp_path / "checkpoints" / "step-0000009.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(TrainingError, match="step-0000009.pt: not a usable checkpoint: a text file"):
        load_checkpoint(bad)


def test_crop_size_is_checked_against_the_generators_size_multiple_when_options_resolve(tmp_path):
    """Style2paints needs a multiple of 32: 240 used to crash at the first step, after the data had loaded."""
    with pytest.raises(InputError, match=r"image_size: 240 is not a multiple of 32.*nearest valid sizes: 224 and 256"):
        resolve_config(overrides={"model": "style2paints", "image_size": 240, "out": str(tmp_path / "r")})
    assert resolve_config(overrides={"model": "style2paints", "image_size": 256, "out": str(tmp_path / "r")}).image_size == 256
    assert resolve_config(overrides={"model": "animeganv2", "image_size": 68, "out": str(tmp_path / "r")}).image_size == 68
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), "--model", "style2paints", "--image-size", "200"])
    assert res.exit_code == 2 and "nearest valid sizes: 192 and 224" in " ".join(res.output.split())

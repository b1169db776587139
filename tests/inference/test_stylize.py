"""`animegan stylize` on images: community weights, odd sizes, bad inputs, resumability, input safety."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from conftest import skimage_photo
from pipelines.errors import InputError, PartialFailure
from pipelines.fileio import encode_image, read_image
from pipelines.models.animegan import GeneratorV2
from pipelines.models.registry import InferenceModel
from pipelines.inference.made_with import RECORD_NAME
from pipelines.progress import RecordingReporter
from pipelines.inference.stylize import StylizeOptions, stylize

runner = CliRunner()


def community_weights(path: Path, seed: int = 0) -> Path:
    """A state dict in the community port's key layout (ours follows it), saved as the port does."""
    torch.manual_seed(seed)
    sd = GeneratorV2().state_dict()
    assert "block_a.0.1.weight" in sd and "out_layer.0.weight" in sd  # the port's names
    torch.save(sd, path)
    return path


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return community_weights(tmp_path / "paprika.pt")


def photo(name: str, w: int, h: int) -> np.ndarray:
    return cv2.resize(skimage_photo(name), (w, h), interpolation=cv2.INTER_AREA)


def write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(rgb, path.suffix))
    return path


def test_community_weights_through_cli_odd_sizes_and_structure(tmp_path: Path, weights: Path):
    src = tmp_path / "in"
    a = write(src / "a.png", photo("astronaut", 53, 37))
    b = write(src / "sub" / "b.jpg", photo("coffee", 41, 30))
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(weights), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    oa, ob = tmp_path / "out" / "a.png", tmp_path / "out" / "sub" / "b.jpg"
    assert read_image(oa).shape == read_image(a).shape == (37, 53, 3)
    assert read_image(ob).shape == read_image(b).shape == (30, 41, 3)
    # The output is the network's, not a copy of the input.
    assert np.abs(read_image(oa).astype(int) - read_image(a)).mean() > 5


def test_same_result_as_the_plain_model_and_format_option(tmp_path: Path, weights: Path):
    img = photo("chelsea", 64, 48)
    src = write(tmp_path / "cat.png", img)
    stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "o", format="webp", batch_size=2))
    assert (tmp_path / "o" / "cat.webp").exists()
    stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "o", precision="fp32"))
    got = read_image(tmp_path / "o" / "cat.png").astype(int)
    g = GeneratorV2()
    g.load_state_dict(torch.load(weights, weights_only=True))
    with torch.inference_mode():
        # the network with the architecture's reflect margin around the photo (registry.EDGE_PAD)
        y = InferenceModel.for_architecture("animegan_v2", g.eval())(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1)
    ref = ((y[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255)
    assert np.abs(got - ref).max() <= 1  # fast CPU convolutions change results by rounding only
    # bf16 (what --precision auto picks on CPUs that compute it natively): within a level on average.
    stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "b", precision="bf16"))
    assert np.abs(read_image(tmp_path / "b" / "cat.png").astype(int) - ref).mean() <= 1.0


def test_auto_precision_is_bf16_only_where_the_cpu_has_it_and_falls_back_when_bf16_breaks_the_model(
        tmp_path: Path, weights: Path, monkeypatch):
    import pipelines.inference.engine as st

    cpu = torch.device("cpu")
    monkeypatch.setattr(st, "native_cpu_bf16", lambda: False)
    assert st.resolve_precision("auto", cpu) == torch.float32
    monkeypatch.setattr(st, "native_cpu_bf16", lambda: True)
    assert st.resolve_precision("auto", cpu) == torch.bfloat16
    assert st.resolve_precision("fp32", cpu) == torch.float32  # an explicit choice is kept
    import pipelines.models.cpu_speed as cs

    src = write(tmp_path / "cat.png", photo("chelsea", 64, 48))
    for native, said in ((False, 1), (True, 0)):  # bf16 asked for where it is emulated: kept, and said once
        monkeypatch.setattr(cs, "native_cpu_bf16", lambda native=native: native)
        rep = RecordingReporter()
        stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / f"bf16-{native}", precision="bf16"), rep)
        assert sum("--precision bf16: this CPU has no native bf16" in w for w in rep.warnings) == said
        assert any("precision bfloat16" in line for line in rep.infos)

    rep = RecordingReporter()
    stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "ok"), rep)
    assert any("precision bfloat16" in line for line in rep.infos)

    # A model whose output bf16 changes a lot (its last layer amplifies tiny differences): auto falls back to fp32.
    class Fragile(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            y = self.inner(x)
            return torch.tanh((y - y.detach().float().round(decimals=2)) * 1e4)

    import pipelines.models.weights as weights_mod

    real_load = weights_mod.load_generator

    def fragile_load(path, device="cpu"):
        loaded = real_load(path, device)
        loaded.model.generator = Fragile(loaded.model.generator)
        return loaded

    monkeypatch.setattr(weights_mod, "load_generator", fragile_load)
    rep = RecordingReporter()
    stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "fragile"), rep)
    assert any("bfloat16 changes this model's output" in line and "using fp32" in line for line in rep.infos)
    assert any("precision float32" in line for line in rep.infos)


def test_corrupt_image_among_good_ones(tmp_path: Path, weights: Path):
    src = tmp_path / "in"
    write(src / "good1.png", skimage_photo("rocket", 32))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write(src / "good2.png", skimage_photo("coffee", 32))
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(weights), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == PartialFailure.exit_code != 0
    assert "broken.jpg" in res.output
    assert (tmp_path / "out" / "good1.png").exists() and (tmp_path / "out" / "good2.png").exists()
    assert not (tmp_path / "out" / "broken.jpg").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".") and not p.name.startswith(RECORD_NAME)]  # no temp files left


def test_resumable_and_overwrite(tmp_path: Path, weights: Path):
    src = write(tmp_path / "in" / "p.png", skimage_photo("astronaut", 32))
    opts = StylizeOptions(weights=weights, out_dir=tmp_path / "out")
    first = stylize([src], opts)
    assert (first.done, first.skipped) == (1, 0)
    out = tmp_path / "out" / "p.png"
    old = out.stat().st_mtime_ns
    second = stylize([src], opts, RecordingReporter())
    assert (second.done, second.skipped) == (0, 1) and out.stat().st_mtime_ns == old
    third = stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "out", overwrite=True))
    assert third.done == 1 and out.stat().st_mtime_ns != old
    # The weights' content decides, not their date: touched, the output stays; replaced by other weights with
    # an older date (`cp -p`), it is made again.
    t = out.stat().st_mtime
    os.utime(weights, (t + 10, t + 10))
    assert stylize([src], opts).skipped == 1
    community_weights(weights, seed=5)
    os.utime(weights, (t - 1000, t - 1000))
    assert stylize([src], opts).done == 1


def test_an_output_is_up_to_date_only_for_the_same_options(tmp_path: Path, weights: Path):
    src = write(tmp_path / "in" / "p.png", skimage_photo("astronaut", 64))
    out = tmp_path / "out" / "p.png"
    opts = StylizeOptions(weights=weights, out_dir=tmp_path / "out")
    assert stylize([src], opts).done == 1 and read_image(out).shape == (64, 64, 3)
    small = StylizeOptions(weights=weights, out_dir=tmp_path / "out", max_side=40)
    assert stylize([src], small).done == 1 and read_image(out).shape == (40, 40, 3)  # a new --max-side: made again
    assert stylize([src], small).skipped == 1
    assert stylize([src], StylizeOptions(weights=weights, out_dir=tmp_path / "out", max_side=40, precision="fp32")).done == 1
    # A changed input is made again, even when the output is newer than it.
    write(src, skimage_photo("coffee", 64))
    os.utime(src, (out.stat().st_mtime - 100,) * 2)
    assert stylize([src], small).done == 1
    # An output folder from before the record keeps the old rule (newer than input and weights).
    (tmp_path / "out" / ".animegan-made.json").unlink()
    assert stylize([src], small).skipped == 1


def test_input_is_never_overwritten(tmp_path: Path, weights: Path):
    src = write(tmp_path / "photos" / "big.png", skimage_photo("astronaut", 40))
    before = src.read_bytes()
    for out in (tmp_path / "photos", tmp_path):
        args = [str(tmp_path / "photos")] if out == tmp_path / "photos" else [str(src)]
        with pytest.raises(InputError, match="would overwrite the input|is the input folder"):
            stylize(args, StylizeOptions(weights=weights, out_dir=out if out != tmp_path else tmp_path / "photos", overwrite=True))
    res = runner.invoke(app, ["stylize", str(src), "--weights", str(weights), "--out", str(src.parent), "--overwrite"])
    assert res.exit_code != 0 and "would overwrite" in res.output
    assert src.read_bytes() == before
    # Another format would not overwrite anything, but the outputs would lie among the photos, and the next
    # `stylize photos` would stylize them again: an output folder that is an input folder is refused.
    res = runner.invoke(app, ["stylize", str(src.parent), "--weights", str(weights), "--out", str(src.parent), "--format", "jpg"])
    assert res.exit_code == 2 and "is the input folder" in " ".join(res.output.split())
    assert sorted(p.name for p in src.parent.iterdir()) == ["big.png"]


def test_missing_weights_and_missing_input(tmp_path: Path, weights: Path, monkeypatch):
    src = write(tmp_path / "p.png", skimage_photo("rocket", 24))
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["stylize", str(src)])
    assert res.exit_code != 0 and "train first" in res.output
    rep = RecordingReporter()
    with pytest.raises(PartialFailure):
        stylize([tmp_path / "nope.png", src], StylizeOptions(weights=weights, out_dir=tmp_path / "o"), rep)
    assert any("nope.png" in w for w in rep.warnings)
    assert (tmp_path / "o" / "p.png").exists()


def test_output_folder_inside_the_input_folder_is_never_read(tmp_path: Path, weights: Path):
    """`stylize same2 --out same2/sub`, twice: the second run must not take its own outputs as inputs."""
    src = write(tmp_path / "same2" / "a.png", skimage_photo("coffee", 32))
    for _ in range(2):
        res = runner.invoke(app, ["stylize", str(src.parent), "--weights", str(weights), "--out", str(src.parent / "sub"), "-q"])
        assert res.exit_code == 0, res.output
    made = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "same2").rglob("*.png"))
    assert made == ["same2/a.png", "same2/sub/a.png"]  # no same2/sub/sub/a.png

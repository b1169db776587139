"""`animegan colorize` with an untrained (seeded) Style2paints generator: inputs of every kind, pairing,
line keeping, resumability and the errors a user can meet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.fileio import encode_image, read_image, write_image
from pipelines.inference.colorize import ColorizeOptions, colorize, finish_colour, network_size, sketch_lines
from pipelines.models.animegan import GeneratorV2
from pipelines.models.style2paints import Style2PaintsGenerator
import pipelines.models.vgg as vgg  # build_vgg_fc1 looked up at call time: conftest builds the random one once
from pipelines.models.weights import save_generator

from conftest import anime_like, skimage_photo
from pipelines.data.sketches import xdog


@pytest.fixture(scope="module")
def weights(untrained_colorizer) -> Path:
    return untrained_colorizer


def _sketch(name: str = "chelsea", size: int = 80) -> np.ndarray:
    return np.repeat(xdog(anime_like(skimage_photo(name, size)))[:, :, None], 3, axis=2)  # [H, W, 3] dark lines


@pytest.fixture
def sketches(tmp_path) -> Path:
    root = tmp_path / "sketches"
    write_image(root / "cat.png", _sketch("chelsea", 80))
    write_image(root / "sub" / "cup.png", _sketch("coffee", 72)[:70, :101])  # odd size, in a subfolder
    write_image(tmp_path / "ref.jpg", skimage_photo("astronaut", 96))
    return root


def _cli(*args: str, code: int = 0):
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})  # paths unwrapped
    assert res.exit_code == code, res.output
    return res


def test_colours_folders_keeping_structure_sizes_and_lines(sketches, weights, tmp_path):
    out = tmp_path / "out"
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(weights), "-o", str(out))
    assert "2 colored, 0 up to date, 0 failed" in res.output
    cat, cup = read_image(out / "cat.png"), read_image(out / "sub" / "cup.png")
    assert cat.shape == (80, 120, 3) and cup.shape == (70, 101, 3)
    lines = read_image(sketches / "cat.png")[..., 0] < 128
    assert cat[lines].max() <= 5  # --keep-lines (default): the user's lines are exactly black in the output
    assert cat[~lines].mean() > 20 and cat[~lines].std() > 1  # and colour between them
    again = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(weights), "-o", str(out))
    assert "0 colored, 2 up to date" in again.output  # resumable: finished outputs are skipped


def test_a_changed_option_or_reference_redoes_only_what_it_changes(sketches, weights, tmp_path):
    import os

    out, ref = tmp_path / "out", tmp_path / "ref.jpg"
    base = ("colorize", str(sketches), "-w", str(weights), "-o", str(out))
    _cli(*base, "-r", str(ref))
    first = read_image(out / "cat.png")
    assert "0 colored, 2 up to date" in _cli(*base, "-r", str(ref)).output
    # Another colour matching changes the pixels: redone, though the outputs are newer than every input.
    res = _cli(*base, "-r", str(ref), "--match-colors", "lab")
    assert "2 colored, 0 up to date" in res.output
    assert not np.array_equal(read_image(out / "cat.png"), first)
    assert "0 colored, 2 up to date" in _cli(*base, "-r", str(ref), "--match-colors", "lab").output
    # Another reference file with an older date than the outputs: redone too.
    other = tmp_path / "other.jpg"
    write_image(other, skimage_photo("coffee", 96))
    t = (out / "cat.png").stat().st_mtime - 100
    os.utime(other, (t, t))
    assert "2 colored, 0 up to date" in _cli(*base, "-r", str(other), "--match-colors", "lab").output
    # A changed option that does not touch the pixels (the batch size) redoes nothing.
    assert "0 colored, 2 up to date" in _cli(*base, "-r", str(other), "--match-colors", "lab", "--batch-size", "1").output


def test_rgba_grayscale_and_white_on_black_sketches(weights, tmp_path):
    from PIL import Image

    lines = _sketch("rocket", 64)[..., 0]
    root = tmp_path / "in"
    root.mkdir()
    rgba = np.zeros((*lines.shape, 4), np.uint8)
    rgba[..., 3] = 255 - lines  # black lines on a transparent sheet
    Image.fromarray(rgba, "RGBA").save(root / "transparent.png")
    Image.fromarray(lines, "L").save(root / "gray.png")
    Image.fromarray(255 - lines, "L").save(root / "inverted.png")  # white lines on black
    write_image(tmp_path / "ref.png", skimage_photo("coffee", 64))
    _cli("colorize", str(root), "-r", str(tmp_path / "ref.png"), "-w", str(weights), "-o", str(tmp_path / "out"), "-q")
    outs = {n: read_image(tmp_path / "out" / f"{n}.png") for n in ("transparent", "gray", "inverted")}
    # auto-detected and inverted (the same pixels up to float rounding at another position in the batch)
    assert np.abs(outs["gray"].astype(int) - outs["inverted"].astype(int)).max() <= 1
    assert np.abs(outs["gray"].astype(int) - outs["transparent"].astype(int)).max() <= 1  # paper composited white
    assert np.array_equal(sketch_lines(np.repeat((255 - lines)[:, :, None], 3, 2), "off"), 255 - lines)
    assert np.array_equal(sketch_lines(np.repeat(lines[:, :, None], 3, 2), "on"), 255 - lines)


def test_reference_folder_pairs_by_path_or_name_and_reports_the_unpaired(sketches, weights, tmp_path):
    refs = tmp_path / "refs"
    write_image(refs / "cat.jpg", skimage_photo("chelsea", 64))  # by name (another suffix)
    write_image(sketches / "lonely.png", _sketch("rocket", 64))  # no reference for this one
    res = _cli("colorize", str(sketches), "-r", str(refs), "-w", str(weights), "-o", str(tmp_path / "out"), code=1)
    assert "lonely.png: no reference for it in" in res.output and "cup.png: no reference" in res.output
    assert (tmp_path / "out" / "cat.png").is_file() and not (tmp_path / "out" / "lonely.png").exists()
    write_image(refs / "sub" / "cup.png", skimage_photo("coffee", 64))  # by relative path
    _cli("colorize", str(sketches / "sub"), str(sketches / "cat.png"), "-r", str(refs), "-w", str(weights),
         "-o", str(tmp_path / "out2"), "-q")


def test_style_vector_once_per_reference_and_batches_of_equal_sizes(sketches, weights, tmp_path, monkeypatch):
    import pipelines.models.vgg as vgg_mod

    calls = []
    real = vgg_mod.build_vgg_fc1

    def counting(spec, log=None):
        model = real(spec, log=log)
        model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        return model

    monkeypatch.setattr(vgg_mod, "build_vgg_fc1", counting)
    for k in range(5):
        write_image(sketches / f"more{k}.png", _sketch("chelsea", 80))
    summary = colorize([sketches], ColorizeOptions(reference=tmp_path / "ref.jpg", weights=weights, out_dir=tmp_path / "o",
                                                   batch_size=4))
    assert summary.done == 7 and calls == [1]


def test_bad_inputs_one_line_each_and_nothing_lost(sketches, weights, tmp_path):
    (sketches / "broken.png").write_bytes(encode_image(_sketch(), ".png")[:200])
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(weights), "-o", str(tmp_path / "o"), code=1)
    assert "broken.png" in res.output and (tmp_path / "o" / "cat.png").is_file()
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(weights), "-o", str(sketches), code=2)
    assert "is the input folder" in " ".join(res.output.split())
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "nothing.png"), "-w", str(weights), code=2)
    assert "nothing.png: no such reference image or folder" in res.output


def test_the_wrong_kind_of_weights_is_refused_with_the_right_command(sketches, weights, tmp_path):
    res = _cli("stylize", str(sketches), "-w", str(weights), "-o", str(tmp_path / "s"), code=2)
    assert "a Style2paints colorizer" in res.output and "animegan colorize" in res.output
    from pipelines.models.registry import build_generator

    other = tmp_path / "v2"
    other.mkdir()
    save_generator(build_generator("animegan_v2"), "animegan_v2", {}, other)
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(other), code=2)
    assert "stylizer" in res.output and "animegan stylize" in res.output


def test_another_vgg_than_the_training_one_is_refused(sketches, tmp_path):
    bad = tmp_path / "w"
    bad.mkdir()
    save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, bad,
                   meta={"vgg_weights": "random", "vgg_fingerprint": "0123456789abcdef"})
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(bad), code=2)
    assert "other VGG19 weights" in res.output
    gone = tmp_path / "w2"
    gone.mkdir()
    save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, gone, meta={"vgg_weights": str(tmp_path / "vgg.pth")})
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"), "-w", str(gone), code=2)
    assert "vgg.pth, which is not here; pass --vgg-weights PATH" in res.output


def test_large_sketches_are_coloured_small_and_lined_at_full_size():
    assert network_size(3000, 2000, 1024) == (1024, 683) and network_size(300, 200, 1024) == (300, 200)
    # At the training scale (short side 192 for 128 px crops at train scale 1.5), up or down, long side capped.
    assert network_size(3000, 2000, None, 192) == (288, 192) and network_size(100, 150, None, 192) == (192, 288)
    assert network_size(200, 4000, None, 192) == (51, 1024)
    assert network_size(3000, 2000, 512, 192) == (512, 341)  # --max-side wins
    colour = np.full((10, 20, 3), 200, np.uint8)
    lines = np.full((40, 80), 255, np.uint8)
    lines[5, :] = 0
    out = finish_colour(colour, lines, keep_lines=True)
    assert out.shape == (40, 80, 3) and (out[5] == 0).all() and (out[6] == 200).all()
    assert (finish_colour(colour, lines, keep_lines=False) == 200).all()


def test_newest_colorizer_run_is_the_default(sketches, weights, tmp_path, monkeypatch):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(weights, runs / "colorizer")
    from pipelines.models.registry import build_generator

    save_generator(build_generator("animegan_v2"), "animegan_v2", {}, runs / "newer-stylizer")
    monkeypatch.chdir(tmp_path)
    res = _cli("colorize", str(sketches), "-r", str(tmp_path / "ref.jpg"))
    assert "2 colored" in res.output
    info = json.loads((runs / "colorizer" / "generator.json").read_text())
    assert info["kind"] == "colorizer"
    import os

    from pipelines.models.weight_files import find_latest_run

    newest = (runs / "newer-stylizer" / "generator.safetensors").stat().st_mtime + 10
    os.utime(runs / "colorizer" / "generator.safetensors", (newest, newest))
    assert find_latest_run(runs) == runs / "newer-stylizer"  # stylize's default skips the newer colorizer
    assert find_latest_run(runs, "colorizer") == runs / "colorizer"


def test_half_precision_is_close_to_fp32_and_fp16_needs_cuda(sketches, weights, tmp_path):
    ref = str(tmp_path / "ref.jpg")
    _cli("colorize", str(sketches), "-r", ref, "-w", str(weights), "-o", str(tmp_path / "fp32"), "-q")
    _cli("colorize", str(sketches), "-r", ref, "-w", str(weights), "-o", str(tmp_path / "bf16"), "-q", "--precision", "bf16")
    a, b = (read_image(tmp_path / d / "cat.png").astype(int) for d in ("fp32", "bf16"))
    assert a.shape == b.shape and np.abs(a - b).mean() < 4  # bf16 keeps 8 bits of mantissa
    if not torch.cuda.is_available():
        res = _cli("colorize", str(sketches), "-r", ref, "-w", str(weights), "--precision", "fp16", code=2)
        assert "--precision fp16 needs a CUDA device" in res.output


def test_an_overflowing_batch_is_redone_in_fp32(sketches, weights, tmp_path, monkeypatch):
    from pipelines.models import style2paints

    real = style2paints.ColorizerModel.forward

    def overflow_under_autocast(self, sketch, style):
        out = real(self, sketch, style)
        return out * float("inf") if torch.is_autocast_enabled("cpu") else out

    monkeypatch.setattr(style2paints.ColorizerModel, "forward", overflow_under_autocast)
    opts = ColorizeOptions(reference=tmp_path / "ref.jpg", weights=weights, out_dir=tmp_path / "o", precision="bf16")
    from pipelines.progress import RecordingReporter

    rep = RecordingReporter()
    summary = colorize([sketches], opts, rep)
    assert summary.done == 2 and sum("overflowed" in w for w in rep.warnings) == 1
    assert read_image(tmp_path / "o" / "cat.png").std() > 0  # fp32 colours, not NaN turned black


def test_auto_precision_is_checked_once_and_falls_back_when_it_changes_the_colours(sketches, weights, tmp_path,
                                                                                   monkeypatch):
    import pipelines.inference.engine as engine
    from pipelines.models import style2paints
    from pipelines.progress import RecordingReporter

    monkeypatch.setattr(engine, "native_cpu_bf16", lambda: True)  # auto picks bf16 on any CPU for this test
    real = style2paints.ColorizerModel.forward
    calls = {"autocast": 0}

    def shifted_under_autocast(self, sketch, style):
        out = real(self, sketch, style)
        if torch.is_autocast_enabled("cpu"):
            calls["autocast"] += 1
            return (out + 0.2).clamp(-1, 1)  # 25 levels brighter: a model bf16 breaks
        return out

    monkeypatch.setattr(style2paints.ColorizerModel, "forward", shifted_under_autocast)
    rep = RecordingReporter()
    opts = ColorizeOptions(reference=tmp_path / "ref.jpg", weights=weights, out_dir=tmp_path / "auto", batch_size=1)
    assert colorize([sketches], opts, rep).done == 2
    assert sum("changes this colorizer's output" in line and "using fp32" in line for line in rep.infos) == 1
    assert calls["autocast"] == 1  # the check alone; every sketch then ran in fp32
    opts = ColorizeOptions(reference=tmp_path / "ref.jpg", weights=weights, out_dir=tmp_path / "fp32", precision="fp32")
    colorize([sketches], opts, RecordingReporter())
    assert np.array_equal(read_image(tmp_path / "auto" / "cat.png"), read_image(tmp_path / "fp32" / "cat.png"))


def test_colorize_works_at_the_training_scale_and_squares_the_reference(sketches, tmp_path, monkeypatch):
    from pipelines.data.references import square_reference
    from pipelines.inference import colorize as colorize_module
    from pipelines.progress import RecordingReporter

    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, 40:80] = (250, 10, 10)  # a red centre between black sides
    assert square_reference(wide).shape == (40, 40, 3) and (square_reference(wide) == (250, 10, 10)).all()

    w = tmp_path / "scaled"
    w.mkdir()
    save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, w, meta={"vgg_weights": "random", "train_short_side": 64})
    sizes = []
    real = colorize_module._to_input
    monkeypatch.setattr(colorize_module, "_to_input", lambda lines, size: sizes.append(size) or real(lines, size))
    rep = RecordingReporter()
    colorize([sketches], ColorizeOptions(reference=tmp_path / "ref.jpg", weights=w, out_dir=tmp_path / "o"), rep)
    assert sizes and all(min(s) == 64 for s in sizes)
    assert any("working scale: short side 64 px" in line for line in rep.infos)


def test_auto_matching_uses_palette_for_a_colorizer_whose_training_found_it_following_loosely(sketches, tmp_path):
    from pipelines.progress import RecordingReporter

    said, outs = {}, {}
    generator = Style2PaintsGenerator()
    for name, nearest, match in (("loose", 0.25, "auto"), ("loose-palette", 0.25, "palette"), ("loose-off", 0.25, "off"),
                                 ("close", 1.0, "auto"), ("silent", None, "auto")):
        w = tmp_path / name
        w.mkdir()
        held_out = {"step": 240, "ref_nearest": nearest} if nearest is not None else None
        save_generator(generator, "style2paints_v1", {}, w,
                       meta={"vgg_weights": "random", **({"held_out": held_out} if held_out else {})})
        rep = RecordingReporter()
        colorize([sketches], ColorizeOptions(reference=tmp_path / "ref.jpg", weights=w, out_dir=tmp_path / f"o-{name}",
                                             match_colors=match), rep)
        said[name] = [line for line in rep.infos if "loosely" in line]
        outs[name] = read_image(tmp_path / f"o-{name}" / "cat.png")
    assert len(said["loose"]) == 1 and "step 240, 75% of its outputs" in said["loose"][0]
    assert said["loose"][0].startswith("--match-colors auto: palette") and "--match-colors off" in said["loose"][0]
    assert np.array_equal(outs["loose"], outs["loose-palette"]) and not np.array_equal(outs["loose"], outs["loose-off"])
    assert len(said["loose-off"]) == 1 and "--match-colors palette gives" in said["loose-off"][0]  # off kept, and said
    assert said["close"] == said["silent"] == said["loose-palette"] == []
    # the same network: its own colours whatever the file says of it
    assert np.array_equal(outs["close"], outs["loose-off"]) and np.array_equal(outs["silent"], outs["loose-off"])


def test_a_colorizer_exported_before_the_style_standardization_still_loads(tmp_path):
    from safetensors.torch import load_file, save_file

    from pipelines.models.weights import load_colorizer

    w = tmp_path / "old"
    w.mkdir()
    save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, w, meta={"vgg_weights": "random"})
    f = w / "generator.safetensors"
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as fh:
        meta = fh.metadata()
    tensors = {k: v for k, v in load_file(str(f)).items() if k not in ("style_mean", "style_scale")}
    save_file(tensors, str(f), metadata=meta)  # as files written before the standardization existed
    loaded = load_colorizer(w)
    g = loaded.model.generator
    assert torch.equal(g.style_mean, torch.zeros(4096)) and torch.equal(g.style_scale, torch.ones(4096))


def test_a_colour_photo_given_as_a_sketch_is_said(sketches, weights, tmp_path):
    from pipelines.progress import RecordingReporter

    photo_dir = tmp_path / "photos"
    write_image(photo_dir / "cat.png", skimage_photo("chelsea", 64))
    rep = RecordingReporter()
    summary = colorize([photo_dir], ColorizeOptions(reference=tmp_path / "ref.jpg", weights=weights, out_dir=tmp_path / "o1"), rep)
    assert summary.done == 1 and sum("does not look like line art" in w and "cat.png" in w for w in rep.warnings) == 1
    rep = RecordingReporter()
    colorize([sketches], ColorizeOptions(reference=tmp_path / "ref.jpg", weights=weights, out_dir=tmp_path / "o2"), rep)
    assert not any("line art" in w for w in rep.warnings)  # real sketches: nothing said


def test_an_exported_colorizer_runs_under_onnx_runtime_like_its_weights(sketches, tmp_path):
    """`colorize --weights colorizer.onnx` (issue 21): the export records its VGG19 and training scale, and ONNX
    Runtime colours like the PyTorch weights within 2 levels."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx

    torch.manual_seed(1)
    save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, tmp_path / "run",
                   meta={"vgg_weights": "random", "vgg_fingerprint": vgg.build_vgg_fc1("random").fingerprint(),
                         "train_short_side": 64})
    graph = tmp_path / "colorizer.onnx"
    _cli("export", str(tmp_path / "run"), str(graph))
    meta = {p.key: p.value for p in onnx.load(str(graph)).metadata_props}
    assert meta["kind"] == "colorizer" and meta["vgg_weights"] == "random" and meta["train_short_side"] == "64"
    common = ("-r", str(tmp_path / "ref.jpg"), "--format", "png")
    res = _cli("colorize", str(sketches), *common, "-w", str(graph), "-o", str(tmp_path / "onnx"))
    assert "ONNX Runtime" in res.output and "short side 64 px, as trained" in res.output
    _cli("colorize", str(sketches), *common, "-w", str(tmp_path / "run"), "-o", str(tmp_path / "pt"), "--precision", "fp32")
    for rel in ("cat.png", "sub/cup.png"):
        a, b = read_image(tmp_path / "onnx" / rel).astype(int), read_image(tmp_path / "pt" / rel).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2
    res = _cli("colorize", str(sketches), *common, "-w", str(graph), "-o", str(tmp_path / "x"), "--precision", "bf16", code=2)
    assert "an ONNX graph runs in its own precision" in res.output
    # an image-to-image graph is for stylize, and says so
    torch.save(GeneratorV2().state_dict(), tmp_path / "g.pt")
    _cli("export", str(tmp_path / "g.pt"), str(tmp_path / "g.onnx"))
    res = _cli("colorize", str(sketches), *common, "-w", str(tmp_path / "g.onnx"), "-o", str(tmp_path / "y"), code=2)
    assert "`animegan stylize`" in " ".join(res.output.split())

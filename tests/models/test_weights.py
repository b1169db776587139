"""Weight files: export round trip, run discovery, community files, and refusal of pickled code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pipelines.errors import InputError
from pipelines.models import InferenceModel, build_generator
from pipelines.models.weight_files import find_latest_run, weights_fingerprint
from pipelines.models.weights import load_generator, save_generator




def _x(h: int = 20, w: int = 28) -> torch.Tensor:
    return torch.rand(1, 3, h, w) * 2 - 1  # [1, 3, H, W] in [-1, 1]


@pytest.mark.parametrize("arch", ["animegan_v1", "animegan_v2"])
def test_save_load_round_trip(tmp_path: Path, arch: str):
    gen = build_generator(arch).eval()
    run = tmp_path / "runs" / "hayao"
    path = save_generator(gen, arch, {}, run, {"steps": 1200, "style": "hayao"})
    assert path == run / "generator.safetensors"

    desc = json.loads((run / "generator.json").read_text())
    assert desc["format"] == "animegan-generator" and desc["format_version"] == 1
    assert desc["architecture"] == arch
    assert desc["input"]["layout"] == "NCHW" and desc["input"]["range"] == [-1.0, 1.0]
    assert desc["input"]["channels"] == "RGB"
    assert desc["meta"] == {"steps": 1200, "style": "hayao"}
    # The same description sits inside the safetensors header.
    with safe_open(str(path), framework="pt") as fh:
        assert json.loads(fh.metadata()["animegan"]) == desc
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left

    loaded = load_generator(run)  # a run folder
    assert loaded.arch == arch and loaded.source == path and loaded.info["meta"]["steps"] == 1200
    assert not loaded.model.training
    x = _x()
    with torch.no_grad():
        # what the architecture's inference wrapper (size multiple, edge margin) makes of the saved network
        assert torch.allclose(loaded.model(x), InferenceModel.for_architecture(arch, gen)(x), atol=1e-6)


def test_lone_exported_file_is_self_describing(tmp_path: Path):
    gen = build_generator("animegan_v2", align_corners=False).eval()
    src = save_generator(gen, "animegan_v2", {"align_corners": False}, tmp_path / "run", {"style": "paprika"})
    lone = tmp_path / "elsewhere" / "paprika.safetensors"
    lone.parent.mkdir()
    shutil.copy(src, lone)  # no generator.json beside it
    loaded = load_generator(lone)
    assert loaded.info["arch_kwargs"] == {"align_corners": False}
    assert loaded.model.generator.align_corners is False
    assert loaded.info["meta"]["style"] == "paprika"


def test_the_file_says_whether_the_post_process_applies(tmp_path: Path):
    # White-box trained with the ink term is exported bare (its guided filter would blur the lines it draws); files
    # that say nothing (older exports, community files) get the architecture's post-process.
    gen = build_generator("whitebox").eval()
    with_filter = load_generator(save_generator(gen, "whitebox", {}, tmp_path / "a"))
    bare = load_generator(save_generator(gen, "whitebox", {}, tmp_path / "b", postprocess=False))
    assert with_filter.info["postprocess"].startswith("guided_filter") and with_filter.model.postprocess is not None
    assert bare.info["postprocess"] is None and bare.model.postprocess is None
    old = tmp_path / "old.safetensors"
    save_file(gen.state_dict(), str(old))  # no description at all
    assert load_generator(old).model.postprocess is not None
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(with_filter.model(x), bare.model(x), atol=1e-3)


def test_bare_safetensors_without_description_is_recognised(tmp_path: Path):
    path = tmp_path / "converted.safetensors"
    save_file(build_generator("animegan_v2").state_dict(), str(path))
    assert load_generator(path).arch == "animegan_v2"


def test_wrapped_community_checkpoint_is_unwrapped(tmp_path: Path):
    sd = {f"module.{k}": v for k, v in build_generator("animegan_v1").state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": sd}, path)
    loaded = load_generator(path)
    assert loaded.arch == "animegan_v1" and loaded.info["format"] == "community"


def test_pickled_code_is_refused_and_never_run(tmp_path: Path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"block_a.0.1.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(InputError, match=r"evil\.pt: refused to load") as err:
        load_generator(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_unknown_layout_names_the_file_and_what_was_found(tmp_path: Path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(4, 4), "decoder.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(InputError, match=r"other\.pt: unrecognised generator layout: 2 tensors \(first: encoder\.weight"):
        load_generator(path)


def test_description_and_tensors_disagree(tmp_path: Path):
    src = save_generator(build_generator("animegan_v2"), "animegan_v2", {}, tmp_path / "run", {})
    with safe_open(str(src), framework="pt") as fh:
        meta = fh.metadata()
    bad = tmp_path / "bad.safetensors"
    save_file(build_generator("animegan_v1").state_dict(), str(bad), metadata=meta)
    with pytest.raises(InputError, match=r"bad\.safetensors: tensors do not match architecture animegan_v2"):
        load_generator(bad)


@pytest.mark.parametrize("content", [b"", b"\x00\x01 not weights", b"PK\x03\x04 truncated zip"])
def test_corrupt_files(tmp_path: Path, content: bytes):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"broken\.pt: "):
        load_generator(path)
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(content)
    with pytest.raises(InputError, match=r"broken\.safetensors: not a readable safetensors"):
        load_generator(corrupt)


def test_missing_paths(tmp_path: Path):
    with pytest.raises(InputError, match="no such weights file"):
        load_generator(tmp_path / "nope.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(InputError, match="empty_run: folder has no generator.safetensors"):
        load_generator(tmp_path / "empty_run")


def test_find_latest_run_and_fingerprint(tmp_path: Path):
    runs = tmp_path / "runs"
    assert find_latest_run(runs) is None
    (runs / "unfinished").mkdir(parents=True)
    assert find_latest_run(runs) is None
    gen = build_generator("animegan_v2")
    old = save_generator(gen, "animegan_v2", {}, runs / "a", {})
    new = save_generator(gen, "animegan_v2", {}, runs / "b", {})
    os.utime(old, (1_500_000_000, 1_500_000_000))
    os.utime(new, (1_000_000_000, 1_000_000_000))
    assert find_latest_run(runs) == runs / "a"
    assert weights_fingerprint(runs / "a") == weights_fingerprint(old) == 1_500_000_000
    before = weights_fingerprint(runs / "b")
    save_generator(gen, "animegan_v2", {}, runs / "b", {})  # re-export changes the fingerprint
    assert weights_fingerprint(runs / "b") != before
    assert find_latest_run(runs) == runs / "b"


def test_wrong_kinds_of_file_say_what_they_are(tmp_path: Path):
    """ONNX exports, text, random bytes and training checkpoints passed as --weights: one line each
    saying what the file is and what to pass instead."""
    import io

    onnx_like = tmp_path / "model.onnx"
    onnx_like.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))
    with pytest.raises(InputError, match=r"model\.onnx: an ONNX model, not PyTorch weights.*run folder"):
        load_generator(onnx_like)
    text = tmp_path / "notes.pt"
    text.write_text("hello, these are not weights\n")
    with pytest.raises(InputError, match=r"notes\.pt: a text file, not weights \(expected a PyTorch state dict"):
        load_generator(text)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"junk\.pt: not a PyTorch weights file \(expected a PyTorch state dict"):
        load_generator(junk)
    # The other formats AnimeGANv3 releases its models in point to the .onnx release.
    tflite = tmp_path / "AnimeGANv3_Hayao_36.tflite"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    frozen = tmp_path / "AnimeGANv3_Shinkai_37.pb"
    frozen.write_bytes(b"\x0a\x64\x0a\x10AnimeGANv3_input" + bytes(64))
    for path, what in ((tflite, "a TensorFlow Lite model"), (frozen, "a TensorFlow graph")):
        with pytest.raises(InputError, match=rf"{path.name}: {what}, which this toolkit cannot run: use the model's \.onnx"):
            load_generator(path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "step-0000010.pt"
    buf = io.BytesIO()
    torch.save({"step": 10, "networks": {"generator": build_generator("animegan_v2").state_dict()},
                "optimizers": {}, "rng": {}}, buf)
    ckpt.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match=rf"a training checkpoint, not exported weights: pass the run folder instead \(--weights {run}\)"):
        load_generator(ckpt)


def test_poisoned_checkpoint_is_refused_without_unsafe_advice(tmp_path: Path):
    from pipelines.errors import TrainingError
    from pipelines.training.checkpoints import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "step-0000001.pt"
    torch.save({"step": 1, "networks": {}, "x": Payload()}, path)
    with pytest.raises(TrainingError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "refused to load" in msg and "\n" not in msg
    assert "weights_only" not in msg and "False" not in msg  # never relays "retry with weights_only=False"


@pytest.mark.parametrize("description, problem", [
    ('{"format": "animegan-generator", "format_version": "one", "architecture": "animegan_v2"}', "format_version is 'one', not a whole number"),
    ('{"format": "animegan-generator", "format_version": true, "architecture": "animegan_v2"}', "format_version is True"),
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "animegan_v2", "arch_kwargs": "x"}', "arch_kwargs is 'x', not a JSON object"),
    ('[1, 2, 3]', "description is a list, not a JSON object"),
    # Architecture arguments outside what the builder takes never reach PyTorch (negative or multi-GB tensors).
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "whitebox", "arch_kwargs": {"channels": -32}}',
     "arch_kwargs.channels: -32 is not a whole number from 1 to 8192"),
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "whitebox", "arch_kwargs": {"channels": 32.5}}',
     "arch_kwargs.channels: 32.5 is not a whole number"),
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "whitebox", "arch_kwargs": {"channels": 10000000}}',
     "arch_kwargs.channels: 10000000 is not a whole number"),
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "animegan_v2", "arch_kwargs": {"align_corners": 1}}',
     "arch_kwargs.align_corners: 1 is not true or false"),
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "animegan_v2", "arch_kwargs": {"width": 3}}',
     "arch_kwargs.width: not an argument of animegan_v2"),
    ('{"format": "animegan-generator", "format_version": 1, "architecture": "animegan_v2", "postprocess": 5}',
     "postprocess is 5, not a name or null"),
])
def test_hostile_descriptions_are_one_line(tmp_path: Path, description: str, problem: str):
    from pipelines.models.weights import METADATA_KEY

    path = tmp_path / "g.safetensors"
    save_file(build_generator("animegan_v2").state_dict(), str(path), metadata={METADATA_KEY: description})
    with pytest.raises(InputError) as err:
        load_generator(path)
    assert problem in str(err.value) and str(err.value).startswith(str(path))


def test_weights_with_nan_are_refused_with_one_line(tmp_path: Path):
    """A diverged run's file used to stylize without a word (every output NaN, written as black)."""
    g = build_generator("animegan_v2")
    sd = g.state_dict()
    first = next(k for k, v in sd.items() if v.is_floating_point())
    sd[first] = torch.full_like(sd[first], float("nan"))
    torch.save(sd, tmp_path / "diverged.pt")
    with pytest.raises(InputError, match=r"diverged.pt: 1 of its \d+ tensors hold NaN or infinite values"):
        load_generator(tmp_path / "diverged.pt")

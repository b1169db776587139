"""`animegan export`: ONNX with dynamic batch/height/width, metadata, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.models.animegan import GeneratorV2
from pipelines.models.registry import InferenceModel
from pipelines.models.weights import load_generator, save_generator

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
runner = CliRunner()


@pytest.mark.parametrize("kind", ["community", "export_v1"])
def test_export_parity_two_sizes(tmp_path: Path, kind: str):
    torch.manual_seed(0)
    if kind == "community":
        weights = tmp_path / "face.pt"
        torch.save(GeneratorV2().state_dict(), weights)
    else:
        save_generator(InferenceModel.for_architecture("animegan_v1").generator, "animegan_v1", {}, tmp_path / "run")
        weights = tmp_path / "run"
    out = tmp_path / "model.onnx"
    res = runner.invoke(app, ["export", str(weights), str(out)])
    assert res.exit_code == 0, res.output
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["value_range"] == "[-1, 1]" and meta["layout"] == "NCHW" and meta["channels"] == "RGB"
    assert meta["architecture"] == ("animegan_v2" if kind == "community" else "animegan_v1")
    assert meta["source"].endswith(".pt" if kind == "community" else "generator.safetensors")
    model = load_generator(weights).model
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n, h, w in [(1, 40, 56), (2, 37, 51)]:
        x = torch.rand(n, 3, h, w) * 2 - 1
        with torch.inference_mode():
            ref = model(x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == (n, 3, h, w)
        assert np.abs(got - ref).max() < 1e-3


def test_export_bad_weights_is_one_line(tmp_path: Path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"nope")
    res = runner.invoke(app, ["export", str(bad), str(tmp_path / "m.onnx")])
    assert res.exit_code != 0 and "x.pt" in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_a_name_that_is_not_onnx(tmp_path: Path):
    """`export RUN hayao.pt` used to write an ONNX graph under a weights-file name."""
    save_generator(GeneratorV2(), "animegan_v2", {}, tmp_path / "run")
    res = runner.invoke(app, ["export", str(tmp_path / "run"), str(tmp_path / "hayao.pt")])
    assert res.exit_code == 2, res.output
    assert "hayao.pt" in res.output and "name it with .onnx (e.g. hayao.onnx)" in " ".join(res.output.split())
    assert not (tmp_path / "hayao.pt").exists()

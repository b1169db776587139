"""ONNX graphs run by PyTorch (`onnx_torch.TorchGraph`) in ONNX Runtime's place: the same outputs as ONNX Runtime
on every operation it runs, graphs it cannot run stay on ONNX Runtime, and `stylize --onnx-backend` chooses.

Every graph is made here: the toolkit's own AnimeGANv2 export, the AnimeGANv3-like NHWC graph of
test_onnx_engine, and graphs written node by node with onnx.helper that hold the operations a TensorFlow
conversion (tf2onnx) of a generator writes: NHWC transposes, SAME padding, depthwise and strided convolutions,
layer-norm arithmetic, resizes whose sizes are computed from Shape, DepthToSpace, and so on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from animegan_cli.app import app  # noqa: E402
from pipelines.errors import InputError  # noqa: E402
from pipelines.fileio import read_image  # noqa: E402
import pipelines.inference.onnx_torch as onnx_torch  # noqa: E402
from pipelines.inference.onnx_engine import OnnxEngine, open_session  # noqa: E402
from pipelines.inference.onnx_torch import UnsupportedGraph, parse_model, torch_graph  # noqa: E402
from pipelines.inference.stylize import StylizeOptions, stylize  # noqa: E402
from pipelines.models.cpu_speed import accelerate, nnpack_usable  # noqa: E402
from pipelines.progress import RecordingReporter  # noqa: E402

from test_onnx_engine import v3_like  # noqa: E402
from test_stylize import community_weights, photo, write  # noqa: E402

runner = CliRunner()


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    s = open_session(path, path.read_bytes(), "cpu", threads=1)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _torch(path: Path, x: np.ndarray, fast: bool = False) -> np.ndarray:
    g = torch_graph(path.read_bytes())
    if fast and nnpack_usable():
        assert accelerate(g, force=True) > 0  # NNPACK convolutions, as on AVX2 CPUs
    with torch.inference_mode():
        return g(torch.from_numpy(x)).numpy()


def _init(name: str, a: np.ndarray):
    return numpy_helper.from_array(np.asarray(a), name)


def _save(path: Path, nodes: list, inits: list, opset: int, inp: str = "x", out: str = "y", layout: str = "NHWC") -> Path:
    shape = ["n", "h", "w", 3] if layout == "NHWC" else ["n", 3, "h", "w"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _doubled_size(x: str, size: str) -> list:
    """Nodes computing `[N, C, 2H, 2W]` of NCHW `x` from its Shape, as tf2onnx writes a resize's size (initializers
    s0, s2, s4 = [0], [2], [4] and two = [2, 2])."""
    return [helper.make_node("Shape", [x], [f"{size}_shp"]),
            helper.make_node("Slice", [f"{size}_shp", "s2", "s4"], [f"{size}_hw"]),
            helper.make_node("Mul", [f"{size}_hw", "two"], [f"{size}_hw2"]),
            helper.make_node("Slice", [f"{size}_shp", "s0", "s2"], [f"{size}_nc"]),
            helper.make_node("Concat", [f"{size}_nc", f"{size}_hw2"], [size], axis=0)]


def tf_like_generator(path: Path, opset: int) -> Path:
    """What tf2onnx writes for a small NHWC generator: transposes in and out, a SAME-padded strided conv, a depthwise
    conv, LADE-style normalization written as ReduceMean/Sub/Mul/Sqrt/Div, a bilinear 2x resize whose size comes from
    Shape/Slice/Mul/Concat, a reflect pad, DepthToSpace, Concat, Clip, HardSigmoid, Softmax over channels, a
    MatMul, a transposed conv, and a Tanh."""
    rng = np.random.default_rng(7)
    w = lambda *s: rng.normal(0, 0.3, s).astype(np.float32)  # noqa: E731
    axes_mean = ([helper.make_node("ReduceMean", ["c1", "ax23"], ["mu"], keepdims=1)] if opset >= 18 else
                 [helper.make_node("ReduceMean", ["c1"], ["mu"], axes=[2, 3], keepdims=1)])
    axes_var = ([helper.make_node("ReduceMean", ["sq", "ax23"], ["var"], keepdims=1)] if opset >= 18 else
                [helper.make_node("ReduceMean", ["sq"], ["var"], axes=[2, 3], keepdims=1)])
    nodes = [
        helper.make_node("Transpose", ["x"], ["xc"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xc", "w0", "b0"], ["c0"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("LeakyRelu", ["c0"], ["a0"], alpha=0.2),
        helper.make_node("Conv", ["a0", "wd"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        *axes_mean,
        helper.make_node("Sub", ["c1", "mu"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["sq"]),
        *axes_var,
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["n1"]),
        *_doubled_size("n1", "size"),
        helper.make_node("Resize", ["n1", "", "", "size"], ["up"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Resize", ["n1", "", "sc2"], ["upn"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Add", ["up", "upn"], ["u"]),
        helper.make_node("Pad", ["u", "pads"], ["up_p"], mode="reflect"),
        helper.make_node("Conv", ["up_p", "w2", "b2"], ["c2"], kernel_shape=[3, 3]),
        helper.make_node("DepthToSpace", ["c1", ], ["d2s"], blocksize=2, mode="DCR"),
        helper.make_node("Concat", ["c2", "d2s"], ["cat"], axis=1),
        helper.make_node("Clip", ["cat", "lo", "hi"], ["cl"]),
        helper.make_node("HardSigmoid", ["cl"], ["hs"], alpha=0.3, beta=0.4),
        helper.make_node("Softmax", ["hs"], ["sm"], axis=1),
        helper.make_node("Transpose", ["sm"], ["smh"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["smh", "wm"], ["mm"]),
        helper.make_node("Transpose", ["mm"], ["mmc"], perm=[0, 3, 1, 2]),
        helper.make_node("ConvTranspose", ["c0", "wt"], ["ct"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["mmc", "ct"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Transpose", ["t"], ["y"], perm=[0, 2, 3, 1]),
    ]
    inits = [_init("w0", w(8, 3, 3, 3)), _init("b0", w(8)), _init("wd", w(8, 1, 3, 3)), _init("eps", np.float32(1e-5)),
             _init("s0", np.array([0], np.int64)), _init("s2", np.array([2], np.int64)),
             _init("s4", np.array([4], np.int64)), _init("two", np.array([2, 2], np.int64)),
             _init("sc2", np.array([1, 1, 2, 2], np.float32)),
             _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), _init("w2", w(6, 8, 3, 3)), _init("b2", w(6)),
             _init("lo", np.float32(-1.5)), _init("hi", np.float32(1.5)), _init("wm", w(8, 3)),
             _init("wt", w(8, 3, 4, 4)), _init("ax23", np.array([2, 3], np.int64))]
    return _save(path, nodes, inits, opset)


@pytest.mark.parametrize("opset", [13, 18])
def test_tf_like_graph_matches_onnx_runtime_at_odd_sizes(tmp_path: Path, opset: int):
    graph = tf_like_generator(tmp_path / "g.onnx", opset)
    for h, w in ((32, 48), (37, 45), (18, 26)):
        x = np.random.default_rng(h).uniform(-1, 1, (2, h - h % 2, w - w % 2, 3)).astype(np.float32)
        want, got = _ort(graph, x), _torch(graph, x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() * 127.5 < 0.05


@pytest.mark.parametrize("mode,ctm,nearest", [
    ("linear", "asymmetric", None), ("linear", "align_corners", None), ("linear", "pytorch_half_pixel", None),
    ("nearest", "half_pixel", "round_prefer_floor"), ("nearest", "align_corners", "round_prefer_ceil"),
    ("nearest", "tf_half_pixel_for_nn", "floor"), ("linear", "half_pixel", None)])
def test_resize_as_the_specification_computes_it(tmp_path: Path, mode: str, ctm: str, nearest: str | None):
    extra = {"nearest_mode": nearest} if nearest else {}
    for scales in ([1, 1, 2, 3], [1, 1, 0.5, 0.75], [1, 1, 1.7, 2.4]):
        nodes = [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode=mode, coordinate_transformation_mode=ctm, **extra)]
        graph = _save(tmp_path / "r.onnx", nodes, [_init("sc", np.array(scales, np.float32))], 13, layout="NCHW")
        x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 11, 13)).astype(np.float32)
        want, got = _ort(graph, x), _torch(graph, x)
        assert got.shape == want.shape, (scales, got.shape, want.shape)
        assert np.abs(got - want).max() < 1e-4, scales


def test_pads_and_upsampling_as_animeganv3s_released_graphs_write_them(tmp_path: Path):
    """AnimeGANv3's releases (tf2onnx) reflect-pad the NHWC image on axes 1 and 2 before any transpose, and upsample
    with TensorFlow's resize_bilinear: linear, `asymmetric`, sized by a computed shape (a whole factor)."""
    nodes = [
        helper.make_node("Pad", ["x", "p_nhwc"], ["a"], mode="reflect"),  # NHWC, uneven, on H and W
        helper.make_node("Pad", ["a", "p_w"], ["b"], mode="edge"),  # one axis
        helper.make_node("Transpose", ["b"], ["bc"], perm=[0, 3, 1, 2]),
        *_doubled_size("bc", "size"),
        helper.make_node("Resize", ["bc", "", "", "size"], ["up"], mode="linear",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["up", "", "sc"], ["up3"], mode="linear", coordinate_transformation_mode="asymmetric"),
        helper.make_node("Transpose", ["up3"], ["y"], perm=[0, 2, 3, 1]),
    ]
    inits = [_init("p_nhwc", np.array([0, 1, 3, 0, 0, 2, 1, 0], np.int64)),
             _init("p_w", np.array([0, 0, 2, 0, 0, 0, 1, 0], np.int64)),
             _init("s0", np.array([0], np.int64)), _init("s2", np.array([2], np.int64)),
             _init("s4", np.array([4], np.int64)), _init("two", np.array([2, 2], np.int64)),
             _init("sc", np.array([1, 1, 3, 1.5], np.float32))]  # 3x: the whole-factor path; 1.5x: the general one
    graph = _save(tmp_path / "v3pad.onnx", nodes, inits, 13)
    x = np.random.default_rng(5).uniform(-1, 1, (2, 9, 7, 3)).astype(np.float32)
    want, got = _ort(graph, x), _torch(graph, x)
    assert got.shape == want.shape == (2, 72, 42, 3)  # padded to 12 x 14, then 2x, then 3x and 1.5x
    assert np.abs(got - want).max() < 1e-5
    # Reflect or edge padding on more axes than F.pad can take stays on ONNX Runtime.
    four = _save(tmp_path / "pad4.onnx", [helper.make_node("Pad", ["x", "p4"], ["y"], mode="reflect")],
                 [_init("p4", np.array([1, 1, 1, 1, 1, 1, 1, 1], np.int64))], 13)
    with pytest.raises(UnsupportedGraph, match="on 4 axes"):
        _torch(four, np.zeros((2, 4, 4, 3), np.float32))


def test_shape_arithmetic_slices_gathers_and_splits(tmp_path: Path):
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "i3"], ["hgt"], axis=0),  # a scalar: H
        helper.make_node("Div", ["hgt", "i2"], ["half"]),  # integer division
        helper.make_node("Unsqueeze", ["half", "ax0"], ["half1"]),
        helper.make_node("Slice", ["x", "zero1", "half1", "ax2"], ["top"]),  # the upper half
        helper.make_node("Slice", ["x", "m1", "big", "ax3", "m1"], ["flip"]),  # mirrored in width
        helper.make_node("Split", ["flip", "sp"], ["a", "b"], axis=1),
        helper.make_node("Concat", ["b", "a"], ["swap"], axis=1),
        helper.make_node("ReduceSum", ["top", "ax2"], ["col"], keepdims=1),
        helper.make_node("Expand", ["col", "shp"], ["colx"]),
        helper.make_node("Greater", ["swap", "zero_f"], ["pos"]),
        helper.make_node("Where", ["pos", "swap", "colx"], ["mix"]),
        helper.make_node("Cast", ["pos"], ["posf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["mix", "posf"], ["y"]),
    ]
    inits = [_init("i3", np.array(2, np.int64)), _init("i2", np.array(2, np.int64)), _init("ax0", np.array([0], np.int64)),
             _init("zero1", np.array([0], np.int64)), _init("ax2", np.array([2], np.int64)),
             _init("ax3", np.array([3], np.int64)), _init("m1", np.array([-1], np.int64)),
             _init("big", np.array([-(2**63)], np.int64)), _init("sp", np.array([1, 2], np.int64)),
             _init("zero_f", np.float32(0))]
    graph = _save(tmp_path / "s.onnx", nodes, inits, 13, layout="NCHW")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 9, 7)).astype(np.float32)
    want, got = _ort(graph, x), _torch(graph, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_pools_and_einsum(tmp_path: Path):
    nodes = [
        helper.make_node("MaxPool", ["x"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["x"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["x"], ["ap2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("GlobalMaxPool", ["x"], ["gm"]),
        helper.make_node("Add", ["mp", "ap"], ["s1"]),
        helper.make_node("Add", ["s1", "g"], ["s2"]),
        helper.make_node("Sub", ["s2", "gm"], ["s3"]),
        helper.make_node("Einsum", ["s3", "wm"], ["e"], equation="nchw,dc->ndhw"),
        helper.make_node("Resize", ["ap2", "", "", "size"], ["ap2u"], mode="nearest"),
        helper.make_node("Concat", ["e", "ap2u"], ["y"], axis=1),
    ]
    inits = [_init("wm", np.random.default_rng(3).normal(0, 1, (2, 3)).astype(np.float32))]
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 13, 11)).astype(np.float32)
    inits.append(_init("size", np.array([1, 3, 7, 6], np.int64)))
    graph = _save(tmp_path / "p.onnx", nodes, inits, 13, layout="NCHW")
    want, got = _ort(graph, x), _torch(graph, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_the_file_is_read_as_the_onnx_package_reads_it(tmp_path: Path):
    graph = tf_like_generator(tmp_path / "g.onnx", 18)
    proto = onnx.load(str(graph))
    model = parse_model(graph.read_bytes())
    assert model["opset"] == 18 and model["inputs"] == [("x", TensorProto.FLOAT)] and model["outputs"] == ["y"]
    assert [(op, ins, outs) for op, _, ins, outs, _ in model["nodes"]] == \
        [(n.op_type, list(n.input), list(n.output)) for n in proto.graph.node]
    for t in proto.graph.initializer:
        assert np.array_equal(model["initializers"][t.name].numpy(), numpy_helper.to_array(t))
    attrs = dict(zip((n.output[0] for n in proto.graph.node), (a for *_, a in model["nodes"])))
    assert attrs["c0"]["auto_pad"] == "SAME_UPPER" and attrs["c0"]["strides"] == [2, 2]
    assert attrs["hs"]["alpha"] == pytest.approx(0.3) and attrs["d2s"]["mode"] == "DCR"
    # Values stored in the typed fields rather than raw bytes, and a Constant node's tensor.
    const = helper.make_tensor("k", TensorProto.FLOAT, [2, 2], [1.0, -2.0, 3.5, 0.25])
    nodes = [helper.make_node("Constant", [], ["k"], value=const), helper.make_node("Mul", ["x", "k"], ["y"])]
    g2 = _save(tmp_path / "c.onnx", nodes, [helper.make_tensor("unused", TensorProto.INT64, [3], [-1, 5, 2**40])], 13,
               layout="NCHW")
    m2 = parse_model(g2.read_bytes())
    assert m2["initializers"]["unused"].tolist() == [-1, 5, 2**40]
    assert m2["nodes"][0][4]["value"].tolist() == [[1.0, -2.0], [3.5, 0.25]]
    for bad in (b"\xff" * 5, g2.read_bytes()[:-7]):
        with pytest.raises(UnsupportedGraph):
            parse_model(bad)


def test_our_export_and_a_v3_like_graph_match_onnx_runtime_with_nnpack_convolutions(tmp_path: Path):
    weights = community_weights(tmp_path / "v2.pt")
    res = runner.invoke(app, ["export", str(weights), str(tmp_path / "v2.onnx")])
    assert res.exit_code == 0, res.output
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 61, 45)).astype(np.float32)
    for fast in (False, True):
        assert np.abs(_torch(tmp_path / "v2.onnx", x, fast) - _ort(tmp_path / "v2.onnx", x)).max() * 127.5 < 0.1
    v3 = v3_like(tmp_path / "v3.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 48, 40, 3)).astype(np.float32)
    assert np.abs(_torch(v3, x, True) - _ort(v3, x)).max() * 127.5 < 0.1


def test_stylize_on_pytorch_gives_onnx_runtimes_outputs_and_says_so(tmp_path: Path):
    graph = v3_like(tmp_path / "AnimeGANv3_Hayao_36.onnx")
    src = tmp_path / "in"
    write(src / "a.png", photo("astronaut", 61, 45))
    write(src / "b.png", photo("coffee", 100, 77))
    outs = {}
    for backend in ("onnxruntime", "pytorch"):
        res = runner.invoke(app, ["stylize", str(src), "-w", str(graph), "-o", str(tmp_path / backend),
                                  "--onnx-backend", backend, "--precision", "fp32"],  # fp32 on native-bf16 CPUs too
                            env={"COLUMNS": "400"})
        assert res.exit_code == 0, res.output
        outs[backend] = res.output
    assert "onnxruntime fp32" in outs["onnxruntime"] and "run by PyTorch" not in outs["onnxruntime"]
    assert "ONNX graph run by PyTorch" in outs["pytorch"] and "pytorch fp32" in outs["pytorch"]
    for name in ("a.png", "b.png"):
        a, b = read_image(tmp_path / "onnxruntime" / name).astype(int), read_image(tmp_path / "pytorch" / name)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1


def _backend(graph: Path, photos: int, tmp_path: Path, **options) -> tuple[str, RecordingReporter]:
    src = tmp_path / f"in{photos}"
    for k in range(photos):
        write(src / f"p{k}.png", photo("chelsea", 40, 32))
    reporter = RecordingReporter()
    stylize([src], StylizeOptions(weights=graph, out_dir=tmp_path / f"out{photos}", **options), reporter)
    line = next(m for m in (reporter.infos + reporter.warnings) if "weights" in m)
    return ("onnxruntime" if "), onnxruntime fp32" in line else "pytorch"), reporter


def test_auto_picks_pytorch_where_its_convolutions_are_faster_and_the_job_pays_for_it(tmp_path: Path, monkeypatch):
    import pipelines.inference.stylize as st
    import pipelines.models.cpu_speed as cpu_speed

    graph = v3_like(tmp_path / "v3.onnx")
    monkeypatch.setattr(cpu_speed, "nnpack_pays_off", lambda: True)  # an AVX2 CPU
    monkeypatch.setattr(cpu_speed, "native_cpu_bf16", lambda: False)
    assert _backend(graph, 2, tmp_path)[0] == "onnxruntime"  # two small photos: PyTorch's import would cost more
    monkeypatch.setattr(st, "PYTORCH_FROM_PIXELS", 0)
    monkeypatch.setattr(st, "PYTORCH_FROM_ORT_SECONDS", 1e6)  # ONNX Runtime's time on the job, from its check run
    assert _backend(graph, 3, tmp_path)[0] == "onnxruntime"
    monkeypatch.setattr(st, "PYTORCH_FROM_ORT_SECONDS", 1e-6)
    assert _backend(graph, 4, tmp_path)[0] == "pytorch"
    kind, rep = _backend(graph, st.RACE_FROM_IMAGES, tmp_path)  # raced: the job's first forwards decide, said once
    assert sum("runs the rest of the job" in m for m in rep.infos) == 1, rep.infos
    assert len(list((tmp_path / f"out{st.RACE_FROM_IMAGES}").glob("*.png"))) == st.RACE_FROM_IMAGES
    # A video always pays for it (frames add up); on an AVX-512 CPU without native bf16 nothing does.
    engine = OnnxEngine(graph, "cpu")
    video = [st._Job(tmp_path / "clip.mp4", tmp_path / "o.mp4", True)]
    sample = lambda: photo("chelsea", 40, 32)  # noqa: E731
    monkeypatch.setattr(st, "PYTORCH_FROM_ORT_SECONDS", 1e6)
    assert st._onnx_backend(StylizeOptions(), engine, video, sample) == "race"
    # As many images as RACE_FROM_IMAGES race too (the job's first forwards decide); fewer take PyTorch on the rule.
    monkeypatch.setattr(st, "PYTORCH_FROM_ORT_SECONDS", 1e-6)
    many = [st._Job(write(tmp_path / "many" / f"{k}.png", photo("chelsea", 40, 32)), tmp_path / f"o{k}.png", False)
            for k in range(st.RACE_FROM_IMAGES)]
    assert st._onnx_backend(StylizeOptions(), engine, many, sample) == "race"
    assert st._onnx_backend(StylizeOptions(), engine, many[1:], sample) == "pytorch"
    monkeypatch.setattr(cpu_speed, "nnpack_pays_off", lambda: False)
    assert st._onnx_backend(StylizeOptions(), engine, video, sample) == "onnxruntime"
    assert st._onnx_backend(StylizeOptions(onnx_backend="pytorch"), engine, [], sample) == "pytorch"
    with pytest.raises(InputError, match="--onnx-backend must be one of"):
        st._onnx_backend(StylizeOptions(onnx_backend="tvm"), engine, [], sample)


def test_the_jobs_pixels_come_from_headers_once_scaled_by_max_side_and_never_block(tmp_path: Path):
    import os
    import signal

    import pipelines.inference.stylize as st

    a = write(tmp_path / "a.png", photo("astronaut", 400, 300))
    b = write(tmp_path / "b.jpg", photo("coffee", 200, 100))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    os.mkfifo(tmp_path / "pipe.png")  # opening it for its header would wait for a writer forever
    jobs = [st._Job(p, tmp_path / "o" / p.name, False) for p in (a, tmp_path / "pipe.png", tmp_path / "broken.png", b)]
    jobs.append(st._Job(tmp_path / "clip.mp4", tmp_path / "o.mp4", True))
    count = st._PixelCount(jobs, None)
    assert count.reaches(1000) and count.total == 400 * 300  # stops at the first image that is enough
    signal.alarm(20)  # a regression would block on the FIFO: fail instead of hanging the suite
    try:
        assert count.reaches(400 * 300 + 200 * 100) and not count.reaches(10**9)
        assert count.total == 400 * 300 + 200 * 100  # the FIFO, the damaged file and the video count nothing
        scaled = st._PixelCount(jobs, 100)  # --max-side 100
        assert not scaled.reaches(10**9) and scaled.total == pytest.approx(100 * 75 + 100 * 50)
    finally:
        signal.alarm(0)


def test_bf16_on_a_native_bf16_cpu_and_fp32_when_bf16_changes_the_output(tmp_path: Path, monkeypatch):
    import pipelines.models.cpu_speed as cpu_speed

    monkeypatch.setattr(cpu_speed, "nnpack_pays_off", lambda: False)
    monkeypatch.setattr(cpu_speed, "native_cpu_bf16", lambda: True)
    kind, rep = _backend(v3_like(tmp_path / "v3.onnx"), 2, tmp_path, onnx_backend="pytorch")
    assert kind == "pytorch" and any("pytorch bf16" in m for m in (rep.infos + rep.warnings)), (rep.infos + rep.warnings)
    # A graph whose result is a small difference of two large values: bf16 (8 bits of mantissa) loses it.
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["big"], kernel_shape=[1, 1]),
             helper.make_node("Conv", ["big", "wb"], ["y"], kernel_shape=[1, 1])]
    wa = np.concatenate([np.eye(3) * 1000, np.zeros((3, 3))]).reshape(6, 3, 1, 1).astype(np.float32)
    ba = np.full(6, 1e5, np.float32)
    wb = np.concatenate([np.eye(3), -np.eye(3)], axis=1).reshape(3, 6, 1, 1).astype(np.float32) / 1000
    fragile = _save(tmp_path / "fragile.onnx", nodes, [_init("wa", wa), _init("ba", ba), _init("wb", wb)], 13,
                    layout="NCHW")
    kind, rep = _backend(fragile, 3, tmp_path, onnx_backend="pytorch")
    assert kind == "pytorch" and any("pytorch fp32" in m for m in (rep.infos + rep.warnings)), (rep.infos + rep.warnings)
    assert any("bfloat16 changes this graph's output" in m for m in rep.infos if "run by PyTorch" in m), rep.infos


def test_a_graph_pytorch_cannot_run_or_gets_wrong_stays_on_onnx_runtime(tmp_path: Path, monkeypatch):
    nodes = [helper.make_node("Transpose", ["x"], ["c"], perm=[0, 3, 1, 2]),
             helper.make_node("LpNormalization", ["c"], ["n"], axis=1),  # not among the operations run here
             helper.make_node("Transpose", ["n"], ["y"], perm=[0, 2, 3, 1])]
    odd = _save(tmp_path / "odd.onnx", nodes, [], 13)
    with pytest.raises(UnsupportedGraph, match="LpNormalization"):
        torch_graph(odd.read_bytes())
    src = write(tmp_path / "in" / "a.png", photo("astronaut", 40, 30))
    res = runner.invoke(app, ["stylize", str(src), "-w", str(odd), "-o", str(tmp_path / "o"), "--onnx-backend",
                              "pytorch"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "runs on ONNX Runtime: PyTorch cannot run it here (operations LpNormalization)" in res.output
    assert read_image(tmp_path / "o" / "a.png").shape == (30, 40, 3)

    # An operation this engine computed differently from ONNX Runtime: caught by the check before any output.
    monkeypatch.setitem(onnx_torch.OPS, "Tanh", lambda i, a: torch.sigmoid(i[0]))
    engine = OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu")
    with pytest.raises(UnsupportedGraph, match="differs from ONNX Runtime"):
        engine.use_pytorch(photo("coffee", 48, 40))
    assert engine.backend == "onnxruntime" and "onnxruntime" in engine.label
    assert engine.stylize_image(photo("coffee", 48, 40)).shape == (40, 48, 3)


def _timed(forward, seconds: float, log: list[str], name: str):
    def run(c, a):
        log.append(name)
        if seconds:
            import time

            time.sleep(seconds)
        return forward(c, a)
    return run


@pytest.mark.parametrize("slow", ["pytorch", "onnxruntime"])
def test_a_race_on_the_jobs_first_forwards_keeps_the_faster_engine(tmp_path: Path, slow: str):
    engine = OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu")
    lines: list[str] = []
    said = engine.use_pytorch(photo("chelsea", 40, 32), "fp32", race=True, on_decided=lines.append)
    assert "whichever is faster" in said and "the faster on the job's first forwards" in engine.label
    race, log = engine._race, []
    race.contenders = {n: _timed(f, 0.05 if n == slow else 0, log, n) for n, f in race.contenders.items()}
    images = [photo(name, 48, 40) for name in ("chelsea", "astronaut", "coffee", "rocket")]
    outs = [engine.stylize_batch(im[None])[0] for im in images]
    fast = "onnxruntime" if slow == "pytorch" else "pytorch"
    assert log == ["pytorch", "onnxruntime", fast, fast]  # PyTorch first, then each engine once, then the faster
    assert engine.backend == fast and race.winner == fast and len(lines) == 1
    assert {"pytorch": "PyTorch runs the rest", "onnxruntime": "ONNX Runtime runs the rest"}[fast] in lines[0]
    assert ("pytorch" in engine.label) == (fast == "pytorch")
    ort = OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu")
    for im, out in zip(images, outs):
        assert np.abs(out.astype(int) - ort.stylize_batch(im[None])[0]).max() <= 1


def test_a_race_compares_forwards_of_similar_sizes(tmp_path: Path):
    """Per-pixel cost falls with size: a thumbnail on one engine and a photo on the other are not compared."""
    import pipelines.inference.onnx_engine as oe

    engine = OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu")
    lines: list[str] = []
    engine.use_pytorch(photo("chelsea", 40, 32), "fp32", race=True, on_decided=lines.append)
    race, log = engine._race, []
    race.contenders = {n: _timed(f, 0.05 if n == "onnxruntime" else 0, log, n) for n, f in race.contenders.items()}
    small, large = photo("coffee", 16, 16), photo("astronaut", 64, 48)
    for im in (small, large, large, small):
        engine.stylize_batch(im[None])
    # small on PyTorch, large on ONNX Runtime: no pair; large on PyTorch pairs with it; the rest on the faster
    assert log == ["pytorch", "onnxruntime", "pytorch", "pytorch"] and race.winner == "pytorch" and len(lines) == 1
    # Sizes that never pair: after RACE_MAX_FORWARDS each, the largest forward of each decides.
    engine = OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu")
    engine.use_pytorch(photo("chelsea", 40, 32), "fp32", race=True)
    race, log = engine._race, []
    race.contenders = {n: _timed(f, 0, log, n) for n, f in race.contenders.items()}
    sizes = [16, 40, 17, 80, 18, 160]  # PyTorch gets 16-18 px, ONNX Runtime 40-160 px
    for side in sizes:
        engine.stylize_batch(photo("coffee", side, side)[None])
        assert (race.winner is None) == (side != sizes[-1])
    assert len(log) == 2 * oe.RACE_MAX_FORWARDS


def test_pytorch_failing_during_a_race_hands_the_job_to_onnx_runtime(tmp_path: Path):
    engine = OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu")
    lines: list[str] = []
    engine.use_pytorch(photo("chelsea", 40, 32), "fp32", race=True, on_decided=lines.append)

    def broken(c, a):
        raise RuntimeError("no kernel for this size")

    engine._race.contenders["pytorch"] = broken
    im = photo("astronaut", 48, 40)
    out = engine.stylize_batch(im[None])[0]  # the failed forward is run again by ONNX Runtime
    assert engine.backend == "onnxruntime" and "PyTorch failed" in lines[0] and "no kernel for this size" in lines[0]
    assert np.array_equal(out, OnnxEngine(v3_like(tmp_path / "v3.onnx"), "cpu").stylize_batch(im[None])[0])

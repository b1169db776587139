"""`TorchGraph`: an ONNX image graph run by PyTorch, node by node, where PyTorch is the faster engine.

Why: ONNX Runtime's CPU convolutions are fp32 GEMM-based kernels (MLAS). On CPUs whose best instruction set is
AVX2, the toolkit's NNPACK (Winograd) path runs the same convolutions 1.7-1.8x as fast (docs/benchmarks.md,
eighteenth session), and on CPUs with native bf16 oneDNN's bf16 kernels are about twice as fast as fp32. AnimeGANv3's models ship only as ONNX files, so
without this they would run at ONNX Runtime's speed whatever the CPU.

What runs is this module's own PyTorch code for each operation in `OPS` (the ONNX operator specification's
semantics, opset 11 on); the file is read as data: its tensors and its node list. A graph with any other
operation, a subgraph, a non-float32 input, or more than one input is refused with `UnsupportedGraph`, and the
caller keeps ONNX Runtime; the caller also compares the two engines' outputs once before trusting this one.
Convolutions become `nn.Conv2d` modules so `cpu_speed.accelerate`, channels_last and autocast reach them as
they reach the toolkit's own generators.

Tensors: image data flows as float tensors; shape arithmetic (Shape, Gather, Concat ... feeding Reshape,
Resize, Pad) as int64 tensors, as the graph has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class UnsupportedGraph(Exception):
    """The graph uses something this engine does not run (the message says what); ONNX Runtime runs it instead."""


# ONNX TensorProto data types -> torch dtypes (those a shape or image graph uses).
_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


# ---- reading the file: ONNX's protobuf messages, only the fields a graph's computation needs ---------------
# Field numbers are onnx/onnx.proto's (stable since IR version 3). The onnx package would read them too, but its
# import costs 1.3 s on a 2-core AVX2 EPYC (its ml_dtypes dependency), half of what PyTorch then saves on a photo.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(buf):
            raise UnsupportedGraph("a truncated protobuf message")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise UnsupportedGraph("a malformed protobuf varint")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """A protobuf message's (field number, wire type, value) in order: ints for varints, bytes otherwise."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise UnsupportedGraph(f"protobuf wire type {wire}")
        if pos > len(buf):
            raise UnsupportedGraph("a truncated protobuf message")
        out.append((field, wire, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _int_list(items: list[tuple[int, Any]]) -> list[int]:
    """A repeated int64/int32 field, packed (wire type 2) or not."""
    out: list[int] = []
    for wire, v in items:
        if wire == 2:
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                out.append(_signed(x))
        else:
            out.append(_signed(v))
    return out


def _float_list(items: list[tuple[int, Any]], code: str = "<f4") -> np.ndarray:
    return np.concatenate([np.frombuffer(v, code) for _, v in items]) if items else np.zeros(0, code)


def _group(buf: bytes) -> dict[int, list[tuple[int, Any]]]:
    fields: dict[int, list[tuple[int, Any]]] = {}
    for f, wire, v in _fields(buf):
        fields.setdefault(f, []).append((wire, v))
    return fields


def _text(fields: dict[int, list], number: int) -> str:
    items = fields.get(number)
    return bytes(items[-1][1]).decode("utf-8", "replace") if items else ""


_NUMPY = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?", 10: "<f2", 11: "<f8",
          12: "<u4", 13: "<u8"}


def _tensor(f: dict[int, list[tuple[int, Any]]]) -> torch.Tensor:
    """A TensorProto's values (its fields, `_group`ed) as a tensor: raw_data or the typed repeated fields, never
    external data."""
    dims = _int_list(f.get(1, []))
    dtype = f[2][-1][1] if 2 in f else 0
    if dtype not in _NUMPY or dtype == 13 and 9 not in f:
        raise UnsupportedGraph(f"a tensor of ONNX type {dtype}")
    if 14 in f and f[14][-1][1] == 1 or 13 in f:
        raise UnsupportedGraph("a tensor stored in an external file")
    if 9 in f:  # raw_data, little-endian
        a = np.frombuffer(f[9][-1][1], _NUMPY[dtype])
    elif dtype == 1:
        a = _float_list(f.get(4, []))
    elif dtype == 11:
        a = _float_list(f.get(10, []), "<f8")
    elif dtype == 7:
        a = np.array(_int_list(f.get(7, [])), np.int64)
    elif dtype == 10:  # float16 bits in int32_data
        a = np.array(_int_list(f.get(5, [])), np.int64).astype(np.uint16).view(np.float16)
    elif dtype == 12:
        a = np.array(_int_list(f.get(11, [])), np.int64).astype(np.uint32)
    else:  # int32, int16, int8, uint8, uint16, bool: int32_data
        a = np.array(_int_list(f.get(5, [])), np.int64).astype(_NUMPY[dtype])
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if a.size != n:
        raise UnsupportedGraph(f"a tensor with {a.size} values for shape {dims}")
    a = a.reshape(dims)
    if a.dtype in (np.uint16, np.uint32, np.uint64):  # no such torch tensors: values, not bits, matter here
        a = a.astype(np.int64)
    return torch.from_numpy(np.array(a, copy=True))


def _attribute(buf: bytes) -> tuple[str, Any]:
    f = _group(buf)
    name = _text(f, 1)
    if 6 in f or 11 in f:
        raise UnsupportedGraph("an operation with a subgraph")
    if 5 in f:
        return name, _tensor(_group(f[5][-1][1]))
    if 4 in f:
        return name, bytes(f[4][-1][1]).decode("utf-8", "replace")
    if 2 in f:
        return name, float(np.frombuffer(f[2][-1][1], "<f4")[0])
    if 3 in f:
        return name, _signed(f[3][-1][1])
    if 7 in f:
        return name, [float(v) for v in _float_list(f[7])]
    if 8 in f:
        return name, _int_list(f[8])
    if 9 in f:
        return name, [bytes(v).decode("utf-8", "replace") for _, v in f[9]]
    if 10 in f or 22 in f or 23 in f or 14 in f or 15 in f:
        raise UnsupportedGraph(f"attribute {name} of a kind this engine does not read")
    # A scalar equal to its type's default may be left out by some writers; an empty list leaves no field.
    kind = f[20][-1][1] if 20 in f else 0
    return name, {1: 0.0, 2: 0, 3: ""}.get(kind, [])


def parse_model(data: bytes) -> dict[str, Any]:
    """The parts of an ONNX ModelProto that say what it computes: opset, inputs ((name, element type)), output
    names, initializers (name -> tensor) and nodes ((op_type, domain, inputs, outputs, attributes))."""
    model = _group(data)
    opset = 0
    for _, v in model.get(8, []):
        o = _group(v)
        if _text(o, 1) in ("", "ai.onnx"):
            opset = o[2][-1][1] if 2 in o else 0
    if 7 not in model:
        raise UnsupportedGraph("no graph in the file")
    g = _group(model[7][-1][1])
    inits = {}
    for _, v in g.get(5, []):
        t = _group(v)
        inits[_text(t, 8)] = _tensor(t)
    if 15 in g:
        raise UnsupportedGraph("sparse initializers")
    inputs = []
    for _, v in g.get(11, []):
        vi = _group(v)
        elem = 0
        if 2 in vi:
            tp = _group(vi[2][-1][1])
            if 1 in tp:
                tt = _group(tp[1][-1][1])
                elem = tt[1][-1][1] if 1 in tt else 0
        inputs.append((_text(vi, 1), elem))
    outputs = [_text(_group(v), 1) for _, v in g.get(12, [])]
    nodes = []
    for _, v in g.get(1, []):
        n = _group(v)
        ins = [bytes(x).decode() for _, x in n.get(1, [])]
        outs = [bytes(x).decode() for _, x in n.get(2, [])]
        attrs = dict(_attribute(a) for _, a in n.get(5, []))
        nodes.append((_text(n, 4), _text(n, 7), ins, outs, attrs))
    return {"opset": opset, "inputs": inputs, "outputs": outputs, "initializers": inits, "nodes": nodes}


def _ints(t: torch.Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


# ---- operations: fn(inputs, attributes) -> output or tuple of outputs ---------------------------------------
# `inputs` holds None for an optional input left empty ("" in the graph).

def _binary(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    return lambda i, a: f(i[0], i[1])


def _div(i, a):
    x, y = i
    if not x.is_floating_point():
        return torch.div(x, y, rounding_mode="trunc")
    return x / y


def _reshape(i, a):
    x, shape = i[0], _ints(i[1])
    if not a.get("allowzero", 0):
        shape = [x.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return x.reshape(shape)


def _shape(i, a):
    dims = list(i[0].shape)
    start, end = a.get("start", 0), a.get("end", len(dims))
    return torch.tensor(dims[slice(start, end)], dtype=torch.int64)


def _axis_indices(size: int, start: int, end: int, step: int) -> range:
    # ONNX Slice clamps like Python's slice() for both signs of step.
    return range(size)[slice(start, end, step)]


def _slice(i, a):
    x = i[0]
    starts, ends = _ints(i[1]), _ints(i[2])
    axes = _ints(i[3]) if len(i) > 3 and i[3] is not None else list(range(len(starts)))
    steps = _ints(i[4]) if len(i) > 4 and i[4] is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = ax % x.dim()
        r = _axis_indices(x.shape[ax], s, e, st)
        if st == 1:
            x = x.narrow(ax, r.start, len(r)) if len(r) else x.narrow(ax, 0, 0)
        else:
            x = x.index_select(ax, torch.tensor(list(r), dtype=torch.int64))
    return x


def _gather(i, a):
    x, idx = i
    ax = a.get("axis", 0) % x.dim()
    flat = idx.reshape(-1).long()
    flat = torch.where(flat < 0, flat + x.shape[ax], flat)
    out = x.index_select(ax, flat)
    return out.reshape((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]))


def _unsqueeze(i, a):
    x = i[0]
    axes = _ints(i[1]) if len(i) > 1 and i[1] is not None else list(a["axes"])
    rank = x.dim() + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        x = x.unsqueeze(ax)
    return x


def _squeeze(i, a):
    x = i[0]
    axes = _ints(i[1]) if len(i) > 1 and i[1] is not None else list(a.get("axes", []))
    if not axes:
        return x.squeeze()
    for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _concat(i, a):
    xs = [t for t in i if t is not None and t.numel() > 0] or [t for t in i if t is not None][:1]
    return torch.cat(xs, dim=a["axis"])


def _cast(i, a):
    to = a["to"]
    if to not in _DTYPES:
        raise UnsupportedGraph(f"Cast to ONNX type {to}")
    return i[0].to(_DTYPES[to])


def _constant(i, a):
    if "value" in a:
        return a["value"]
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32), ("value_int", torch.int64),
                       ("value_ints", torch.int64)):
        if key in a:
            return torch.tensor(a[key], dtype=dtype)
    raise UnsupportedGraph("Constant of a kind other than a tensor or numbers")


def _constant_of_shape(i, a):
    value = a["value"] if "value" in a else torch.zeros(1)
    return value.reshape(-1)[:1].expand(_ints(i[0])).clone() if _ints(i[0]) else value.reshape(())


def _transpose(i, a):
    x = i[0]
    return x.permute(a.get("perm", list(range(x.dim() - 1, -1, -1))))


def _pad(i, a):
    x = i[0]
    pads = _ints(i[1]) if len(i) > 1 and i[1] is not None else list(a["pads"])
    value = float(i[2].reshape(-1)[0]) if len(i) > 2 and i[2] is not None and i[2].numel() else float(a.get("value", 0.0))
    axes = _ints(i[3]) if len(i) > 3 and i[3] is not None else list(range(x.dim()))
    n = len(axes)
    full = [0] * (2 * x.dim())
    for k, ax in enumerate(axes):
        ax %= x.dim()
        full[ax], full[x.dim() + ax] = pads[k], pads[n + k]
    mode = a.get("mode", "constant")
    torch_pads: list[int] = []
    for ax in range(x.dim() - 1, -1, -1):
        torch_pads += [full[ax], full[x.dim() + ax]]
    if mode == "constant":
        return F.pad(x, torch_pads, value=value)
    if mode not in ("reflect", "edge"):
        raise UnsupportedGraph(f"Pad mode {mode}")
    if min(full) < 0:
        raise UnsupportedGraph("negative reflect/edge padding")
    padded = [ax for ax in range(x.dim()) if full[ax] or full[x.dim() + ax]]
    if not padded:
        return x
    if len(padded) > 3:
        raise UnsupportedGraph(f"Pad mode {mode} on {len(padded)} axes (at most 3)")
    # F.pad reflects or replicates only the last 1-3 axes of a tensor with one batch axis in front: a graph
    # written for NHWC (tf2onnx: AnimeGANv3's releases) pads axes 1 and 2, so the padded axes move to the end
    # behind one flattened axis of the others, and back afterwards.
    rest = [ax for ax in range(x.dim()) if ax not in padded]
    moved = x.permute(rest + padded)
    flat = moved.reshape(-1, *moved.shape[len(rest):])
    tail: list[int] = []
    for ax in reversed(padded):
        tail += [full[ax], full[x.dim() + ax]]
    out = F.pad(flat, tail, mode="reflect" if mode == "reflect" else "replicate")
    out = out.reshape(*moved.shape[: len(rest)], *out.shape[1:])
    return out.permute([(rest + padded).index(ax) for ax in range(x.dim())])


def _clip(i, a):
    lo = i[1] if len(i) > 1 and i[1] is not None else a.get("min")
    hi = i[2] if len(i) > 2 and i[2] is not None else a.get("max")
    lo = float(lo) if lo is not None else None
    hi = float(hi) if hi is not None else None
    return i[0].clamp(lo, hi)


def _reduce(f: Callable[..., torch.Tensor], axes_from_input_since: int):
    def run(i, a, opset: int):
        x = i[0]
        if opset >= axes_from_input_since:
            axes = _ints(i[1]) if len(i) > 1 and i[1] is not None else []
        else:
            axes = list(a.get("axes", []))
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return f(x, dim=[ax % x.dim() for ax in axes], keepdim=keep)

    run.wants_opset = True  # type: ignore[attr-defined]
    return run


def _amax(x, dim, keepdim):
    return torch.amax(x, dim=dim, keepdim=keepdim)


def _amin(x, dim, keepdim):
    return torch.amin(x, dim=dim, keepdim=keepdim)


def _softmax(i, a, opset: int):
    x = i[0]
    axis = a.get("axis", -1 if opset >= 13 else 1) % x.dim()
    if opset < 13 and axis != x.dim() - 1:
        raise UnsupportedGraph("Softmax before opset 13 over other than the last axis")
    return torch.softmax(x, dim=axis)


_softmax.wants_opset = True  # type: ignore[attr-defined]


def _gemm(i, a):
    x, w = i[0], i[1]
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    y = a.get("alpha", 1.0) * (x @ w)
    if len(i) > 2 and i[2] is not None:
        y = y + a.get("beta", 1.0) * i[2]
    return y


def _instance_norm(i, a):
    # The same arithmetic as F.instance_norm, in group_norm's kernel: 2.5x faster on CPU (a [1, 1, 2.2M] map:
    # 2.9 ms against 7.1 ms), which matters for exports that write a layer norm as a one-channel instance norm.
    x = i[0]
    return F.group_norm(x, x.shape[1], i[1], i[2], a.get("epsilon", 1e-5))


def _batch_norm(i, a):
    x, scale, bias, mean, var = i[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _expand(i, a):
    x = i[0]
    shape = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(i[1])))
    return x.expand(shape)


def _split(i, a, opset: int):
    x = i[0]
    ax = a.get("axis", 0) % x.dim()
    sizes = _ints(i[1]) if len(i) > 1 and i[1] is not None else list(a.get("split", []))
    if not sizes:
        n = a.get("num_outputs") or a["_outputs"]
        step = -(-x.shape[ax] // n)
        sizes = [min(step, x.shape[ax] - k * step) for k in range(n)]
    return tuple(torch.split(x, sizes, dim=ax))


_split.wants_opset = True  # type: ignore[attr-defined]


def _depth_to_space(i, a):
    x, b = i[0], a["blocksize"]
    n, c, h, w = x.shape
    if a.get("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x, b)
    y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def _space_to_depth(i, a):
    x, b = i[0], a["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _flatten(i, a):
    x = i[0]
    ax = a.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    return x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)


def _prelu(i, a):
    x, slope = i
    return torch.where(x < 0, x * slope, x)


def _where(i, a):
    return torch.where(i[0].bool(), i[1], i[2])


def _range(i, a):
    start, limit, delta = (t.reshape(()).item() for t in i)
    return torch.arange(start, limit, delta, dtype=i[0].dtype)


def _pool(kind: str):
    def run(i, a):
        x = i[0]
        if x.dim() != 4 or a.get("auto_pad", "NOTSET") != "NOTSET" or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UnsupportedGraph(f"{kind} other than 2-D with explicit padding")
        k, st = a["kernel_shape"], a.get("strides", [1, 1])
        pads = a.get("pads", [0, 0, 0, 0])
        if kind == "MaxPool":
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=float("-inf"))
            return F.max_pool2d(x, k, st, ceil_mode=bool(a.get("ceil_mode", 0)))
        if pads[0] == pads[2] and pads[1] == pads[3] and 2 * max(pads[0], pads[1]) <= min(k):
            return F.avg_pool2d(x, k, st, (pads[0], pads[1]), ceil_mode=bool(a.get("ceil_mode", 0)),
                                count_include_pad=bool(a.get("count_include_pad", 0)))
        raise UnsupportedGraph("AveragePool with uneven or large padding")

    return run


def _variadic(f):
    def run(i, a):
        out = i[0]
        for t in i[1:]:
            out = f(out, t)
        return out

    return run


def _resize(i, a, opset: int):
    """Resize over the last two axes of an image, as the ONNX specification computes it (linear or nearest)."""
    x = i[0]
    if opset < 11:
        raise UnsupportedGraph("Resize before opset 11")
    scales = i[2] if len(i) > 2 and i[2] is not None and i[2].numel() else None
    sizes = _ints(i[3]) if len(i) > 3 and i[3] is not None and i[3].numel() else None
    if x.dim() != 4:
        raise UnsupportedGraph(f"Resize of a rank-{x.dim()} tensor")
    if sizes is None:
        if scales is None:
            raise UnsupportedGraph("Resize without scales or sizes")
        s = [float(v) for v in scales.reshape(-1).tolist()]
        if s[0] != 1 or s[1] != 1:
            raise UnsupportedGraph("Resize over the batch or channel axis")
        sizes = [x.shape[0], x.shape[1], int(math.floor(x.shape[2] * s[2])), int(math.floor(x.shape[3] * s[3]))]
        sh, sw = s[2], s[3]
    else:
        if list(sizes[:2]) != list(x.shape[:2]):
            raise UnsupportedGraph("Resize over the batch or channel axis")
        sh, sw = sizes[2] / x.shape[2], sizes[3] / x.shape[3]
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if a.get("antialias", 0) and (sh < 1 or sw < 1):
        raise UnsupportedGraph("antialiased Resize")
    if mode not in ("nearest", "linear") or ctm == "tf_crop_and_resize" or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedGraph(f"Resize mode {mode} / {ctm}")
    out_h, out_w = sizes[2], sizes[3]
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel") and out_h > 1 and out_w > 1:
        # Source coordinates are (d + 0.5) / scale - 0.5 with the scale as given (not out/in) when scales are.
        if scales is not None:
            return F.interpolate(x, scale_factor=(sh, sw), mode="bilinear", align_corners=False,
                                 recompute_scale_factor=False)
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
    if mode == "linear" and ctm == "align_corners":
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=True)
    if mode == "linear" and ctm == "asymmetric" and out_h % x.shape[2] == 0 and out_w % x.shape[3] == 0:
        fh, fw = out_h // x.shape[2], out_w // x.shape[3]
        if (scales is None or (sh, sw) == (fh, fw)) and fh <= 8 and fw <= 8:
            return _upsample_asymmetric(_upsample_asymmetric(x, fh, 2), fw, 3)
    nearest = a.get("nearest_mode", "round_prefer_floor")
    ys = _source_coords(x.shape[2], out_h, sh, ctm)
    xs = _source_coords(x.shape[3], out_w, sw, ctm)
    if mode == "nearest":
        def pick(c: torch.Tensor, size: int) -> torch.Tensor:
            if nearest == "floor":
                k = torch.floor(c)
            elif nearest == "ceil":
                k = torch.ceil(c)
            elif nearest == "round_prefer_ceil":
                k = torch.floor(c + 0.5)
            else:  # round_prefer_floor
                k = torch.ceil(c - 0.5)
            return k.long().clamp(0, size - 1)

        return x.index_select(2, pick(ys, x.shape[2])).index_select(3, pick(xs, x.shape[3]))

    def lerp_axis(t: torch.Tensor, c: torch.Tensor, axis: int) -> torch.Tensor:
        size = t.shape[axis]
        c = c.clamp(0, size - 1)
        lo = torch.floor(c).long().clamp(0, size - 1)
        hi = (lo + 1).clamp(max=size - 1)
        w = (c - lo).to(t.dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        return t.index_select(axis, lo) * (1 - w.reshape(shape)) + t.index_select(axis, hi) * w.reshape(shape)

    return lerp_axis(lerp_axis(x, ys, 2), xs, 3)


_resize.wants_opset = True  # type: ignore[attr-defined]


def _upsample_asymmetric(x: torch.Tensor, factor: int, axis: int) -> torch.Tensor:
    """Linear upsampling by a whole `factor` along `axis` with source coordinate d / factor (ONNX's
    `asymmetric`, TensorFlow's resize_bilinear without half-pixel centres, as tf2onnx writes AnimeGANv3):
    output `factor * k + j` is input k moved j / factor of the way to input k + 1 (the last input repeats).
    One blend per phase instead of two gathers: about 6x faster than the general path at 528 px."""
    if factor == 1:
        return x
    n = x.shape[axis]
    after = torch.cat([x.narrow(axis, 1, n - 1), x.narrow(axis, n - 1, 1)], axis)
    phases = [x] + [torch.lerp(x, after, j / factor) for j in range(1, factor)]
    return torch.stack(phases, axis + 1).flatten(axis, axis + 1)


def _source_coords(in_size: int, out_size: int, scale: float, ctm: str) -> torch.Tensor:
    d = torch.arange(out_size, dtype=torch.float64)
    if ctm == "asymmetric":
        c = d / scale
    elif ctm == "align_corners":
        c = d * ((in_size - 1) / (out_size - 1)) if out_size > 1 else torch.zeros_like(d)
    elif ctm == "pytorch_half_pixel":
        c = (d + 0.5) / scale - 0.5 if out_size > 1 else torch.zeros_like(d)
    elif ctm == "tf_half_pixel_for_nn":
        c = (d + 0.5) / scale
    elif ctm == "half_pixel_symmetric":
        adj = out_size / (scale * in_size)
        c = (in_size / 2) * (1 - adj) + (d + 0.5) / scale - 0.5
    else:  # half_pixel
        c = (d + 0.5) / scale - 0.5
    return c.float()


OPS: dict[str, Callable[..., Any]] = {
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul), "Div": _div,
    "Pow": _binary(torch.pow), "MatMul": _binary(torch.matmul), "Equal": _binary(torch.eq),
    "Greater": _binary(torch.gt), "Less": _binary(torch.lt), "GreaterOrEqual": _binary(torch.ge),
    "LessOrEqual": _binary(torch.le), "And": _binary(torch.logical_and), "Or": _binary(torch.logical_or),
    "Max": _variadic(torch.maximum), "Min": _variadic(torch.minimum), "Sum": _variadic(torch.add),
    "Sqrt": lambda i, a: torch.sqrt(i[0]), "Reciprocal": lambda i, a: torch.reciprocal(i[0]),
    "Neg": lambda i, a: torch.neg(i[0]), "Abs": lambda i, a: torch.abs(i[0]), "Exp": lambda i, a: torch.exp(i[0]),
    "Log": lambda i, a: torch.log(i[0]), "Floor": lambda i, a: torch.floor(i[0]), "Ceil": lambda i, a: torch.ceil(i[0]),
    "Round": lambda i, a: torch.round(i[0]), "Erf": lambda i, a: torch.erf(i[0]), "Not": lambda i, a: torch.logical_not(i[0]),
    "Sin": lambda i, a: torch.sin(i[0]), "Cos": lambda i, a: torch.cos(i[0]),
    "Relu": lambda i, a: F.relu(i[0]), "Sigmoid": lambda i, a: torch.sigmoid(i[0]), "Tanh": lambda i, a: torch.tanh(i[0]),
    "LeakyRelu": lambda i, a: F.leaky_relu(i[0], a.get("alpha", 0.01)),
    "Elu": lambda i, a: F.elu(i[0], a.get("alpha", 1.0)),
    "HardSigmoid": lambda i, a: (i[0] * a.get("alpha", 0.2) + a.get("beta", 0.5)).clamp(0, 1),
    "HardSwish": lambda i, a: F.hardswish(i[0]), "Softplus": lambda i, a: F.softplus(i[0]),
    "PRelu": _prelu, "Clip": _clip, "Identity": lambda i, a: i[0], "Dropout": lambda i, a: i[0],
    "Reshape": _reshape, "Shape": _shape, "Slice": _slice, "Gather": _gather, "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze, "Concat": _concat, "Cast": _cast, "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Transpose": _transpose, "Pad": _pad, "Expand": _expand, "Split": _split, "Flatten": _flatten, "Where": _where,
    "Range": _range, "DepthToSpace": _depth_to_space, "SpaceToDepth": _space_to_depth,
    "ReduceMean": _reduce(torch.mean, 18), "ReduceSum": _reduce(torch.sum, 13), "ReduceMax": _reduce(_amax, 18),
    "ReduceMin": _reduce(_amin, 18), "Softmax": _softmax, "Gemm": _gemm,
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda i, a: i[0].amax(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"),
    "Einsum": lambda i, a: torch.einsum(a["equation"], *i),
    "InstanceNormalization": _instance_norm, "BatchNormalization": _batch_norm, "Resize": _resize,
    # Conv and ConvTranspose are modules (TorchGraph._conv), so NNPACK, channels_last and autocast reach them.
    "Conv": None, "ConvTranspose": None,
}


class TorchGraph(nn.Module):
    """An ONNX graph (an `onnx.ModelProto` with one float32 input) as a PyTorch module:
    `forward(x) -> the graph's first output`, both as the graph lays them out."""

    def __init__(self, model: dict[str, Any]):
        super().__init__()
        self.opset = model["opset"]
        if self.opset < 11:
            raise UnsupportedGraph(f"opset {self.opset} (11 or later runs here)")
        inputs = [(name, elem) for name, elem in model["inputs"] if name not in model["initializers"]]
        if len(inputs) != 1 or inputs[0][1] != 1 or not model["outputs"]:
            raise UnsupportedGraph("an input other than one float32 image")
        self.input_name, self.output_name = inputs[0][0], model["outputs"][0]
        unknown = sorted({op for op, domain, *_ in model["nodes"] if domain not in ("", "ai.onnx") or op not in OPS})
        if unknown:
            raise UnsupportedGraph(f"operations {', '.join(unknown)}")
        self.consts: dict[str, torch.Tensor] = dict(model["initializers"])
        self.convs = nn.ModuleDict()
        self.steps: list[tuple[str, list[str], list[str], dict[str, Any]]] = []
        for k, (op, _, ins, outs, a) in enumerate(model["nodes"]):
            if op in ("Conv", "ConvTranspose"):
                a["_module"] = self._conv(op, ins, a, f"c{k}")
            if op == "Split":
                a["_outputs"] = len(outs)
            self.steps.append((op, ins, outs, a))
        # A convolution's weights live in its module; kept twice they would double a large model's memory.
        read = {n for op, ins, _, _ in self.steps if op not in ("Conv", "ConvTranspose") for n in ins} | {self.output_name}
        for op, ins, _, _ in self.steps:
            if op in ("Conv", "ConvTranspose"):
                for n in ins[1:]:
                    if n not in read:
                        self.consts.pop(n, None)
        # Values no later node reads are dropped as the graph runs: large activations do not pile up.
        last_use: dict[str, int] = {}
        for k, (_, ins, _, _) in enumerate(self.steps):
            for name in ins:
                last_use[name] = k
        self.free_after = [[n for n in ins if last_use.get(n) == k and n not in self.consts and n != self.output_name]
                           for k, (_, ins, _, _) in enumerate(self.steps)]

    def _conv(self, op: str, ins: list[str], a: dict[str, Any], name: str) -> str:
        if len(ins) < 2 or ins[1] not in self.consts:
            raise UnsupportedGraph(f"{op} whose weights are computed in the graph")
        w = self.consts[ins[1]].float()
        if w.dim() != 4:
            raise UnsupportedGraph(f"{op} of rank {w.dim()} (2-D convolutions run here)")
        b = self.consts.get(ins[2]) if len(ins) > 2 and ins[2] else None
        if len(ins) > 2 and ins[2] and b is None:
            raise UnsupportedGraph(f"{op} whose bias is computed in the graph")
        groups, stride = a.get("group", 1), tuple(a.get("strides", (1, 1)))
        dilation = tuple(a.get("dilations", (1, 1)))
        kernel = tuple(w.shape[2:])
        pads = list(a.get("pads", (0, 0, 0, 0)))
        auto_pad = a.get("auto_pad", "NOTSET")
        if op == "ConvTranspose":
            if auto_pad != "NOTSET" or "output_shape" in a or pads[0] != pads[2] or pads[1] != pads[3]:
                raise UnsupportedGraph("ConvTranspose with auto_pad, output_shape or uneven pads")
            m: nn.Module = nn.ConvTranspose2d(w.shape[0], w.shape[1] * groups, kernel, stride, (pads[0], pads[1]),
                                              tuple(a.get("output_padding", (0, 0))), groups, b is not None, dilation)
        else:
            symmetric = auto_pad == "NOTSET" and pads[0] == pads[2] and pads[1] == pads[3]
            m = nn.Conv2d(w.shape[1] * groups, w.shape[0], kernel, stride, (pads[0], pads[1]) if symmetric else 0,
                          dilation, groups, b is not None)
            m.pre_pad = None if symmetric else (auto_pad, pads)  # type: ignore[assignment]
        with torch.no_grad():
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b.float())
        m.requires_grad_(False)
        self.convs[name] = m
        return name

    def _run_conv(self, a: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
        m = self.convs[a["_module"]]
        pre = getattr(m, "pre_pad", None)
        if pre is not None:
            auto_pad, pads = pre
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                pads = []
                for size, k, s, d in zip(x.shape[2:], m.kernel_size, m.stride, m.dilation):
                    total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
                    small = total // 2
                    pads.append((small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small))
                pads = [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]
            elif auto_pad == "VALID":
                pads = [0, 0, 0, 0]
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        return m(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor | None] = dict(self.consts)
        values[self.input_name] = x
        values[""] = None
        for (op, ins, outs, a), free in zip(self.steps, self.free_after):
            if op in ("Conv", "ConvTranspose"):
                result: Any = self._run_conv(a, values[ins[0]])  # weights and bias: the module's
            else:
                args = [values[n] for n in ins]
                fn = OPS[op]
                result = fn(args, a, self.opset) if getattr(fn, "wants_opset", False) else fn(args, a)
            if isinstance(result, tuple):
                for name, r in zip(outs, result):
                    values[name] = r
            else:
                values[outs[0]] = result
            for n in free:
                values.pop(n, None)
        return values[self.output_name]


def torch_graph(data: bytes) -> TorchGraph:
    """The graph in `data` (an .onnx file's bytes) as a `TorchGraph`; `UnsupportedGraph` when it cannot run here."""
    return TorchGraph(parse_model(data)).eval()

"""`animegan export`: the inference model as ONNX, with dynamic batch, height and width.

A colorizer (Style2paints) exports with two inputs, `sketch` `[N, 1, H, W]` and `style` `[N, 4096]` (the
reference's VGG19 fc1 vector: the 548 MB VGG19 stays out of the file), and the output `colorized`.

The graph is the `InferenceModel` contract (generator + padding to the architecture's size
multiple + crop + clamp; inputs at least 16 px a side): input `image` `[N, 3, H, W]` float32 RGB in [-1, 1], output `stylized`, same shape and
range. Metadata properties record that contract, the architecture and the weights it came from.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AnimeganError, InputError
from ..fileio import atomic_write_bytes

DEFAULT_OPSET = 17


def _need_onnx():
    try:
        import onnx
    except ImportError:
        raise AnimeganError("ONNX export needs the onnx package: pip install 'animegan[onnx]'") from None
    return onnx


class _Exportable(nn.Module):
    """`InferenceModel`'s contract in a traceable form: `[N, 3, H, W]` in [-1, 1] -> same.

    `InferenceModel` decides the padding in Python, which a trace would freeze to the sample's
    size. Here the input is reflect-padded by the edge margin, then always by `multiple - 1` and cut to the
    next multiple, which gives the same pixels (the first k reflected rows do not depend on how many
    are added) with sizes that stay symbolic in the graph.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.generator = inner.generator
        self.postprocess = inner.postprocess
        self.multiple = int(inner.size_multiple)
        self.edge_pad = int(getattr(inner, "edge_pad", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m, e = self.multiple, self.edge_pad
        xp = F.pad(x, (e, e, e, e), mode="reflect") if e else x
        if m > 1:
            xp = F.pad(xp, (0, m - 1, 0, m - 1), mode="reflect")
            xp = xp[:, :, : (h + 2 * e + m - 1) // m * m, : (w + 2 * e + m - 1) // m * m]
        out = self.generator(xp)
        if self.postprocess is not None:
            out = self.postprocess(xp, out)
        return out[:, :, e:e + h, e:e + w].clamp(-1.0, 1.0)


class _ExportableColorizer(nn.Module):
    """`ColorizerModel`'s contract in a traceable form: `sketch [N, 1, H, W]` in [-1, 1] and `style [N, 4096]`
    -> `[N, 3, H, W]` in [-1, 1]; padded with white by `multiple - 1` and cut to the next multiple (as above)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.generator = inner.generator
        from ..models.style2paints import SIZE_MULTIPLE

        self.multiple = SIZE_MULTIPLE

    def forward(self, sketch: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h, w = sketch.shape[-2], sketch.shape[-1]
        m = self.multiple
        xp = F.pad(sketch, (0, m - 1, 0, m - 1), value=1.0)
        xp = xp[:, :, : (h + m - 1) // m * m, : (w + m - 1) // m * m]
        return self.generator(xp, style)[:, :, :h, :w].clamp(-1.0, 1.0)


def export_onnx(weights_path: str | Path, out_path: str | Path, opset: int = DEFAULT_OPSET,
                sample_size: int = 64) -> Path:
    """Write `out_path` (atomically) from a run folder, `.safetensors` export or community `.pt`."""
    if Path(out_path).suffix.lower() != ".onnx":
        # An ONNX graph under a .pt or .safetensors name would be taken for a weights file by every tool.
        raise InputError(out_path, f"the export is an ONNX file: name it with .onnx (e.g. {Path(out_path).with_suffix('.onnx').name})")
    onnx = _need_onnx()
    from .. import __version__
    from ..models.weights import load_weights

    loaded = load_weights(weights_path, device="cpu")
    colorizer = loaded.info["kind"] == "colorizer"
    # An odd sample size, so that no shape-dependent step can be traced as a no-op.
    if colorizer:
        model: nn.Module = _ExportableColorizer(loaded.model).eval()
        args: tuple = (torch.rand(1, 1, sample_size + 3, sample_size + 1) * 2 - 1, torch.rand(1, 4096))
        names, output = ["sketch", "style"], "colorized"
        axes = {"sketch": {0: "batch", 2: "height", 3: "width"}, "style": {0: "batch"},
                "colorized": {0: "batch", 2: "height", 3: "width"}}
    else:
        model = _Exportable(loaded.model).eval()
        args = (torch.rand(1, 3, sample_size + 3, sample_size + 1) * 2 - 1,)  # [1, 3, H, W] in [-1, 1]
        names, output = ["image"], "stylized"
        axes = {"image": {0: "batch", 2: "height", 3: "width"}, "stylized": {0: "batch", 2: "height", 3: "width"}}
    buf = io.BytesIO()
    # The tracer warns about shape-dependent Python branches and instance norm's training flag; the
    # parity test against onnxruntime at two sizes is what shows the export right, and a user can act
    # on none of these warnings, so they are not shown.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, input_names=names, output_names=[output], opset_version=opset,
                          dynamic_axes=axes, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    props = {
        "value_range": "[-1, 1]",
        "layout": "NCHW",
        "channels": "RGB",
        "dtype": "float32",
        "architecture": loaded.arch,
        "arch_kwargs": json.dumps(loaded.info.get("arch_kwargs", {}), sort_keys=True),
        "source": str(loaded.source),
        "source_format": str(loaded.info.get("format", "")),
        "producer": f"animegan {__version__}",
    }
    if colorizer:  # what colorize needs besides the graph: which VGG19 makes its style vectors, and its scale
        meta = loaded.info.get("meta") or {}
        props["kind"] = "colorizer"
        props["vgg_weights"] = str(meta.get("vgg_weights", ""))
        props["vgg_fingerprint"] = str(meta.get("vgg_fingerprint", ""))
        if meta.get("train_short_side"):
            props["train_short_side"] = str(meta["train_short_side"])
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    if colorizer:
        proto.doc_string = (f"Style2paints colorizer ({loaded.arch}). Inputs 'sketch' [N,1,H,W] float32 gray in [-1,1] "
                            f"(dark lines on white) and 'style' [N,4096] float32 (VGG19 fc1 after ReLU of the reference "
                            f"resized to 224x224, ImageNet-normalized); output 'colorized' [N,3,H,W] RGB in [-1,1].")
    else:
        proto.doc_string = (f"AnimeGAN-family generator ({loaded.arch}). Input 'image' [N,3,H,W] float32 RGB in [-1,1]; "
                            f"output 'stylized' same shape and range.")
    out_path = Path(out_path)
    atomic_write_bytes(out_path, proto.SerializeToString())
    return out_path

"""`animegan export`: the inference model as ONNX, with dynamic batch, height and width.

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

from ..errors import AnimeganError
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
    size. Here the input is always reflect-padded by `multiple - 1` and then cut to the next
    multiple, which gives the same pixels (the first k reflected rows do not depend on how many
    are added) with sizes that stay symbolic in the graph.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.generator = inner.generator
        self.postprocess = inner.postprocess
        self.multiple = int(inner.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        xp = x
        if m > 1:
            xp = F.pad(x, (0, m - 1, 0, m - 1), mode="reflect")
            xp = xp[:, :, : (h + m - 1) // m * m, : (w + m - 1) // m * m]
        out = self.generator(xp)
        if self.postprocess is not None:
            out = self.postprocess(xp, out)
        return out[:, :, :h, :w].clamp(-1.0, 1.0)


def export_onnx(weights_path: str | Path, out_path: str | Path, opset: int = DEFAULT_OPSET,
                sample_size: int = 64) -> Path:
    """Write `out_path` (atomically) from a run folder, `.safetensors` export or community `.pt`."""
    onnx = _need_onnx()
    from .. import __version__
    from ..models.weights import load_generator

    loaded = load_generator(weights_path, device="cpu")
    model = _Exportable(loaded.model).eval()
    # An odd sample size, so that no shape-dependent step can be traced as a no-op.
    x = torch.rand(1, 3, sample_size + 3, sample_size + 1) * 2 - 1  # [1, 3, H, W] in [-1, 1]
    buf = io.BytesIO()
    # The tracer warns about shape-dependent Python branches and instance norm's training flag; the
    # parity test against onnxruntime at two sizes is what shows the export right, and a user can act
    # on none of these warnings, so they are not shown.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buf, input_names=["image"], output_names=["stylized"], opset_version=opset,
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "stylized": {0: "batch", 2: "height", 3: "width"}},
            dynamo=False,
        )
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
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.doc_string = (f"AnimeGAN-family generator ({loaded.arch}). Input 'image' [N,3,H,W] float32 RGB in [-1,1]; "
                        f"output 'stylized' same shape and range.")
    out_path = Path(out_path)
    atomic_write_bytes(out_path, proto.SerializeToString())
    return out_path

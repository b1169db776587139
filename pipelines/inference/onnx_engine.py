"""`OnnxEngine`: an ONNX image-to-image graph run by ONNX Runtime, with the interface of `engine.Engine`.

Runs the toolkit's own exports (`animegan export`: `image` `[N, 3, H, W]` RGB in [-1, 1]) and the graphs
other projects release, such as AnimeGANv3's (one input named `AnimeGANv3_input:0` or similar, `[N, H, W, 3]`
RGB in [-1, 1], dynamic height and width that must be multiples of 8). The contract is read from the graph:

- one image input of rank 4, float32 or float16; the layout from which axis holds 3 channels (NCHW or
  NHWC; tried both ways when the graph leaves it open); a fixed batch or spatial size when the graph fixes one;
- the value range from the export's `value_range` metadata, else from the output's last operation (a
  Sigmoid means [0, 1] in and out), else [-1, 1] (AnimeGAN's convention);
- the size multiple by probing: the smallest of 1, 2, ..., 64 for which a size that is an odd multiple of it
  runs and gives an output of the input's size. Every input is reflect-padded to that multiple and the output
  cropped back, so a photo is never resized.

A graph of any other shape (two inputs, no rank-4 output, integer inputs) is one line saying what was found.
Graphs are loaded from bytes, with no custom-operator libraries registered: nothing in the file can run as
code, and no external data file beside it is opened.

Tiling: large images are stylized in blended tiles like the PyTorch engine's, but a graph's normalization
layers cannot be given the whole image's statistics, so each tile is normalized on its own (for
GroupNorm/InstanceNorm generators tiles can differ slightly in tone; a larger `--max-memory` means fewer tiles).

No PyTorch: `stylize --weights model.onnx` run by ONNX Runtime never imports it (its import is about 1.3 s, a third of a
four-photo run, and its idle OpenMP threads compete with ONNX Runtime's). Devices are the strings "cpu"/"cuda".
`use_pytorch` hands the running to `onnx_torch.TorchGraph` on CPUs where PyTorch's convolutions are faster (stylize
decides when); the contract, padding and tiling stay this engine's, and ONNX Runtime's output is the check.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AnimeganError, InputError
from ..fileio import read_regular_file
from ..progress import plural
from .sizing import BYTES_PER_PIXEL_FP32, DEFAULT_OVERLAP, DEVICES, Sizing, check_sample, device_type
from .tile_blend import blend_tiles, tile_spans

# Protobuf cannot hold more than 2 GiB; a larger ".onnx" is not a self-contained graph.
MAX_ONNX_BYTES = 2 << 30
PROBE_MULTIPLES = (1, 2, 4, 8, 16, 32, 64)
PROBE_SIDE = 72  # probe sizes are odd multiples of m from about this side: large enough for 5-6 downsamplings
SMALL_PROBE_SIDE = 16  # then the smallest size tried, which smaller inputs are padded up to when it runs
_VALUE_PRESERVING = {"Transpose", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Cast", "Flatten"}
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# PyTorch runs a graph in ONNX Runtime's place only when its fp32 output is this close to ONNX Runtime's (levels of
# 255; measured 0.06 on the toolkit's AnimeGANv2 export at 528x528: the two sum in different orders).
ONNX_AGREEMENT_LEVELS = 1.0


@dataclass
class GraphContract:
    """What an image-to-image ONNX graph takes and gives."""

    input_name: str
    output_name: str
    layout: str  # "NCHW" | "NHWC"
    dtype: type  # np.float32 | np.float16
    value_range: tuple[float, float]  # the input's and the output's
    multiple: int  # H and W must be multiples of this
    fixed_size: tuple[int, int] | None  # (H, W) when the graph takes only that size
    fixed_batch: int | None
    range_source: str  # where value_range came from, for the summary line
    min_side: int = 1  # the smaller side of the size that passed the probe: smaller inputs are padded up to it

    def describe(self) -> str:
        size = f"{self.fixed_size[0]}x{self.fixed_size[1]} only" if self.fixed_size else f"multiples of {self.multiple}"
        lo, hi = self.value_range
        return f"ONNX {self.layout} '{self.input_name}', RGB in [{lo:g}, {hi:g}] ({self.range_source}), sizes {size}"


def _need_ort():
    try:
        import onnxruntime
    except ImportError:
        raise AnimeganError("running .onnx models needs ONNX Runtime: pip install onnxruntime") from None
    return onnxruntime


def onnx_cuda_available() -> bool:
    """Whether the installed ONNX Runtime can run graphs on CUDA (the onnxruntime-gpu build)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _first_line(exc: BaseException) -> str:
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return text[0][:200] if text else type(exc).__name__


def read_graph_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file of at most MAX_ONNX_BYTES, else one line naming it."""
    try:
        return read_regular_file(path, MAX_ONNX_BYTES)
    except OSError as exc:
        hint = "; graphs with external weight files are not supported" if exc.errno == errno.EFBIG else ""
        raise InputError(path, f"cannot read ({exc.strerror or exc}){hint}") from None


def _graph_hints(data: bytes) -> tuple[dict[str, str], str | None]:
    """(metadata properties, op type that produces the first output) from the graph, when the onnx package
    is installed; ({}, None) otherwise (ONNX Runtime exposes metadata but not the graph)."""
    try:
        import onnx
    except ImportError:
        return {}, None
    try:
        proto = onnx.load_from_string(data)  # bytes only: external data is never opened
    except Exception:  # noqa: BLE001 - whatever onnx raises, ONNX Runtime has already accepted the file
        return {}, None
    props = {p.key: p.value for p in proto.metadata_props}
    if not proto.graph.output:
        return props, None
    # Walk back from the output through operations that only move or crop values (NHWC transposes, the
    # export's crop) to the one that sets the range.
    producers = {o: n for n in proto.graph.node for o in n.output}
    name, op = proto.graph.output[0].name, None
    for _ in range(16):
        node = producers.get(name)
        if node is None:
            break
        op = node.op_type
        if op not in _VALUE_PRESERVING or not node.input:
            break
        name = node.input[0]
    return props, op


def _parse_range(text: str) -> tuple[float, float] | None:
    try:
        lo, hi = (float(v) for v in text.strip().strip("[]()").split(","))
    except ValueError:
        return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and hi > lo else None


def is_onnx_file(weights: str | Path) -> bool:
    """Whether `weights` (a file; run folders are not) is an ONNX graph, by its bytes."""
    from ..models.weight_files import resolve_weights_file, sniff_kind

    return not Path(weights).is_dir() and sniff_kind(resolve_weights_file(weights)) == "onnx"


def onnx_device(weights: str | Path, precision: str, device_choice: str) -> str:
    """Where an ONNX graph runs for `--device device_choice`: "cuda" for `cuda`, and for `auto` when this ONNX
    Runtime build has the CUDA provider (a machine without a GPU falls back to the CPU when the session opens);
    else "cpu". Refuses a `--precision` other than auto/fp32 in one line: a graph runs in the precision it was
    exported in."""
    if device_choice not in DEVICES:
        raise InputError(None, f"--device must be one of {', '.join(DEVICES)}, not {device_choice!r}")
    if precision not in ("auto", "fp32"):
        raise InputError(weights, f"an ONNX graph runs in its own precision: --precision {precision} "
                                  f"applies to PyTorch weights (use auto or fp32)")
    if device_choice == "auto":
        return "cuda" if onnx_cuda_available() else "cpu"
    return device_choice


def _default_threads() -> int:
    """OMP_NUM_THREADS when set (PyTorch follows it too), else 0: ONNX Runtime's own choice, the physical cores."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def open_session(path: Path, data: bytes, device, threads: int | None = None):
    """An ONNX Runtime session for the graph `data` (the bytes of `path`), on CUDA when `device` ("cpu"/"cuda" or a
    `torch.device`) is; loaded from bytes, so no external data file is opened, and with no custom-operator
    library: no code from the file runs."""
    ort = _need_ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4  # failed probes are expected; errors reach the user as one line
    options.intra_op_num_threads = threads or _default_threads()
    providers = ["CPUExecutionProvider"]
    if device_type(device) == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError(path, "--device cuda: this ONNX Runtime has no CUDA provider "
                                   "(pip install onnxruntime-gpu, or use --device cpu)")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(data, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types (Fail, InvalidGraph, ...)
        raise InputError(path, f"ONNX Runtime cannot load this graph ({_first_line(exc)})") from None


class OnnxEngine(Sizing):
    """An ONNX image-to-image graph under ONNX Runtime: uint8 images in, uint8 images out.

    `stylize_batch([N, H, W, 3] uint8 RGB) -> [N, H, W, 3] uint8 RGB`; `stylize_image` picks one pass or tiles.
    `run([N, 3, H, W] float32 in [-1, 1]) -> same` (numpy arrays), whatever the graph's own layout and range.
    `device`: "cpu" or "cuda" (`onnx_device`); afterwards where the session really runs.
    """

    def __init__(self, path: str | Path, device: str = "cpu", tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 memory_budget: int | None = None, threads: int | None = None):
        self.path = Path(path)
        data = read_graph_bytes(self.path)
        self.session = open_session(self.path, data, device, threads)
        self.backend = "onnxruntime"  # or "pytorch" after `use_pytorch`
        self._reference: tuple[np.ndarray, np.ndarray] | None = None  # ONNX Runtime's output on the check sample
        self._forward: Callable[[GraphContract, np.ndarray], np.ndarray] = self._ort_forward
        self._race: _Race | None = None  # PyTorch against ONNX Runtime on the job's first forwards (`use_pytorch`)
        # ONNX Runtime falls back to the CPU when its CUDA provider cannot start: say where it runs.
        device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        meta = dict(self.session.get_modelmeta().custom_metadata_map or {})
        last_op = None
        if "value_range" not in meta:  # reading the graph costs about 0.6 s (the onnx package's import): only if needed
            props, last_op = _graph_hints(data)
            meta.update(props)
        self.contract = self._read_contract(meta, last_op)
        super().__init__(device, BYTES_PER_PIXEL_FP32, tile, overlap, None, memory_budget)
        self.provider = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.source = self.path

    # ---- the contract --------------------------------------------------------------------------------

    def _read_contract(self, meta: dict[str, str], last_op: str | None) -> GraphContract:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = "one image input [N, 3, H, W] or [N, H, W, 3] and an image output"
        if len(inputs) != 1:
            names = ", ".join(f"'{i.name}' {list(i.shape)}" for i in inputs)
            hint = " (a Style2paints export: use `animegan colorize`)" if {i.name for i in inputs} == {"sketch", "style"} else ""
            raise InputError(self.path, f"the graph has {len(inputs)} inputs ({names}); stylize needs {expected}{hint}")
        inp = inputs[0]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise InputError(self.path, f"input '{inp.name}' has shape {shape}; stylize needs {expected}")
        if inp.type not in _FLOAT_TYPES:
            raise InputError(self.path, f"input '{inp.name}' is {inp.type}; stylize needs float32 or float16 images")
        image_outputs = [o for o in outputs if o.shape is None or len(o.shape) in (0, 4)]
        if not image_outputs:
            found = ", ".join(f"'{o.name}' {list(o.shape)}" for o in outputs)
            raise InputError(self.path, f"the graph has no image output ({found}); stylize needs {expected}")
        out = image_outputs[0]

        def fixed(v) -> int | None:
            return v if isinstance(v, int) and v > 0 else None

        c1, c3 = fixed(shape[1]), fixed(shape[3])
        if c1 == 3:
            layouts = ["NCHW"]
        elif c3 == 3:
            layouts = ["NHWC"]
        elif c1 is None and c3 is None:
            layouts = ["NCHW", "NHWC"]
        else:
            raise InputError(self.path, f"input '{inp.name}' {shape} has no axis of 3 colour channels; stylize needs {expected}")

        # The value range: what the export says, else what the last operation implies, else AnimeGAN's [-1, 1].
        value_range, source = (-1.0, 1.0), "assumed"
        if meta.get("value_range") and _parse_range(meta["value_range"]):
            value_range, source = _parse_range(meta["value_range"]), "metadata"  # type: ignore[assignment]
        elif last_op == "Sigmoid":
            value_range, source = (0.0, 1.0), "Sigmoid output"
        elif last_op == "Tanh":
            source = "Tanh output"

        dtype = _FLOAT_TYPES[inp.type]
        for layout in layouts:
            hw = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
            fixed_size = (fixed(hw[0]), fixed(hw[1]))
            contract = GraphContract(inp.name, out.name, layout, dtype, value_range, 1,
                                     fixed_size if all(fixed_size) else None, fixed(shape[0]), source)  # type: ignore[arg-type]
            if contract.fixed_size:
                if self._probe(contract, *contract.fixed_size):
                    return contract
                continue
            for m in PROBE_MULTIPLES:
                k = max(1, math.ceil(PROBE_SIDE / m)) | 1  # an odd multiple of m: not a multiple of 2m
                contract.multiple = m
                if self._probe(contract, m * k, m * (k + 2)):
                    # A graph with many downsamplings may fail on small inputs: those are padded up to a size that ran
                    # (padding a normalized generator's input changes its output a little, so as little as works).
                    small = m * (max(1, math.ceil(SMALL_PROBE_SIDE / m)) | 1)
                    contract.min_side = small if small < m * k and self._probe(contract, small, small) else m * k
                    return contract
        raise InputError(self.path, f"no input size gave an output of the same size (layouts {'/'.join(layouts)}, "
                                    f"multiples {PROBE_MULTIPLES[0]}-{PROBE_MULTIPLES[-1]} of 2 sides tried); "
                                    f"stylize needs {expected}")

    def _probe(self, contract: GraphContract, h: int, w: int) -> bool:
        """Whether the graph runs on an `h` x `w` image and returns an image of that size with finite values."""
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        try:
            y = self._session_run(contract, x)
        except Exception:  # noqa: BLE001 - a size the graph cannot take raises onnxruntime's own errors
            return False
        return tuple(y.shape) == (1, 3, h, w) and bool(np.isfinite(y).all())

    def _session_run(self, c: GraphContract, a: np.ndarray) -> np.ndarray:
        # a: [N, 3, H, W] float32 in [-1, 1] (H, W already what the graph takes) -> [N, 3, H, W] float32 in [-1, 1]
        lo, hi = c.value_range
        if (lo, hi) != (-1.0, 1.0):
            a = (a + 1.0) * ((hi - lo) / 2.0) + lo
        if c.layout == "NHWC":
            a = a.transpose(0, 2, 3, 1)
        y = np.asarray(self._forward(c, np.ascontiguousarray(a, dtype=c.dtype)), dtype=np.float32)
        if y.ndim != 4:
            raise ValueError(f"output of rank {y.ndim}")
        if c.layout == "NHWC":
            y = y.transpose(0, 3, 1, 2)
        if (lo, hi) != (-1.0, 1.0):
            y = (y - lo) * (2.0 / (hi - lo)) - 1.0
        return y

    def _ort_forward(self, c: GraphContract, a: np.ndarray) -> np.ndarray:
        # a: the graph's own input (layout, range, dtype) -> its first image output
        return self.session.run([c.output_name], {c.input_name: a})[0]

    # ---- PyTorch instead of ONNX Runtime ------------------------------------------------------------

    def reference_run(self, sample: np.ndarray) -> float:
        """Run ONNX Runtime on `sample` (`[H, W, 3]` uint8) scaled to sizing.CHECK_SIDE and keep its output, the
        reference `use_pytorch` checks against. Returns the seconds it took per pixel of the scaled sample: what
        stylize scales to a whole job to decide whether PyTorch would pay for its import."""
        x = self.to_input(check_sample(sample))  # [1, 3, h, w] float32 in [-1, 1]
        t0 = time.perf_counter()
        self._reference = (x, self.run(x))
        return max(time.perf_counter() - t0, 1e-6) / (x.shape[2] * x.shape[3])

    def use_pytorch(self, sample: np.ndarray, precision: str = "auto", race: bool = False,
                    on_decided: Callable[[str], None] | None = None) -> str:
        """Run the graph with PyTorch from now on (`onnx_torch.TorchGraph`, on the CPU: NNPACK convolutions where
        they pay off, bf16 where the CPU computes it natively and `precision` is auto), after checking on `sample`
        (`[H, W, 3]` uint8, scaled to sizing.CHECK_SIDE) that its output is ONNX Runtime's within
        ONNX_AGREEMENT_LEVELS. Returns the line to say; raises `onnx_torch.UnsupportedGraph` (ONNX Runtime stays)
        when the graph cannot run there or the outputs differ.

        `race`: PyTorch and ONNX Runtime take turns on the first forwards of the job (`_Race`) and the faster per
        pixel runs the rest; `on_decided` gets the line that says which."""
        import torch

        from ..models.cpu_speed import accelerate, native_cpu_bf16, tune_allocator
        from .engine import precision_verdict
        from .onnx_torch import UnsupportedGraph, torch_graph

        if self.device != "cpu" or self.contract.dtype != np.float32:
            raise UnsupportedGraph("PyTorch runs float32 graphs on the CPU here")
        graph = torch_graph(read_graph_bytes(self.path))
        tune_allocator()
        nnpack = accelerate(graph)
        if self._reference is None:
            self.reference_run(sample)
        x, exact_ort = self._reference  # type: ignore[misc]

        def forward_with(dtype: torch.dtype) -> Callable[[GraphContract, np.ndarray], np.ndarray]:
            def forward(c: GraphContract, a: np.ndarray) -> np.ndarray:
                t = torch.from_numpy(a)
                with torch.inference_mode():
                    if dtype == torch.float32:
                        return graph(t).float().numpy()
                    with torch.autocast("cpu", dtype=dtype):
                        return graph(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t).float().numpy()
            return forward

        self._forward = forward_with(torch.float32)
        try:
            exact = self.run(x)
        except Exception as exc:  # noqa: BLE001 - an operation this engine got wrong for the graph's shapes
            self._forward = self._ort_forward
            raise UnsupportedGraph(f"it failed under PyTorch ({_first_line(exc)})") from None
        levels = float(np.abs(exact - exact_ort).max()) * 127.5
        if not levels <= ONNX_AGREEMENT_LEVELS:
            self._forward = self._ort_forward
            raise UnsupportedGraph(f"its output under PyTorch differs from ONNX Runtime's by up to {levels:.1f} levels")
        note = ""
        dtype = "fp32"
        if precision == "auto" and native_cpu_bf16() and not nnpack:
            graph.to(memory_format=torch.channels_last)
            self._forward = forward_with(torch.bfloat16)
            try:
                verdict = precision_verdict(torch.from_numpy(self.run(x)), torch.from_numpy(exact), torch.bfloat16, "graph")
            except AnimeganError as exc:  # an operation without a bf16 kernel here
                verdict = f"bf16 fails in this graph ({exc}): using fp32"
            if verdict:
                graph.to(memory_format=torch.contiguous_format)
                self._forward = forward_with(torch.float32)
                note = "; " + verdict.replace(" (choose with --precision)", "")  # a graph's precision is not the user's to choose
            else:
                dtype = "bf16"
        self.backend = "pytorch"
        self._label = f"pytorch {dtype} on the CPU" + (f" ({plural(nnpack, 'convolution')} through NNPACK)" if nnpack else "")
        checked = f"its output checked against ONNX Runtime's: {levels:.2f} levels apart at most"
        if race:
            self._race = _Race(self, {"pytorch": self._forward, "onnxruntime": self._ort_forward}, on_decided)
            self._forward = self._race.forward
            return f"ONNX graph run by PyTorch or ONNX Runtime, whichever is faster on the first forwards ({checked}){note}"
        return f"ONNX graph run by PyTorch ({checked}){note}"

    # ---- running ---------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        ort = f"onnxruntime {np.dtype(self.contract.dtype).name.replace('float', 'fp')} ({self.provider})"
        if self._race is not None and self._race.winner is None:
            return f"{self._label} or {ort}, the faster on the job's first forwards"
        if self.backend == "pytorch":
            return self._label
        return ort

    @staticmethod
    def to_input(rgb: np.ndarray) -> np.ndarray:
        """`[H, W, 3]` or `[N, H, W, 3]` uint8 -> `[N, 3, H, W]` float32 in [-1, 1] (host memory: ONNX Runtime's input)."""
        a = rgb[None] if rgb.ndim == 3 else rgb
        x = a.transpose(0, 3, 1, 2).astype(np.float32)
        x *= 1 / 127.5
        x -= 1.0
        return x

    def run(self, x: np.ndarray) -> np.ndarray:
        """`[N, 3, H, W]` float32 in [-1, 1] -> same: reflect-padded to what the graph takes, cropped back."""
        c = self.contract
        n, _, h, w = x.shape
        if c.fixed_size:
            ph, pw = c.fixed_size
        else:
            m = c.multiple
            ph, pw = -(-max(h, c.min_side) // m) * m, -(-max(w, c.min_side) // m) * m
        a = np.asarray(x, dtype=np.float32)
        if (ph, pw) != (h, w):
            # np.pad's reflect mode grows in steps, so a side may be padded by more than its length.
            a = np.pad(a, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="reflect" if min(h, w) > 1 else "edge")
        limit = c.fixed_batch or n
        try:
            outs = [self._session_run(c, np.ascontiguousarray(a[i:i + limit])) for i in range(0, n, limit)]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
            runner = _RUNNER.get(self.backend, "ONNX Runtime")
            raise AnimeganError(f"{self.path}: {runner} failed on a {pw}x{ph} input ({_first_line(exc)})") from None
        y = np.concatenate(outs) if len(outs) > 1 else outs[0]
        return np.clip(y[:, :, :h, :w], -1.0, 1.0)

    def needs_tiling(self, h: int, w: int) -> bool:
        fs = self.contract.fixed_size
        return super().needs_tiling(h, w) or bool(fs and (h > fs[0] or w > fs[1]))

    def tile_side(self, h: int = 0, w: int = 0) -> int:
        side = super().tile_side(h, w)
        fs = self.contract.fixed_size
        if fs:
            # The tiler may stretch the last tile by up to 3 px (tile starts are multiples of 4).
            side = min(side, min(fs) - 8)
        return max(16, side)

    def stylize_batch(self, images: np.ndarray) -> np.ndarray:
        y = self.run(self.to_input(images))  # [N, 3, H, W] in [-1, 1]
        y += 1.0
        y *= 127.5
        return np.ascontiguousarray(np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))

    def stylize_image(self, rgb: np.ndarray, on_tile: Callable[[], None] | None = None) -> np.ndarray:
        h, w = rgb.shape[:2]
        if not self.needs_tiling(h, w):
            return self.stylize_batch(rgb[None])[0]
        # Each tile is normalized by the graph on its own (no norm layers to give the whole image's statistics).
        ys, xs = tile_spans(h, w, self.tile_side(h, w), self.overlap)
        return blend_tiles(rgb, ys, xs, lambda crop: self.run(self.to_input(crop))[0].transpose(1, 2, 0), on_tile)

    def batch_limit(self, h: int, w: int, batch_size: int) -> int:
        if self.contract.fixed_batch:
            return self.contract.fixed_batch
        if self.device == "cpu":
            return 1  # ONNX Runtime's CPU convolutions gain nothing from batches of large images; memory does
        return max(1, min(batch_size, self.pixel_budget // max(1, h * w)))


# A race compares two forwards, one per engine, of sizes within this factor of each other (per-pixel cost falls with
# size: a thumbnail against a photo would favour the engine that got the photo); after this many forwards each
# without such a pair, the largest forward of each decides.
RACE_SIZE_RATIO = 2.0
RACE_MAX_FORWARDS = 3


class _Race:
    """PyTorch against ONNX Runtime on the job's own first forwards: they take turns (PyTorch first, the usual
    winner on the CPUs where a race is run), each forward timed, until one forward of each of similar size
    (RACE_SIZE_RATIO) can be compared per pixel; the faster runs the rest. Both outputs are checked to agree
    (ONNX_AGREEMENT_LEVELS), so no forward is wasted: the race costs the slower engine's extra time on a forward.

    Why a race and not a rule: the speed ratio depends on the graph and the size, and a small check misleads.
    PyTorch's speed over ONNX Runtime's on a 2-core AVX2 CPU (docs/benchmarks.md, nineteenth session), at 160 px and
    528x528: the toolkit's AnimeGANv2 export 1.33x / 1.73x, its White-box export 1.08x / 1.76x, AnimeGANv3's released
    tiny_Cute (16-channel convolutions at full size, which ONNX Runtime's blocked kernels run well) 0.84x / 0.98x;
    on the sample photos (512x341) tiny_Cute 0.8x and the demo's White-box export 1.5x."""

    def __init__(self, engine: "OnnxEngine", contenders: dict[str, Callable[[GraphContract, np.ndarray], np.ndarray]],
                 on_decided: Callable[[str], None] | None):
        self.engine, self.contenders, self.on_decided = engine, contenders, on_decided
        self.timed: dict[str, list[tuple[int, float]]] = {name: [] for name in contenders}  # (pixels, seconds)
        self.winner: str | None = None

    def forward(self, c: GraphContract, a: np.ndarray) -> np.ndarray:
        # a: the graph's own input ([N, 3, H, W] or [N, H, W, 3]): a.size // 3 is its pixels
        name = min(self.timed, key=lambda n: len(self.timed[n]))  # dict order breaks ties: PyTorch first
        t0 = time.perf_counter()
        try:
            y = self.contenders[name](c, a)
        except Exception as exc:  # noqa: BLE001 - PyTorch failing at a size its check did not try
            if name == "onnxruntime":
                self.engine.backend = name  # for run()'s message
                raise
            self._decide("onnxruntime", f"PyTorch failed on a {a.shape} input ({_first_line(exc)})")
            return self.contenders["onnxruntime"](c, a)
        self.timed[name].append((max(1, a.size // 3), time.perf_counter() - t0))
        pair = self._pair()
        if pair is not None:
            rate = {n: seconds / pixels for n, (pixels, seconds) in pair.items()}
            fast, slow = sorted(rate, key=rate.__getitem__)
            self._decide(fast, f"{rate[slow] / rate[fast]:.2f}x as fast per pixel as {_RUNNER[slow]}")
        return y

    def _pair(self) -> dict[str, tuple[int, float]] | None:
        """One forward of each engine to compare: the largest pair of similar sizes, else (once each has had
        RACE_MAX_FORWARDS) the largest of each; None while neither exists."""
        (a, ta), (b, tb) = self.timed.items()
        similar = [(x, y) for x in ta for y in tb if max(x[0], y[0]) <= RACE_SIZE_RATIO * min(x[0], y[0])]
        if similar:
            x, y = max(similar, key=lambda xy: xy[0][0] + xy[1][0])
            return {a: x, b: y}
        if min(len(ta), len(tb)) >= RACE_MAX_FORWARDS:
            return {a: max(ta), b: max(tb)}
        return None

    def _decide(self, name: str, why: str) -> None:
        self.winner = name
        engine = self.engine
        engine._forward = self.contenders[name]
        engine.backend = name
        if self.on_decided is not None:
            self.on_decided(f"{engine.path}: {_RUNNER[name]} runs the rest of the job ({why}): {engine.label}")


_RUNNER = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime"}


class OnnxColorizer:
    """A Style2paints colorizer exported by `animegan export` (inputs 'sketch' `[N, 1, H, W]` and 'style' `[N, 4096]`,
    output `[N, 3, H, W]`, all float32 in [-1, 1] but the style vector) under ONNX Runtime, called like the PyTorch
    `ColorizerModel`: `model(sketch, style) -> colorized` on tensors. `info` carries what the export recorded (the
    VGG19 that makes style vectors, the training scale), as a weights file's description does."""

    arch = "style2paints_v1"

    def __init__(self, path: str | Path, device, threads: int | None = None):
        self.path = self.source = Path(path)
        self.session = open_session(self.path, read_graph_bytes(self.path), device, threads)
        self.provider = self.session.get_providers()[0].replace("ExecutionProvider", "")
        inputs = {i.name: list(i.shape) for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        if set(inputs) != {"sketch", "style"} or len(outputs) != 1:
            found = ", ".join(f"'{k}' {v}" for k, v in inputs.items())
            raise InputError(self.path, f"the graph has inputs {found}; colorize needs a colorizer exported by "
                                        f"`animegan export` (inputs 'sketch' [N, 1, H, W] and 'style' [N, 4096])"
                                        + ("; an image-to-image graph is for `animegan stylize`" if len(inputs) == 1 else ""))
        self.output = outputs[0].name
        meta = dict(self.session.get_modelmeta().custom_metadata_map or {})
        if meta.get("kind") != "colorizer":
            raise InputError(self.path, "its metadata does not say which VGG19 makes its style vectors (exported before "
                                        "this version?); export it again with `animegan export RUN colorizer.onnx`")
        self.info = {"kind": "colorizer", "meta": {k: meta[k] for k in ("vgg_weights", "vgg_fingerprint") if meta.get(k)}}
        try:
            self.info["meta"]["train_short_side"] = int(meta["train_short_side"])
        except (KeyError, ValueError):
            pass

    def __call__(self, sketch, style):
        # torch tensors: [B, 1, h, w] in [-1, 1], [B, 4096] -> [B, 3, h, w] in [-1, 1] (the graph pads to its
        # multiple and crops back); colorize runs PyTorch's VGG19 for the style vector, so torch is loaded already
        import torch

        feed = {"sketch": np.ascontiguousarray(sketch.float().cpu().numpy()),
                "style": np.ascontiguousarray(style.float().cpu().numpy())}
        try:
            (out,) = self.session.run([self.output], feed)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types
            raise AnimeganError(f"{self.path}: ONNX Runtime failed on a {list(sketch.shape)} sketch ({_first_line(exc)})") from None
        return torch.from_numpy(out).to(sketch.device)

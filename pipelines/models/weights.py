"""Generator weight files: export, loading (runs, exports, community AnimeGANv2 files), discovery.

An export is two files written atomically into a folder:

- `generator.safetensors`: the bare generator's state dict (float32), with the description below
  embedded in the safetensors metadata header under the key `animegan`, so a lone copy of the file
  is self-describing;
- `generator.json`: the same description, readable by people and other tools.

Loading never executes code: safetensors, or `torch.load(weights_only=True)` for `.pt`/`.pth`
community files (plain state dicts; the architecture is recognised from tensor names and shapes).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..errors import InputError
from ..fileio import atomic_write_bytes
from .registry import InferenceModel, all_architectures, build_generator, get_architecture
from .weight_files import DESCRIPTION_NAME, WEIGHTS_NAME, resolve_weights_file, sniff_kind

FORMAT_NAME = "animegan-generator"
FORMAT_VERSION = 1
METADATA_KEY = "animegan"  # key of the description in the safetensors header

# Keys under which checkpoints from various trainers nest the generator's state dict.
_WRAPPER_KEYS = ("state_dict", "generator", "generator_state_dict", "G", "netG", "g", "gen",
                 "model", "model_state_dict", "params", "params_ema", "ema")
_IO_LAYOUT = {"layout": "NCHW", "dtype": "float32", "range": [-1.0, 1.0], "channels": "RGB"}
_COLORIZER_INPUT = {
    "sketch": {"layout": "NCHW", "dtype": "float32", "range": [-1.0, 1.0], "channels": "gray, dark lines on white"},
    "style": {"shape": "[N, 4096]", "dtype": "float32", "what": "VGG19 fc1 after ReLU of the reference at 224x224"},
}


@dataclass
class LoadedGenerator:
    """A generator ready for inference: `model([N, 3, H, W] in [-1, 1]) -> same shape, [-1, 1]`."""

    model: nn.Module  # InferenceModel (stylizers) or style2paints.ColorizerModel (colorizers)
    info: dict[str, Any]  # the description (format, architecture, arch_kwargs, meta, ...)
    source: Path  # the weight file actually read

    @property
    def arch(self) -> str:
        return self.info["architecture"]


def describe(arch: str, arch_kwargs: dict[str, Any], meta: dict[str, Any] | None = None,
             postprocess: bool = True) -> dict[str, Any]:
    """The description stored beside (and inside) exported weights. `postprocess` False: the file's outputs are the
    bare network's, without the architecture's post-process (recorded as null, and honoured by `load_generator`)."""
    a = get_architecture(arch)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "arch_kwargs": {**a.default_kwargs, **arch_kwargs},
        "kind": a.kind,
        "input": dict(_COLORIZER_INPUT) if a.kind == "colorizer" else dict(_IO_LAYOUT),
        "output": dict(_IO_LAYOUT),
        "size_multiple": a.size_multiple,
        "postprocess": a.postprocess_name if postprocess else None,
        "meta": dict(meta or {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "animegan_version": __version__,
    }


def _bare(generator: nn.Module) -> nn.Module:
    return generator.generator if isinstance(generator, InferenceModel) else generator


def save_generator(generator: nn.Module, arch: str, arch_kwargs: dict[str, Any], out_dir: Path,
                   meta: dict[str, Any] | None = None, postprocess: bool = True) -> Path:
    """Write `out_dir/generator.safetensors` and `out_dir/generator.json`; returns the safetensors path.

    `generator` is the bare network (an `InferenceModel` is unwrapped). `meta` is free-form and
    JSON-serialisable (training steps, style, dataset, ...). `postprocess`: whether inference applies the
    architecture's post-process (White-box's guided filter) to this network's output. Both files are written
    atomically.
    """
    from safetensors.torch import save

    out_dir = Path(out_dir)
    desc = describe(arch, arch_kwargs, meta, postprocess)
    text = json.dumps(desc, indent=1, sort_keys=False, default=str)
    # clone(): saved tensors must not share storage (safetensors refuses aliased tensors).
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone()
               for k, v in _bare(generator).state_dict().items()}
    data = save(tensors, metadata={METADATA_KEY: text})
    path = out_dir / WEIGHTS_NAME
    atomic_write_bytes(path, data)
    atomic_write_bytes(out_dir / DESCRIPTION_NAME, text.encode() + b"\n")
    return path


# ---- reading --------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise InputError(path, f"not a readable safetensors file ({_first_line(exc)})") from None
    return tensors, meta


_OTHER_FRAMEWORKS = {"tflite": "a TensorFlow Lite model", "tensorflow": "a TensorFlow graph",
                     "coreml": "a Core ML model"}


def describe_unloadable(path: Path, exc: BaseException) -> str:
    """One line for a file `torch.load(weights_only=True)` refused or could not read. Never passes on
    PyTorch's own advice to retry with weights_only=False: that would run code from the file."""
    if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in str(exc):
        culprit = next((line.strip()[:160] for line in str(exc).splitlines() if "GLOBAL" in line), "")
        return ("refused to load: the file holds Python objects other than tensors, which could run code"
                + (f" ({culprit})" if culprit else "") + "; only plain state dicts of tensors are accepted")
    kind = sniff_kind(path)
    expected = "a PyTorch state dict saved with torch.save"
    if kind == "onnx":
        return ("an ONNX model, not PyTorch weights: `animegan stylize --weights` runs it with ONNX Runtime; here pass "
                "the run folder or the generator.safetensors it was exported from")
    if kind in _OTHER_FRAMEWORKS:
        return (f"{_OTHER_FRAMEWORKS[kind]}, which this toolkit cannot run: use the model's .onnx release "
                "(AnimeGANv3 publishes each model as .onnx too) with `animegan stylize --weights model.onnx`")
    if kind == "text":
        return f"a text file, not weights (expected {expected})"
    if kind in ("zip", "pickle"):
        return f"a damaged or truncated PyTorch file ({type(exc).__name__}: {_first_line(exc)})"
    return f"not a PyTorch weights file (expected {expected}: a zip archive, or a legacy pickle)"


def load_torch_file(path: Path) -> Any:
    """`torch.load(path, weights_only=True)` on CPU; any failure is an `InputError` naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and key errors: each becomes one line
        raise InputError(path, describe_unloadable(path, exc)) from None


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    obj = load_torch_file(path)
    if isinstance(obj, dict) and "networks" in obj and "optimizers" in obj:
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        raise InputError(path, f"a training checkpoint, not exported weights: pass the run folder instead "
                               f"(--weights {run}), which holds generator.safetensors")
    return _unwrap_state_dict(obj, path)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if _is_state_dict(obj):
            break
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is not None:
                obj = inner
                continue
        break
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a state dict of tensors, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:5]))
        raise InputError(path, f"no tensors found (top-level keys: {keys or 'none'})")
    return tensors


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DataParallel / wrapper prefixes: "module.block_a..." or "generator.block_a...".
    for prefix in ("module.", "generator.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def detect_architecture(sd: dict[str, torch.Tensor]) -> str | None:
    """The registered image-to-image architecture whose default-built generator has exactly these keys and
    shapes (community files are AnimeGAN generators; colorizers always come with their description)."""
    want = _shapes(sd)
    for name, a in all_architectures().items():
        if a.kind != "image":
            continue
        try:
            with torch.device("meta"):  # shapes only: no memory, no random init (was a third of `load_generator`)
                ref = build_generator(name).state_dict()
        except Exception:
            continue
        if _shapes(ref) == want:
            return name
    return None


def _unknown_layout(path: Path, sd: dict[str, torch.Tensor]) -> InputError:
    keys = ", ".join(list(sd)[:3])
    known = ", ".join(sorted(all_architectures()))
    return InputError(path, f"unrecognised generator layout: {len(sd)} tensors (first: {keys}); "
                            f"it matches none of the known architectures ({known})")


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Load generator weights for inference.

    `path`: a run/export folder (its `generator.safetensors`), an exported `.safetensors` file, or
    a community AnimeGANv2 `.pt`/`.pth` state dict (possibly nested under a key like "state_dict").
    The model is in eval mode on `device`. Unknown layouts and files holding code -> `InputError`;
    a colorizer (Style2paints) is refused with a pointer to `animegan colorize`.
    """
    return load_weights(path, device, want="image")


def load_colorizer(path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Load a colorizer (Style2paints) for inference: `model(sketch [N,1,H,W], style [N,4096]) -> [N,3,H,W]`,
    any H and W (`ColorizerModel`), eval mode on `device`. A stylizer's file is refused with a pointer to stylize."""
    return load_weights(path, device, want="colorizer")


def load_bare_generator(path: str | Path) -> tuple[nn.Module, str, dict[str, Any], Path]:
    """(the stylizer network itself, with the file's weights, on CPU; its architecture; its description; the file
    read), for training to start from (fine-tuning). Same files and checks as `load_generator`."""
    return _load_network(path, "image")


def load_weights(path: str | Path, device: str | torch.device = "cpu", want: str | None = None) -> LoadedGenerator:
    """Either kind of network, wrapped for inference by its kind (`info["kind"]`); `want` refuses the other."""
    generator, arch, info, source = _load_network(path, want)
    kind = get_architecture(arch).kind
    info["kind"] = kind
    if kind == "colorizer":
        from .style2paints import ColorizerModel

        model: nn.Module = ColorizerModel(generator)
    else:
        # A description that says null: the network was trained to be used bare (White-box with the ink term: its
        # guided filter would halve the lines it draws). Absent (older files, community files): the architecture's.
        model = InferenceModel.for_architecture(arch, generator, postprocess=info.get("postprocess", "") is not None)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return LoadedGenerator(model=model, info=info, source=source)


# Sizes an architecture argument may take (channels, blocks, style dimensions): the released models use 4-4096;
# a description outside this range is a damaged or crafted file, refused before PyTorch allocates anything.
ARCH_INT_RANGE = (1, 8192)


def _check_arch_kwargs(source: Path, arch: str, kwargs: dict[str, Any]) -> None:
    """Every argument of a file's description must be one the architecture's builder takes, of the type of its
    default, and whole numbers within ARCH_INT_RANGE."""
    import inspect

    params = inspect.signature(get_architecture(arch).builder).parameters
    lo, hi = ARCH_INT_RANGE
    for name, value in kwargs.items():
        p = params.get(name)
        if p is None or p.default is inspect.Parameter.empty:
            raise InputError(source, f"arch_kwargs.{name}: not an argument of {arch} (arguments: {', '.join(params)})")
        kind = type(p.default)
        if kind is bool and not isinstance(value, bool):
            raise InputError(source, f"arch_kwargs.{name}: {value!r} is not true or false")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
            raise InputError(source, f"arch_kwargs.{name}: {value!r} is not a whole number from {lo} to {hi}")
        if kind is str and not isinstance(value, str):
            raise InputError(source, f"arch_kwargs.{name}: {value!r} is not text")


def _load_network(path: str | Path, want: str | None) -> tuple[nn.Module, str, dict[str, Any], Path]:
    """(bare network with the file's weights, architecture, description, file read); `want` is the
    architecture kind the caller runs ("image" or "colorizer")."""
    source = resolve_weights_file(path)
    kind = sniff_kind(source)
    if kind == "onnx":
        raise InputError(source, describe_unloadable(source, ValueError("onnx")))
    info: dict[str, Any] | None = None
    if source.suffix.lower() == ".safetensors" or kind == "safetensors":
        sd, meta = _read_safetensors(source)
        if METADATA_KEY in meta:
            try:
                info = json.loads(meta[METADATA_KEY])
            except json.JSONDecodeError:
                raise InputError(source, f"the '{METADATA_KEY}' description in its header is not valid JSON") from None
        else:
            sidecar = source.with_name(DESCRIPTION_NAME)
            if source.name == WEIGHTS_NAME and sidecar.is_file():
                try:
                    info = json.loads(sidecar.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    raise InputError(sidecar, f"not a readable description ({_first_line(exc)})") from None
    else:
        sd = _read_torch(source)
    sd = _strip_prefixes(sd)

    if info is not None:
        if not isinstance(info, dict):
            raise InputError(source, f"the '{METADATA_KEY}' description is a {type(info).__name__}, not a JSON object")
        version = info.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise InputError(source, f"the description's format_version is {version!r}, not a whole number")
        if not isinstance(info.get("arch_kwargs") or {}, dict):
            raise InputError(source, f"the description's arch_kwargs is {info.get('arch_kwargs')!r}, not a JSON object")
        if info.get("format") != FORMAT_NAME:
            raise InputError(source, f"description has format {info.get('format')!r}, expected {FORMAT_NAME!r}")
        if version > FORMAT_VERSION:
            raise InputError(source, f"format version {info.get('format_version')} is newer than this animegan "
                                     f"understands ({FORMAT_VERSION}); upgrade animegan")
        arch = info.get("architecture")
        if arch not in all_architectures():
            raise InputError(source, f"unknown architecture {arch!r} (known: {', '.join(sorted(all_architectures()))})")
        kwargs = dict(info.get("arch_kwargs") or {})
        if not isinstance(info.get("postprocess", ""), (str, type(None))):
            raise InputError(source, f"the description's postprocess is {info.get('postprocess')!r}, not a name or null")
    else:
        arch = detect_architecture(sd)
        if arch is None:
            raise _unknown_layout(source, sd)
        kwargs = {}
        info = describe(arch, kwargs, {"origin": "community", "file": source.name})
        info["format"] = "community"

    found = get_architecture(arch).kind
    if want is not None and found != want:
        raise InputError(source, "a Style2paints colorizer (sketch + reference), not a stylizer: use `animegan colorize "
                                 "SKETCHES --reference IMAGE --weights ...`" if found == "colorizer" else
                                 f"a {arch} stylizer (photo -> anime), not a colorizer: use `animegan stylize`")
    _check_arch_kwargs(source, arch, kwargs)
    try:
        generator = build_generator(arch, **kwargs)
    except TypeError as exc:
        raise InputError(source, f"arch_kwargs do not fit {arch} ({_first_line(exc)})") from None
    fresh = generator.state_dict()
    for key in getattr(generator, "OPTIONAL_STATE", ()):  # state the architecture gained later: files from before
        if key in fresh and key not in sd:               # load with its neutral default
            sd[key] = fresh[key].clone()
    ref = _shapes(fresh)
    if _shapes(sd) != ref:
        missing = [k for k in ref if k not in sd]
        extra = [k for k in sd if k not in ref]
        wrong = [k for k in ref if k in sd and tuple(sd[k].shape) != ref[k]]
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(extra[:3])}" if extra else "",
            f"wrong shape {', '.join(wrong[:3])}" if wrong else "",
        ) if part)
        raise InputError(source, f"tensors do not match architecture {arch}: {detail}")
    broken = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a run that diverged, or a damaged file: every output would be NaN (black, or whatever the cast makes)
        raise InputError(source, f"{len(broken)} of its {len(sd)} tensors hold NaN or infinite values "
                                 f"(first: {broken[0]}); these weights cannot produce images")
    generator.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return generator, arch, info, source

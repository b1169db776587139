"""Architecture names -> generator builders, and the inference wrapper every consumer uses.

`ARCHITECTURES` is open: another model family registers itself with `register_architecture(
Architecture(...))` at import time of its module (White-box adds "whitebox"), and everything that
goes through `build_generator` / `weights.load_generator` picks it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .animegan import GeneratorV1, GeneratorV2

# A post-process sees the (padded) network input and the raw output, both [N, 3, H, W] in [-1, 1],
# and returns the final output of the same shape (White-box's guided filter needs the input).
PostProcess = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """How to build and run one generator family.

    - `builder(**kwargs)` returns the bare generator (an `nn.Module`, `[N,3,H,W]` in [-1,1] -> same).
    - `default_kwargs` are merged under the caller's kwargs (and stored in exported weight files).
    - `size_multiple`: inputs are reflect-padded to a multiple of this before the network (1: any size).
    - `min_size`: inputs are padded up to at least this side length (the encoder's deepest level
      needs a few pixels for its reflect padding).
    - `edge_pad`: inputs are reflect-padded by this many pixels on every side and the output cropped back, so
      that the image's own edges are not where the network's zero padding (White-box) or its strided levels'
      one-sided padding (AnimeGAN) shows: tinted 1-3 px lines along the top and left edges otherwise. A multiple
      of 4, the networks' total stride, so that tiles and whole images see the same stride phase.
    - `postprocess`: optional hook applied by `InferenceModel`; `postprocess_name` is what weight
      files record so that a loader can tell what was applied.
    - `kind`: what the network maps (see the field); stylize takes "image" files, colorize "colorizer" ones.
    """

    name: str
    builder: Callable[..., nn.Module]
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    size_multiple: int = 1
    min_size: int = 16
    postprocess: PostProcess | None = None
    postprocess_name: str | None = None
    edge_pad: int = 0
    description: str = ""
    #: "image": `[N,3,H,W] -> same` (stylize); "colorizer": `(sketch [N,1,H,W], style [N,4096]) -> [N,3,H,W]`
    kind: str = "image"


ARCHITECTURES: dict[str, Architecture] = {}

# The reflect margin of the stylizing families (`Architecture.edge_pad`): the outermost 3 px of a 256 px crop
# differ from the same pixels stylized with real context around them by 10.6-14.9 levels (White-box) and 5.7-7.4
# (AnimeGANv2) without it, 3.4-4.4 and 3.5-4.0 with 8 px (4 px: 4.3-5.3, 16 px: no better), for 6% more pixels
# at 512x512 (bench/bench_edges.py; docs/benchmarks.md).
EDGE_PAD = 8


def register_architecture(arch: Architecture) -> Architecture:
    """Add (or replace) an architecture by name; returns it so it can be used as a module constant."""
    ARCHITECTURES[arch.name] = arch
    return arch


register_architecture(Architecture(
    name="animegan_v1",
    builder=GeneratorV1,
    # Any size works (upsampling goes to the encoder's sizes); a multiple of 4 keeps both strided
    # levels exact halves, which is how the network was trained.
    size_multiple=4,
    edge_pad=EDGE_PAD,
    description="AnimeGAN (2019): instance norm, 3,956,096 parameters",
))
register_architecture(Architecture(
    name="animegan_v2",
    builder=GeneratorV2,
    default_kwargs={"align_corners": True},
    # 1, not 4: community files then give exactly what the port gives on the same input.
    size_multiple=1,
    edge_pad=EDGE_PAD,
    description="AnimeGANv2 (2020): layer norm, 2,143,552 parameters; loads community .pt files",
))


# Modules that register further architectures when imported. They are imported lazily (on the
# first lookup that needs them) so that they may import this module without a cycle.
PLUGIN_MODULES: list[str] = ["pipelines.models.whitebox", "pipelines.models.style2paints"]
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import importlib

    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # a family that is not installed simply is not offered


def all_architectures() -> dict[str, Architecture]:
    """Every registered architecture, plugins included."""
    _load_plugins()
    return dict(ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        _load_plugins()
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {name!r}; known: {known}") from None


def build_generator(name: str, **kwargs: Any) -> nn.Module:
    """The bare generator for architecture `name` (training uses this directly)."""
    arch = get_architecture(name)
    return arch.builder(**{**arch.default_kwargs, **kwargs})


def _pad(x: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    if bottom == 0 and right == 0:
        return x
    h, w = x.shape[-2:]
    # Reflect needs the pad to be smaller than the side; tiny inputs fall back to edge replication.
    mode = "reflect" if bottom < h and right < w else "replicate"
    return F.pad(x, (0, right, 0, bottom), mode=mode)


class InferenceModel(nn.Module):
    """Wraps a generator so that any input size gives an output of the same size.

    `[N, 3, H, W]` float in [-1, 1] -> `[N, 3, H, W]` in [-1, 1]: the input is reflect-padded by `edge_pad`
    on every side, then on the right and bottom to the architecture's size multiple (and minimum size), run,
    post-processed, cropped back and clamped. `generator` is the bare network (its state dict is what weight
    files hold).
    """

    def __init__(self, generator: nn.Module, arch: str | None = None, size_multiple: int = 1,
                 min_size: int = 1, postprocess: PostProcess | None = None, edge_pad: int = 0):
        super().__init__()
        self.edge_pad = max(0, int(edge_pad))
        self.generator = generator
        self.arch = arch
        self.size_multiple = max(1, int(size_multiple))
        self.min_size = max(1, int(min_size))
        self.postprocess = postprocess

    @classmethod
    def for_architecture(cls, name: str, generator: nn.Module | None = None, postprocess: bool = True,
                         **kwargs: Any) -> "InferenceModel":
        """Wrap `generator` (or a freshly built one with `kwargs`) with the settings of `name`; `postprocess` False
        leaves out the architecture's post-process (a network trained to be used bare)."""
        arch = get_architecture(name)
        if generator is None:
            generator = build_generator(name, **kwargs)
        return cls(generator, arch=name, size_multiple=arch.size_multiple, min_size=arch.min_size,
                   postprocess=arch.postprocess if postprocess else None, edge_pad=arch.edge_pad)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        m = self.size_multiple
        return max(self.min_size, -(-h // m) * m), max(self.min_size, -(-w // m) * m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, H, W] in [-1, 1]
        h, w = x.shape[-2:]
        e = self.edge_pad
        xp = F.pad(x, (e, e, e, e), mode="reflect" if min(h, w) > e else "replicate") if e else x
        ph, pw = self.padded_size(h + 2 * e, w + 2 * e)
        # Reflect padding can at most mirror the whole side once, so grow in steps for tiny inputs.
        while xp.shape[-2] < ph or xp.shape[-1] < pw:
            xp = _pad(xp, min(ph - xp.shape[-2], xp.shape[-2] - 1 or 1), min(pw - xp.shape[-1], xp.shape[-1] - 1 or 1))
        out = self.generator(xp)
        if self.postprocess is not None:
            out = self.postprocess(xp, out)
        return out[..., e:e + h, e:e + w].clamp(-1.0, 1.0)  # [N, 3, H, W] in [-1, 1]

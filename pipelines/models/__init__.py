"""Networks: AnimeGAN generators and discriminator, VGG19 features, and the architecture registry.

Generators take and return `[N, 3, H, W]` float RGB in [-1, 1].

The names below are imported on first use (PEP 562), not with the package: `pipelines.models.weight_files` and
`pipelines.models.flow` need no PyTorch, and `stylize --weights model.onnx` runs without importing it (about
1.3 s of a short run). The registry imports White-box's module itself on the first lookup that needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "Discriminator": "animegan", "GeneratorV1": "animegan", "GeneratorV2": "animegan", "count_parameters": "animegan",
    "ARCHITECTURES": "registry", "Architecture": "registry", "InferenceModel": "registry",
    "all_architectures": "registry", "build_generator": "registry", "get_architecture": "registry",
    "register_architecture": "registry", "VGG19Features": "vgg", "build_vgg": "vgg",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)

"""Networks: AnimeGAN generators and discriminator, VGG19 features, and the architecture registry.

Generators take and return `[N, 3, H, W]` float RGB in [-1, 1].
"""

from .animegan import Discriminator, GeneratorV1, GeneratorV2, count_parameters
from .registry import (
    ARCHITECTURES,
    Architecture,
    InferenceModel,
    all_architectures,
    build_generator,
    get_architecture,
    register_architecture,
)
from .vgg import VGG19Features, build_vgg
from . import whitebox as _whitebox  # noqa: F401  registers the "whitebox" architecture

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Discriminator",
    "GeneratorV1",
    "GeneratorV2",
    "InferenceModel",
    "VGG19Features",
    "all_architectures",
    "build_generator",
    "build_vgg",
    "count_parameters",
    "get_architecture",
    "register_architecture",
]

"""Spectral normalization whose power iteration always runs in float32.

`torch.nn.utils.parametrizations.spectral_norm` estimates the largest singular value with `torch.mv`,
which CUDA autocast runs in fp16/bf16: sigma, and every discriminator weight divided by it, would then
carry half-precision error that changes from step to step. Here the parametrization's forward runs with
autocast disabled. The module and its state-dict keys (`parametrizations.weight.original`, `_u`, `_v`)
are PyTorch's own, so checkpoints and weight files are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations


def spectral_norm(module: nn.Module) -> nn.Module:
    """`module` with a spectral-norm parametrization of its weight, computed in float32."""
    module = parametrizations.spectral_norm(module)
    sn = module.parametrizations.weight[0]
    estimate = sn.forward  # the bound method of PyTorch's parametrization

    def forward_fp32(weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            return estimate(weight.float())

    sn.forward = forward_fp32  # an instance attribute: nn.Module.__call__ uses it in place of the method
    return module

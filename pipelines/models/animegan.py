"""AnimeGAN generators (v1, v2) and the shared patch discriminator.

Every generator maps `[N, 3, H, W]` float RGB in [-1, 1] to the same shape and range (tanh output).
Both generators accept any H and W (>= 8 or so): upsampling interpolates back to the sizes the
encoder saw instead of a fixed 2x, so odd sizes come back exactly.

Norm layers are plain `nn.InstanceNorm2d` (v1) and `nn.GroupNorm(1, C)` (v2's "layer norm" over
C, H, W with a per-channel affine): tiled inference elsewhere in the project finds these modules
by type and replaces their per-tile statistics with whole-image ones.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from .spectral import spectral_norm

LRELU_SLOPE = 0.2

# Right/bottom reflect padding of 1 before a 3x3 stride-2 conv: output is floor(H / 2) for any H,
# and for even H it is exactly the TensorFlow 'SAME' behaviour the reference models were trained with.
_PAD_STRIDE2 = (0, 1, 0, 1)


def _lrelu() -> nn.LeakyReLU:
    # In place is safe here: LeakyReLU with a positive slope can compute its gradient from its output.
    return nn.LeakyReLU(LRELU_SLOPE, inplace=True)


# --------------------------------------------------------------------------------------------
# v1 (instance norm)
# --------------------------------------------------------------------------------------------


class ConvIN(nn.Sequential):
    """Reflect pad + conv (no bias) + InstanceNorm + LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__(
            nn.ReflectionPad2d(kernel_size // 2),
            nn.Conv2d(in_ch, out_ch, kernel_size, bias=False),
            nn.InstanceNorm2d(out_ch, affine=True),
            _lrelu(),
        )


class SeparableIN(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 (no biases), then one InstanceNorm + LeakyReLU.

    One norm after the pointwise conv, as in the reference v1 code (a separable conv with the
    normalizer applied to its output); this is what gives v1 its 3,956,096 parameters.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__(
            nn.ReflectionPad2d(_PAD_STRIDE2 if stride == 2 else 1),
            nn.Conv2d(in_ch, in_ch, 3, stride=stride, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.InstanceNorm2d(out_ch, affine=True),
            _lrelu(),
        )


class DownConvV1(nn.Module):
    """Strided separable conv plus a separable conv of a bilinear half-size copy, summed."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.strided = SeparableIN(in_ch, out_ch, stride=2)
        self.resized = SeparableIN(in_ch, out_ch, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.strided(x)  # floor(H/2) x floor(W/2)
        half = F.interpolate(x, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return a + self.resized(half)


class UpConvV1(nn.Module):
    """Bilinear resize to `size` (the matching encoder size, about 2x) + separable conv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = SeparableIN(in_ch, out_ch)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


class InvertedResIN(nn.Module):
    """1x1 expand (conv+IN+LReLU), 3x3 depthwise + IN + LReLU, 1x1 project + IN, residual."""

    def __init__(self, ch: int = 256, expansion: int = 2):
        super().__init__()
        mid = ch * expansion
        self.layers = nn.Sequential(
            ConvIN(ch, mid, kernel_size=1),
            nn.ReflectionPad2d(1),
            nn.Conv2d(mid, mid, 3, groups=mid, bias=False),
            nn.InstanceNorm2d(mid, affine=True),
            _lrelu(),
            nn.Conv2d(mid, ch, 1, bias=False),
            nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class GeneratorV1(nn.Module):
    """AnimeGAN (2019) generator, 3,956,096 parameters. `[N, 3, H, W]` in [-1, 1] -> same."""

    def __init__(self, n_res: int = 8):
        super().__init__()
        self.b1 = nn.Sequential(ConvIN(3, 64), ConvIN(64, 64))
        self.down1 = DownConvV1(64, 128)
        self.b2 = nn.Sequential(ConvIN(128, 128), SeparableIN(128, 128))
        self.down2 = DownConvV1(128, 256)
        self.mid = nn.Sequential(
            ConvIN(256, 256), *[InvertedResIN(256) for _ in range(n_res)], ConvIN(256, 256)
        )
        self.up2 = UpConvV1(256, 128)
        self.u2 = nn.Sequential(SeparableIN(128, 128), ConvIN(128, 128))
        # 128 here (not the paper figure's 64), as in the reference code.
        self.up1 = UpConvV1(128, 128)
        self.u1 = nn.Sequential(ConvIN(128, 64), ConvIN(64, 64))
        self.out_layer = nn.Sequential(nn.Conv2d(64, 3, 1, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, H, W] in [-1, 1]
        full = x.shape[-2:]
        h = self.b1(x)
        h = self.down1(h)
        half = h.shape[-2:]
        h = self.b2(h)
        h = self.down2(h)
        h = self.mid(h)
        h = self.u2(self.up2(h, half))
        h = self.u1(self.up1(h, full))
        return self.out_layer(h)  # [N, 3, H, W] in [-1, 1]


# --------------------------------------------------------------------------------------------
# v2 (layer norm = GroupNorm(1, C)); module names and nesting follow the community PyTorch port so
# that its released state dicts load as they are.
# --------------------------------------------------------------------------------------------


class ConvLN(nn.Sequential):
    """Reflect pad + conv + GroupNorm(1, C) + LeakyReLU; submodule indices 0..3 as in the port."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | tuple[int, int, int, int] = 1, groups: int = 1, bias: bool = False):
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, groups=groups, bias=bias),
            nn.GroupNorm(1, out_ch),
            _lrelu(),
        )


class InvertedResLN(nn.Module):
    """1x1 expand, 3x3 depthwise with bias, 1x1 project + norm; residual when in == out."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int = 2):
        super().__init__()
        mid = in_ch * expansion
        self.residual = in_ch == out_ch
        self.layers = nn.Sequential(
            ConvLN(in_ch, mid, kernel_size=1, padding=0),
            ConvLN(mid, mid, groups=mid, bias=True),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.GroupNorm(1, out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class GeneratorV2(nn.Module):
    """AnimeGANv2 generator, 2,143,552 parameters. `[N, 3, H, W]` in [-1, 1] -> same.

    `align_corners=True` is the community port's default forward; `False` reproduces its other
    mode (plain 2x bilinear) for inputs whose sides are multiples of 4.
    """

    def __init__(self, align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.block_a = nn.Sequential(
            ConvLN(3, 32, kernel_size=7, padding=3),
            ConvLN(32, 64, stride=2, padding=_PAD_STRIDE2),
            ConvLN(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvLN(64, 128, stride=2, padding=_PAD_STRIDE2),
            ConvLN(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvLN(128, 128),
            InvertedResLN(128, 256),
            InvertedResLN(256, 256),
            InvertedResLN(256, 256),
            InvertedResLN(256, 256),
            ConvLN(256, 128),
        )
        self.block_d = nn.Sequential(ConvLN(128, 128), ConvLN(128, 128))
        self.block_e = nn.Sequential(
            ConvLN(128, 64),
            ConvLN(64, 64),
            ConvLN(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, 1, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, H, W] in [-1, 1]
        h = self.block_a(x)
        half = h.shape[-2:]
        h = self.block_c(self.block_b(h))
        h = F.interpolate(h, size=half, mode="bilinear", align_corners=self.align_corners)
        h = self.block_d(h)
        h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        h = self.block_e(h)
        return self.out_layer(h)  # [N, 3, H, W] in [-1, 1]


# --------------------------------------------------------------------------------------------
# Discriminator (v1: instance norm, v2: layer norm)
# --------------------------------------------------------------------------------------------


def _sn_conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False))


class Discriminator(nn.Module):
    """Patch discriminator, 1,128,800 parameters: `[N, 3, H, W]` in [-1, 1] -> logits `[N, 1, H/4, W/4]`.

    Zero padding, spectral norm on every conv, no biases; `norm="instance"` (v1) or `"layer"` (v2).
    """

    def __init__(self, norm: Literal["instance", "layer"] = "instance", base: int = 32):
        super().__init__()
        if norm not in ("instance", "layer"):
            raise ValueError(f"norm must be 'instance' or 'layer', not {norm!r}")
        self.norm = norm

        def nrm(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c, affine=True) if norm == "instance" else nn.GroupNorm(1, c)

        # Channels 3 -> 32 -> (64 -> 128) -> (128 -> 256) -> 256 -> 1 with base 32.
        c, prev = base, base
        layers: list[nn.Module] = [_sn_conv(3, c), _lrelu()]
        for _ in range(2):
            layers += [_sn_conv(prev, c * 2, stride=2), _lrelu()]
            layers += [_sn_conv(c * 2, c * 4), nrm(c * 4), _lrelu()]
            prev, c = c * 4, c * 2
        layers += [_sn_conv(prev, c * 2), nrm(c * 2), _lrelu(), _sn_conv(c * 2, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # [N, 1, ceil(H/4), ceil(W/4)] raw logits


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

"""White-box Cartoonization networks (Wang & Yu, CVPR 2020): the U-Net generator and the
spectral-norm patch discriminators used for the surface and texture representations.

Layout (worked out from the paper and the released code's layer list; 1,467,075 generator parameters):

    enc0  conv7x7 3->32                          LReLU          full resolution   (skip s0)
    enc1  conv3x3/2 32->32, conv3x3 32->64       LReLU each     1/2               (skip s1)
    enc2  conv3x3/2 64->64, conv3x3 64->128      LReLU each     1/4
    body  4 x residual [conv3x3, LReLU, conv3x3] + identity      1/4
    dec2  conv3x3 128->64                        LReLU
    up    bilinear x2, + s1, conv3x3 64->64, LReLU, conv3x3 64->32, LReLU
    up    bilinear x2, + s0, conv3x3 32->32, LReLU, conv7x7 32->3 (linear)

No normalization anywhere; skips are added, not concatenated. Input sides must be multiples of 4
(two stride-2 stages); `registry`'s inference wrapper pads arbitrary sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from .spectral import spectral_norm

GENERATOR_PARAMS = 1_467_075
# The generator halves the resolution twice; inputs must be divisible by this.
SIZE_MULTIPLE = 4
LRELU_SLOPE = 0.2


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    # 'same' padding for odd kernels; stride-2 convs then give exactly half of an even side.
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv(ch, ch)
        self.conv2 = _conv(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No activation after the sum: the released network keeps the block output linear.
        return x + self.conv2(F.leaky_relu(self.conv1(x), LRELU_SLOPE))


class WhiteboxGenerator(nn.Module):
    """`forward(x)`: `[N, 3, H, W]` in [-1, 1] -> `[N, 3, H, W]` unbounded (linear output, ~[-1, 1]).

    H and W must be multiples of 4. The guided-filter post-process is not part of this module:
    training applies it with r 1, eps 1e-2 and the exported inference model with r 1, eps 5e-3.
    """

    def __init__(self, channels: int = 32, num_blocks: int = 4):
        super().__init__()
        c = channels
        self.enc0 = _conv(3, c, 7)
        self.enc1a = _conv(c, c, 3, 2)
        self.enc1b = _conv(c, 2 * c)
        self.enc2a = _conv(2 * c, 2 * c, 3, 2)
        self.enc2b = _conv(2 * c, 4 * c)
        self.blocks = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(num_blocks)])
        self.dec2 = _conv(4 * c, 2 * c)
        self.dec1a = _conv(2 * c, 2 * c)
        self.dec1b = _conv(2 * c, c)
        self.dec0a = _conv(c, c)
        self.out = _conv(c, 3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, LRELU_SLOPE)  # noqa: E731
        s0 = act(self.enc0(x))
        s1 = act(self.enc1b(act(self.enc1a(s0))))
        h = act(self.enc2b(act(self.enc2a(s1))))
        h = self.blocks(h)
        h = act(self.dec2(h))
        h = F.interpolate(h, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        h = act(self.dec1b(act(self.dec1a(h + s1))))
        h = F.interpolate(h, size=s0.shape[-2:], mode="bilinear", align_corners=False)
        h = act(self.dec0a(h + s0))
        return self.out(h)


class PatchDiscriminator(nn.Module):
    """Spectral-norm patch discriminator (LSGAN logits).

    `forward(x)`: `[N, in_channels, H, W]` in [-1, 1] -> `[N, 1, H/8, W/8]` patch scores.
    Three stages of [stride-2 conv, conv] with 32, 64, 128 channels, LReLU 0.2, then a 1x1 conv.
    Every conv is spectrally normalized, as in the released code (the power-iteration vectors are
    buffers, so they are saved in checkpoints and resume exactly).
    """

    def __init__(self, in_channels: int, channels: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(3):
            cout = channels * 2**i
            layers += [spectral_norm(_conv(cin, cout, 3, 2)), nn.LeakyReLU(LRELU_SLOPE),
                       spectral_norm(_conv(cout, cout, 3)), nn.LeakyReLU(LRELU_SLOPE)]
            cin = cout
        layers.append(spectral_norm(nn.Conv2d(cin, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def surface_discriminator() -> PatchDiscriminator:
    """Judges the surface representation (guided-filtered colour image, 3 channels)."""
    return PatchDiscriminator(3)


def texture_discriminator() -> PatchDiscriminator:
    """Judges the texture representation (random-weight grayscale, 1 channel)."""
    return PatchDiscriminator(1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- registration

# Guided filter applied after the generator: the photo is the guide, so the output keeps the photo's
# edges exactly while taking the generator's colours. Training uses eps 1e-2, inference 5e-3.
TRAIN_FILTER = (1, 1e-2)
INFERENCE_FILTER = (1, 5e-3)


def inference_postprocess(photo: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """`photo` (the padded network input) and `raw` generator output, both `[N, 3, H, W]` in [-1, 1]."""
    from .guided_filter import guided_filter

    r, eps = INFERENCE_FILTER
    return guided_filter(raw, photo, r, eps)


def _register() -> None:
    from .registry import EDGE_PAD, Architecture, register_architecture

    register_architecture(Architecture(
        name="whitebox",
        builder=WhiteboxGenerator,
        size_multiple=SIZE_MULTIPLE,
        min_size=16,
        edge_pad=EDGE_PAD,  # its convolutions pad with zeros, as the TensorFlow original's 'SAME'
        postprocess=inference_postprocess,
        postprocess_name=f"guided_filter(r={INFERENCE_FILTER[0]}, eps={INFERENCE_FILTER[1]}, guide=input)",
        description="White-box Cartoonization (2020): U-Net, 1,467,075 parameters, guided-filter output",
    ))


_register()

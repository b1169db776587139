"""Style2paints V1 (FACTS 7): colour a line-art sketch in the colour style of a reference illustration.

Networks, as the paper's figure is read by two independent re-implementations:

- `Style2PaintsGenerator`: a U-Net on the 1-channel sketch. Encoder levels of two 3x3 convs with 16, 32,
  64, 128, 256 channels (a 256x256 sketch down to 16x16), max-pooling between them, a strided conv to the
  8x8x2048 bottleneck. The reference's style vector (VGG19 fc1, 4096-d, `models.vgg.VGG19Fc1`) goes
  through a trainable Linear(4096 -> 2048) and is added to the bottleneck, broadcast over space. The
  decoder upsamples (nearest, then a conv: no checkerboard), concatenates the encoder's skips (16x16x
  (512+256) at its first level) and ends in 3 channels, tanh. No normalization layers: the sources do not
  fix them, and without them a batch of one at inference computes exactly what training computed.
- `GuideDecoders`: training only, never exported. Guide 1 reads the encoder's 16x16x256 output (before
  the style is added) and predicts the grayscale target; guide 2 reads the decoder's first 16x16x512
  map (after the style) and predicts the colour target; four upsampling stages each.
- `ACDiscriminator`: AC-GAN style; a 4096-d output, trained towards `style_target(V(y))` for real
  illustrations and towards 0 for generated ones with binary cross-entropy.

Sizes: the generator needs sides that are multiples of `SIZE_MULTIPLE` (32: five halvings);
`ColorizerModel` pads any sketch with white paper to that multiple and crops the result back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Architecture, register_architecture
from .spectral import spectral_norm

ENCODER_WIDTHS = (16, 32, 64, 128, 256)
BOTTLENECK = 2048
STYLE_DIM = 4096  # VGG19 fc1
FIRST_DECODER = 512  # channels of the decoder's first 16x16 map (guide 2 reads it)
SIZE_MULTIPLE = 32  # four max-pools and the strided bottleneck conv
TargetNorm = Literal["max", "l2"]
TARGET_NORMS = ("max", "l2")


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), _act(), nn.Conv2d(cout, cout, 3, padding=1), _act())


def _init(module: nn.Module) -> None:
    # He initialization for LeakyReLU(0.2): with PyTorch's default init each conv shrinks its input's scale,
    # and after the 6 levels between the bottleneck and the output the style vector changed the first
    # outputs by about 1e-5, so nothing told the generator early on that the reference matters.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Style2PaintsGenerator(nn.Module):
    """`sketch [N, 1, H, W]` in [-1, 1] (lines dark), `style [N, 4096]` (VGG19 fc1, >= 0) ->
    `[N, 3, H, W]` in [-1, 1]; H and W multiples of 32. 26,871,555 parameters."""

    # Buffers added after the first exports: a file without them loads with the identity (`weights._load_network`).
    OPTIONAL_STATE = ("style_mean", "style_scale")

    def __init__(self, style_dim: int = STYLE_DIM, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.encoder = nn.ModuleList()
        prev = 1
        for w in ENCODER_WIDTHS:
            self.encoder.append(_double(prev, w))
            prev = w
        self.to_bottleneck = nn.Sequential(nn.Conv2d(prev, bottleneck, 3, stride=2, padding=1), _act())
        # The style vector standardized per unit with statistics of the training references (set by the trainer,
        # `set_style_statistics`; identity until then and in files from before). fc1 vectors of different images
        # share most of their direction (cosine 0.96-0.99 with a random VGG19, measured), so the raw vector hands
        # the Linear layer a large common part and small differences; standardized, the differences are the input.
        self.register_buffer("style_mean", torch.zeros(style_dim))
        self.register_buffer("style_scale", torch.ones(style_dim))
        self.style = nn.Linear(style_dim, bottleneck)
        self.from_bottleneck = nn.Sequential(nn.Conv2d(bottleneck, FIRST_DECODER, 3, padding=1), _act())
        self.decoder = nn.ModuleList()
        prev = FIRST_DECODER
        for w in reversed(ENCODER_WIDTHS):
            self.decoder.append(_double(prev + w, w))
            prev = w
        self.to_rgb = nn.Conv2d(prev, 3, 3, padding=1)
        _init(self)

    def forward(self, sketch: torch.Tensor, style: torch.Tensor, guides: bool = False):
        skips = []
        x = sketch  # [N, 1, H, W]
        for i, level in enumerate(self.encoder):
            if i:
                x = F.max_pool2d(x, 2)
            x = level(x)
            skips.append(x)
        encoded = x  # [N, 256, H/16, W/16]: guide 1's input, before the style
        b = self.to_bottleneck(encoded)  # [N, 2048, H/32, W/32]
        v = (style.float() - self.style_mean) * self.style_scale  # [N, 4096], standardized
        b = b + self.style(v.to(b.dtype))[:, :, None, None]
        x = self.from_bottleneck(_up(b))  # [N, 512, H/16, W/16]: guide 2's input, after the style
        first = x
        for i, (level, skip) in enumerate(zip(self.decoder, reversed(skips))):
            if i:
                x = _up(x)
            x = level(torch.cat([x, skip], dim=1))
        out = torch.tanh(self.to_rgb(x))  # [N, 3, H, W] in [-1, 1]
        return (out, encoded, first) if guides else out


    @torch.no_grad()
    def set_style_statistics(self, vectors: torch.Tensor, floor: float = 0.01) -> None:
        """Standardize style vectors with the mean and standard deviation of `vectors` `[K, 4096]` (training
        references' fc1); a unit's deviation is floored at `floor` times the mean deviation, so units that barely
        vary (dead ReLUs of a random VGG) are not blown up into noise."""
        v = vectors.float()
        mean, std = v.mean(0), v.std(0)
        self.style_mean.copy_(mean)
        self.style_scale.copy_(1.0 / std.clamp_min(floor * float(std.mean()) + 1e-12))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # Files from before the standardization have no statistics: they ran on the raw vector (the identity).
        for name in self.OPTIONAL_STATE:
            if prefix + name not in state_dict:
                state_dict[prefix + name] = getattr(self, name).detach().clone().fill_(0.0 if name == "style_mean" else 1.0)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def _guide(cin: int, cout: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = cin
    for _ in range(4):  # 16x16 -> 256x256 for a 256 input
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1), _act()]
        c //= 2
    layers += [nn.Conv2d(c, cout, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)


class GuideDecoders(nn.Module):
    """The two training-only decoders: `(encoded [N,256,h,w], first [N,512,h,w])` ->
    `(gray [N,1,16h,16w], colour [N,3,16h,16w])`, both in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.gray = _guide(ENCODER_WIDTHS[-1], 1)
        self.color = _guide(FIRST_DECODER, 3)

    def forward(self, encoded: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gray(encoded), self.color(first)


class ACDiscriminator(nn.Module):
    """`[N, 3, H, W]` in [-1, 1] -> logits `[N, 4096]`: per fc1 unit, how strongly the image shows it.

    Five strided 4x4 convs (32..512 channels, spectral norm, LeakyReLU), global average pooling, and a
    linear layer to the 4096 units of VGG19 fc1.
    """

    def __init__(self, base: int = 32, outputs: int = STYLE_DIM):
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for i in range(5):
            c = base * 2 ** i
            layers += [spectral_norm(nn.Conv2d(prev, c, 4, stride=2, padding=1)), _act()]
            prev = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))  # [N, 4096] raw logits


def style_target(v: torch.Tensor, kind: TargetNorm = "max", eps: float = 1e-6) -> torch.Tensor:
    """norm(V(y)): fc1 activations `[N, 4096]` (>= 0) -> per-sample targets in [0, 1] for the discriminator.

    The paper's norm() could not be read in any accessible source; `max` (v / (max v + eps), the
    default) keeps the strongest unit at 1 and the pattern of the others; `l2` divides by the Euclidean
    norm instead (smaller targets, as 4096 units share the unit length). A documented choice.
    """
    v = v.float().clamp_min(0)
    if kind == "max":
        return v / (v.amax(dim=1, keepdim=True) + eps)
    if kind == "l2":
        return v / (v.norm(dim=1, keepdim=True) + eps)
    raise ValueError(f"unknown target norm {kind!r}; use one of {', '.join(TARGET_NORMS)}")


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE, value: float = 1.0) -> torch.Tensor:
    """Pad `[N, C, H, W]` on the right and bottom with `value` (1: white paper) to multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


class ColorizerModel(nn.Module):
    """Inference wrapper: any sketch size in, the same size out.

    `sketch [N, 1, H, W]` in [-1, 1], `style [N, 4096]` -> `[N, 3, H, W]` in [-1, 1]. The sketch is
    padded with white paper (not mirrored: mirroring would draw the lines twice) to the generator's
    multiple, and the result is cropped back, so no border shows.
    """

    def __init__(self, generator: Style2PaintsGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, sketch: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h, w = sketch.shape[-2:]
        out = self.generator(pad_to_multiple(sketch), style)
        return out[..., :h, :w].clamp(-1.0, 1.0)


ARCHITECTURE = register_architecture(Architecture(
    name="style2paints_v1",
    builder=Style2PaintsGenerator,
    size_multiple=SIZE_MULTIPLE,
    min_size=SIZE_MULTIPLE,
    kind="colorizer",
    description="Style2paints V1 (2017) colorizer: sketch + VGG19 fc1 style vector; 26,871,555 parameters",
))

"""AnimeGAN losses as pure functions of tensors (FACTS section 4).

Images are `[N, 3, H, W]` RGB in [-1, 1]; VGG features are `[N, C, h, w]`; discriminator outputs
are logits of any shape (patch maps). Every loss returns a scalar tensor (mean over the batch),
so the weights of a recipe apply the same way whatever the batch size.

The perceptual, colour and TV terms are computed in float32 with autocast switched off (`@fp32`),
whatever precision the networks ran in: autocast would otherwise recast `bmm` (Gram matrices) and
`einsum` (the YUV conversion) to bf16/fp16 despite `.float()` inputs (measured on CPU bf16: colour loss
8.4% off, style loss 42% off between near-identical features), and an unnormalized F^T F overflows
fp16 once features are as large as real VGG features are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F

_F = TypeVar("_F", bound=Callable[..., torch.Tensor])


def fp32(fn: _F) -> _F:
    """Run `fn` with autocast disabled on its tensors' device and every tensor argument as float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*(a.float() if isinstance(a, torch.Tensor) else a for a in args), **kwargs)

    return wrapper  # type: ignore[return-value]

AdvKind = Literal["lsgan", "hinge"]

# BT.601 luma and the YUV matrix the reference colour loss uses; rows give Y, U, V from R, G, B.
_YUV = torch.tensor([
    [0.299, 0.587, 0.114],
    [-0.14714119, -0.28886916, 0.43601035],
    [0.61497538, -0.51496512, -0.10001026],
])
_GRAY = (0.299, 0.587, 0.114)
_YUV_ON: dict[torch.device, torch.Tensor] = {}  # the matrix copied once per device, not on every call


@fp32
def rgb_to_yuv(rgb01: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` RGB in [0, 1] -> `[N, 3, H, W]` YUV (Y in [0, 1], U and V roughly +-0.44 / +-0.62)."""
    m = _YUV_ON.get(rgb01.device)
    if m is None:
        m = _YUV_ON[rgb01.device] = _YUV.to(rgb01.device)
    return torch.einsum("ij,njhw->nihw", m, rgb01)


def luma(x: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` RGB in [-1, 1] -> `[N, 1, H, W]` luma, still in [-1, 1].

    Same weights as OpenCV's RGB->GRAY; the map is affine with weights summing to 1, so applying it
    in [-1, 1] equals converting in [0, 1] and mapping back.
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b


def to_gray3(x: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` RGB in [-1, 1] -> its luma (`luma`) replicated to 3 channels, still in [-1, 1]."""
    return luma(x).expand(-1, 3, -1, -1).contiguous()


@fp32
def gram(features: torch.Tensor) -> torch.Tensor:
    """Per-image Gram matrix: `[N, C, H, W]` -> `[N, C, C]`, F^T F / (H*W*C) with F = `[H*W, C]`.

    Each image gets its own matrix (never one matrix over the whole batch).
    """
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w * c)


@fp32
def content_loss(feat_real: torch.Tensor, feat_fake: torch.Tensor) -> torch.Tensor:
    """L1 between VGG conv4_4 features (`[N, C, h, w]`) of the photo and of G(photo)."""
    return F.l1_loss(feat_fake, feat_real)


@fp32
def style_loss(feat_style_gray: torch.Tensor, feat_fake: torch.Tensor) -> torch.Tensor:
    """Grayscale style loss: L1 between per-image Gram matrices.

    `feat_style_gray`: VGG features of the **grayscale** anime frame (`to_gray3`), `[N, C, h, w]`;
    `feat_fake`: VGG features of G(photo), same shape.
    """
    return F.l1_loss(gram(feat_fake), gram(feat_style_gray))


@fp32
def color_loss(real: torch.Tensor, fake: torch.Tensor, grade: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """L1 on Y + Huber (delta 1) on U and on V, between photo and G(photo) (`[N, 3, H, W]` in [-1, 1]).

    `grade` maps the photo (RGB `[N, 3, H, W]` in [0, 1]) to the target first (`palette.PaletteMap`: the photo
    at the style set's colour statistics); None compares with the photo itself, as the reference does."""
    yr = rgb_to_yuv((real + 1) * 0.5 if grade is None else grade((real + 1) * 0.5))
    yf = rgb_to_yuv((fake + 1) * 0.5)
    return (
        F.l1_loss(yf[:, 0], yr[:, 0])
        + F.huber_loss(yf[:, 1], yr[:, 1], delta=1.0)
        + F.huber_loss(yf[:, 2], yr[:, 2], delta=1.0)
    )


def random_shift(x: torch.Tensor, max_shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(`theta` `[N, 2, 3]`, the sampling grid `[N, H, W, 2]`) of a random sub-pixel translation of up to
    `max_shift` pixels each way per image; drawn from torch's global RNG, so a resumed run draws the same."""
    n, _, h, w = x.shape
    shift = (torch.rand(n, 2) * 2 - 1) * max_shift  # pixels (dx, dy)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = shift[:, 0] * 2 / w  # normalized coordinates span 2 over the side
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    theta = theta.to(x.device)
    return theta, F.affine_grid(theta, [n, 3, h, w], align_corners=False)


def shift_consistency_loss(generate: Callable[[torch.Tensor], torch.Tensor], photo: torch.Tensor, fake: torch.Tensor,
                           max_shift: float = 4.0) -> torch.Tensor:
    """L1 between G(shift(photo)) and shift(G(photo)) for a random sub-pixel shift per image, away from the
    borders the shift brings in: a generator whose output commutes with small motions of its input cannot
    flicker under them (the temporal term VToonify trains with; needs no video). `photo`, `fake = G(photo)`:
    `[N, 3, H, W]` in [-1, 1]."""
    _, grid = random_shift(photo, max_shift)
    shifted = F.grid_sample(photo, grid.to(photo.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    moved = F.grid_sample(fake.float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    m = int(max_shift) + 2  # columns and rows the shift may have filled from the border
    out = generate(shifted).float()
    return F.l1_loss(out[..., m:-m, m:-m], moved[..., m:-m, m:-m])


@fp32
def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation of `[N, C, H, W]`: half the sum of the mean squared vertical and horizontal
    neighbour differences (the reference's `l2_loss(d) / size(d)` per direction, where l2_loss
    halves the sum of squares, so its per-style weights apply unchanged)."""
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    return 0.5 * (dh.pow(2).mean() + dw.pow(2).mean())


# ---- adversarial -------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in ("lsgan", "hinge"):
        raise ValueError(f"adversarial loss kind must be 'lsgan' or 'hinge', not {kind!r}")


@fp32
def d_real_loss(logits: torch.Tensor, kind: AdvKind = "lsgan") -> torch.Tensor:
    """Discriminator term for inputs it should call real: LSGAN E[(D-1)^2], hinge E[relu(1-D)]."""
    _check_kind(kind)
    return (logits - 1).pow(2).mean() if kind == "lsgan" else F.relu(1 - logits).mean()


@fp32
def d_fake_loss(logits: torch.Tensor, kind: AdvKind = "lsgan") -> torch.Tensor:
    """Discriminator term for inputs it should call fake: LSGAN E[D^2], hinge E[relu(1+D)]."""
    _check_kind(kind)
    return logits.pow(2).mean() if kind == "lsgan" else F.relu(1 + logits).mean()


@fp32
def generator_adv_loss(fake_logits: torch.Tensor, kind: AdvKind = "lsgan") -> torch.Tensor:
    """Generator's adversarial loss on D(G(p)): LSGAN E[(D-1)^2], hinge -E[D]."""
    _check_kind(kind)
    return (fake_logits - 1).pow(2).mean() if kind == "lsgan" else -fake_logits.mean()


def discriminator_adv_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    gray_logits: torch.Tensor | None = None,
    smooth_logits: torch.Tensor | None = None,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.1),
    kind: AdvKind = "lsgan",
) -> torch.Tensor:
    """AnimeGAN discriminator loss: real anime frames `a` are real; G(p), grayscale frames `x` and
    edge-smoothed frames `y` are fake. `weights` = (real, fake, gray, smooth); the default is v1's
    (1, 1, 1, 0.1); v2 uses per-style values. Missing terms (None) are skipped."""
    w_real, w_fake, w_gray, w_smooth = weights
    loss = w_real * d_real_loss(real_logits, kind) + w_fake * d_fake_loss(fake_logits, kind)
    if gray_logits is not None:
        loss = loss + w_gray * d_fake_loss(gray_logits, kind)
    if smooth_logits is not None:
        loss = loss + w_smooth * d_fake_loss(smooth_logits, kind)
    return loss

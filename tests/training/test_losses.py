"""Losses on tiny hand-computed tensors (FACTS section 4)."""

from __future__ import annotations

import pytest
import torch
from pipelines.training import losses as L


def rgb(*values: float) -> torch.Tensor:
    """One pixel `[1, 3, 1, 1]` with the given RGB values."""
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


def test_rgb_to_yuv_of_known_colours():
    red = L.rgb_to_yuv(rgb(1, 0, 0)).flatten()
    assert torch.allclose(red, torch.tensor([0.299, -0.14714119, 0.61497538]))
    white = L.rgb_to_yuv(rgb(1, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    # Shape is kept for images.
    assert L.rgb_to_yuv(torch.rand(2, 3, 4, 5)).shape == (2, 3, 4, 5)


def test_to_gray3_is_luma_in_minus_one_to_one():
    g = L.to_gray3(rgb(-1, 1, -1))  # pure green in [-1, 1]
    assert g.shape == (1, 3, 1, 1)
    assert torch.allclose(g.flatten(), torch.full((3,), -0.299 + 0.587 - 0.114))
    assert torch.allclose(L.to_gray3(rgb(1, 1, 1)), rgb(1, 1, 1))


def test_gram_is_per_image_and_normalized():
    # Image 0: F ([H*W, C] = [2, 2]) = [[1, 0], [2, 1]]; image 1: zeros.
    feats = torch.zeros(2, 2, 1, 2)
    feats[0, 0, 0] = torch.tensor([1.0, 2.0])
    feats[0, 1, 0] = torch.tensor([0.0, 1.0])
    g = L.gram(feats)
    assert g.shape == (2, 2, 2)
    assert torch.allclose(g[0], torch.tensor([[5.0, 2.0], [2.0, 1.0]]) / 4)  # / (H*W*C) = 4
    assert torch.count_nonzero(g[1]) == 0  # a batch-wide Gram would leak image 0 into image 1


def test_style_loss_compares_grams_and_content_loss_is_l1():
    a = torch.zeros(1, 2, 1, 2)
    b = torch.zeros(1, 2, 1, 2)
    b[0, 0, 0] = torch.tensor([1.0, 2.0])
    b[0, 1, 0] = torch.tensor([0.0, 1.0])
    assert torch.isclose(L.style_loss(a, b), torch.tensor((5 + 2 + 2 + 1) / 4 / 4))
    assert torch.isclose(L.content_loss(a, b), torch.tensor(4 / 4))  # |b| sums to 4 over 4 values


def test_color_loss_black_vs_white_is_only_luma():
    # U and V of grey levels are 0, so only the L1 on Y counts: |1 - 0| = 1.
    assert torch.isclose(L.color_loss(rgb(-1, -1, -1), rgb(1, 1, 1)), torch.tensor(1.0), atol=1e-6)


def test_color_loss_huber_on_u_and_v():
    real01, fake01 = (0.0, 1.0, 1.0), (1.0, 0.0, 0.0)  # cyan vs red, in [0, 1]
    dy = 0.701 - 0.299
    du = 0.14714119 - (-0.14714119)  # below delta: 0.5 d^2
    dv = 0.61497538 - (-0.61497538)  # above delta: d - 0.5
    expected = dy + 0.5 * du**2 + (dv - 0.5)
    loss = L.color_loss(rgb(*(2 * v - 1 for v in real01)), rgb(*(2 * v - 1 for v in fake01)))
    assert torch.isclose(loss, torch.tensor(expected), atol=1e-5)


def test_tv_loss():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)  # no vertical change, horizontal steps of 1
    assert torch.isclose(L.tv_loss(x), torch.tensor(0.5))
    assert L.tv_loss(torch.ones(2, 3, 4, 4)) == 0


def test_lsgan_losses():
    half = torch.full((2, 1, 3, 3), 0.5)
    assert torch.isclose(L.generator_adv_loss(half, "lsgan"), torch.tensor(0.25))
    assert torch.isclose(L.d_real_loss(half), torch.tensor(0.25))
    assert torch.isclose(L.d_fake_loss(half), torch.tensor(0.25))
    total = L.discriminator_adv_loss(
        real_logits=torch.zeros(1, 1, 2, 2),  # (0 - 1)^2 = 1
        fake_logits=torch.ones(1, 1, 2, 2),  # 1
        gray_logits=torch.full((1, 1, 2, 2), 2.0),  # 4
        smooth_logits=torch.full((1, 1, 2, 2), 3.0),  # 9, weighted 0.1 by default (v1)
    )
    assert torch.isclose(total, torch.tensor(1 + 1 + 4 + 0.9))
    weighted = L.discriminator_adv_loss(torch.zeros(1), torch.ones(1), weights=(1.2, 1.2, 1.2, 0.8))
    assert torch.isclose(weighted, torch.tensor(2.4))


def test_hinge_losses():
    real = torch.tensor([2.0, 0.0])  # relu(1 - D): 0, 1
    fake = torch.tensor([-2.0, 0.5])  # relu(1 + D): 0, 1.5
    assert torch.isclose(L.d_real_loss(real, "hinge"), torch.tensor(0.5))
    assert torch.isclose(L.d_fake_loss(fake, "hinge"), torch.tensor(0.75))
    assert torch.isclose(L.generator_adv_loss(fake, "hinge"), torch.tensor(0.75))
    assert torch.isclose(L.discriminator_adv_loss(real, fake, kind="hinge"), torch.tensor(1.25))


def test_unknown_adversarial_kind():
    with pytest.raises(ValueError, match="hinge"):
        L.generator_adv_loss(torch.zeros(1), "wgan")  # type: ignore[arg-type]


def test_losses_backpropagate_to_the_fake_image():
    fake = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
    real = torch.rand(2, 3, 8, 8) * 2 - 1
    loss = L.color_loss(real, fake) + L.tv_loss(fake) + L.style_loss(real, fake) + L.content_loss(real, fake)
    loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_shift_consistency_is_zero_for_shift_equivariant_generators_and_not_otherwise():
    torch.manual_seed(0)
    photo = torch.rand(3, 3, 32, 32) * 2 - 1
    # Affine pointwise maps commute with any shift, sub-pixel (bilinear) ones included.
    for g in (lambda x: x, lambda x: 0.5 * x - 0.1):
        assert float(L.shift_consistency_loss(g, photo, g(photo))) < 1e-6
    pattern = torch.rand(1, 3, 32, 32) * 2 - 1  # a texture fixed to the frame, not to the content: flickers

    def textured(x):
        return x + 0.3 * pattern

    assert float(L.shift_consistency_loss(textured, photo, textured(photo))) > 0.02
    torch.manual_seed(5)
    a = L.shift_consistency_loss(textured, photo, textured(photo))
    torch.manual_seed(5)
    assert float(L.shift_consistency_loss(textured, photo, textured(photo))) == float(a)  # the global RNG decides


def test_temporal_weight_is_refused_for_style2paints():
    from pipelines.errors import InputError
    from pipelines.training.loop import resolve_config

    with pytest.raises(InputError, match="temporal_weight"):
        resolve_config(overrides={"dataset": "x", "model": "style2paints", "temporal_weight": 1.0})


def test_discriminator_augmentation_moves_and_cuts_but_keeps_colours():
    from pipelines.training.augment import augment, cutout, translate

    x = torch.zeros(8, 1, 32, 32)
    x[:, :, 16, 16] = 1.0  # one bright pixel per image
    torch.manual_seed(0)
    moved = translate(x)
    where = [tuple(int(v) for v in (m[0] == 1).nonzero()[0]) for m in moved]
    assert len(set(where)) > 1 and all(abs(r - 16) <= 4 and abs(c - 16) <= 4 for r, c in where)
    torch.manual_seed(0)
    assert torch.equal(translate(x), moved)  # the global RNG decides: a resumed run draws the same
    ones = torch.ones(8, 3, 32, 32)
    cut = cutout(ones)
    share = (cut == 0).float().mean(dim=(1, 2, 3))
    assert torch.all(share > 0.05) and torch.all(share <= 0.26)  # a half-side square, inside or past an edge
    assert augment(ones, "none") is ones
    assert set(torch.unique(augment(ones, "translation,cutout")).tolist()) <= {0.0, 1.0}  # no colour change

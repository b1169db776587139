"""The ink term (training/ink.py): what it measures, where its target puts the style's ink, and which way it pulls."""

import torch

from pipelines.training.ink import black_hat, edge_strength, ink_loss, ink_target, luma


def _gray(y: torch.Tensor) -> torch.Tensor:
    """`[N, 1, H, W]` luma in [-1, 1] -> the grey RGB image `[N, 3, H, W]`."""
    return y.expand(-1, 3, -1, -1).clone()


def test_black_hat_sees_thin_dark_lines_only():
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert black_hat(flat).abs().max() < 1e-6
    step = flat.clone()
    step[..., 8:] = -0.5  # a step edge: dark on one side, no dip anywhere
    assert black_hat(step).abs().max() < 1e-6
    line = flat.clone()
    line[..., 7] = -0.7  # a one-pixel dark line on a flat ground
    bh = black_hat(line)
    assert torch.allclose(bh[..., 7], torch.full_like(bh[..., 7], 1.0))
    assert bh[..., :6].abs().max() < 1e-6 and bh[..., 9:].abs().max() < 1e-6


def test_luma_weights_green_most():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 1] = 1.0
    assert torch.allclose(luma(x), torch.full((1, 1, 2, 2), 0.587))


def test_edge_ridge_is_one_pixel_wide_at_a_step():
    y = torch.full((1, 1, 16, 16), -0.5)
    y[..., 8:] = 0.5  # vertical edge between columns 7 and 8
    mag, ridge = edge_strength(_gray(y))
    assert mag[..., 4:12, 7:9].min() > mag[..., 4:12, :5].max()
    cols = ridge[0, 0, 4:12].any(dim=0).nonzero().flatten().tolist()
    assert 1 <= len(cols) <= 2 and set(cols) <= {7, 8}


def test_target_puts_the_darkest_ink_on_the_strongest_edge():
    photo = torch.full((1, 1, 16, 16), -0.5)
    photo[..., 8:] = 0.5
    cartoon = torch.full((1, 1, 16, 16), 0.4)
    cartoon[..., 3, :] = -0.6  # one inked row: 16 of 256 pixels carry ink 1.0
    target = ink_target(_gray(photo), _gray(cartoon))
    assert target.shape == (1, 1, 16, 16)
    assert torch.isclose(target.sum(), black_hat(cartoon).sum(), rtol=0.05)  # the same amount of ink
    inked = target[0, 0] > 0.5
    assert inked[:, 7:9].sum() == inked.sum() == 16  # all of it along the edge
    no_ink = ink_target(_gray(photo), _gray(torch.full((1, 1, 16, 16), 0.4)))
    assert no_ink.abs().max() < 1e-6  # a style without lines asks for none


def test_target_handles_batches_of_other_sizes():
    g = torch.Generator().manual_seed(0)
    photo, cartoon = torch.rand(2, 3, 12, 12, generator=g) * 2 - 1, torch.rand(3, 3, 20, 20, generator=g) * 2 - 1
    target = ink_target(photo, cartoon)
    assert target.shape == (2, 1, 12, 12) and target.min() >= 0
    assert target.max() <= black_hat(luma(cartoon)).max() + 1e-6


def test_loss_pulls_ink_onto_the_target_and_off_elsewhere():
    photo = torch.full((1, 3, 16, 16), 0.2)  # a flat photo: no ink of its own
    fake = photo.clone()
    fake[:, :, 2, :] = -0.6  # ink where none is asked for
    target = torch.zeros(1, 1, 16, 16)
    target[..., 8] = 0.8  # ink asked for along column 8
    fake.requires_grad_(True)
    loss = ink_loss(fake, photo, target)
    loss.backward()
    g = fake.grad.sum(dim=1)[0]
    assert g[4:12, 8].max() > 0  # descending darkens the target column
    assert g[2, 4:12].min() < 0  # and lightens the stray line
    assert float(ink_loss(photo, photo, torch.zeros(1, 1, 16, 16))) == 0.0


def test_the_photos_own_dark_details_may_stay():
    photo = torch.full((1, 3, 16, 16), 0.2)
    photo[:, :, 5, :] = -0.4  # a thin dark detail of the photo itself
    no_target = torch.zeros(1, 1, 16, 16)
    assert float(ink_loss(photo, photo, no_target)) == 0.0  # keeping it costs nothing
    darker = photo.clone()
    darker[:, :, 5, :] = -0.9
    assert float(ink_loss(darker, photo, no_target)) > 0.0  # inking it beyond the photo does

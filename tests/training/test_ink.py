"""The ink term (training/ink.py): what it measures, where its target puts the style's ink, and which way it pulls."""

import numpy as np
import torch

from pipelines.training.ink import InkMap, black_hat, draw_ink, edge_strength, ink_loss, lift_ink, luma


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


def _save(folder, name: str, y: torch.Tensor):
    """Write luma `[1, 1, H, W]` in [-1, 1] as a grey PNG; returns its path."""
    from pipelines.fileio import write_image

    rgb = ((_gray(y)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    path = folder / f"{name}.png"
    write_image(path, rgb)
    return path


def _edge_photo() -> torch.Tensor:
    photo = torch.full((1, 1, 16, 16), -0.5)
    photo[..., 8:] = 0.5  # vertical edge between columns 7 and 8
    return photo


def test_target_puts_the_darkest_ink_on_the_strongest_edge(tmp_path):
    photo = _edge_photo()
    cartoon = torch.full((1, 1, 16, 16), 0.4)
    cartoon[..., 3, :] = -0.6  # one inked row: 16 of 256 pixels carry ink 1.0
    ink_map = InkMap.fit([_save(tmp_path, "photo", photo)], [_save(tmp_path, "cartoon", cartoon)])
    target = ink_map(_gray(photo))
    assert target.shape == (1, 1, 16, 16)
    # The step's two middle columns tie for the strongest edge, and a fixed map gives tied pixels the same ink: the
    # style's one row of ink becomes up to two columns, nowhere else.
    assert black_hat(cartoon).sum() * 0.9 <= target.sum() <= black_hat(cartoon).sum() * 2.1
    inked = target[0, 0] > 0.5
    assert inked[:, 7:9].sum() == inked.sum() >= 14  # all of it along the edge
    assert target[0, 0, :, :6].max() < 0.05 and target[0, 0, :, 10:].max() < 0.05
    flat = InkMap.fit([_save(tmp_path, "photo", photo)], [_save(tmp_path, "flat", torch.full((1, 1, 16, 16), 0.4))])
    assert flat(_gray(photo)).abs().max() < 1e-6  # a style without lines asks for none


def test_target_is_the_same_for_a_pixel_whatever_else_is_in_the_batch(tmp_path):
    # The map is fitted once: a photo's target does not depend on its batch (a per-batch ranking did, and a generator
    # regressing to it learned no lines).
    g = torch.Generator().manual_seed(0)
    photos = [_save(tmp_path, f"p{i}", torch.rand(1, 1, 24, 24, generator=g) * 2 - 1) for i in range(2)]
    cartoons = [_save(tmp_path, f"c{i}", torch.rand(1, 1, 20, 20, generator=g) * 2 - 1) for i in range(3)]
    ink_map = InkMap.fit(photos, cartoons)
    a = _gray(_edge_photo())
    b = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    alone, together = ink_map(a), ink_map(torch.cat([a, b]))
    assert alone.shape == (1, 1, 16, 16) and alone.min() >= 0
    assert torch.equal(alone[0], together[0])
    assert together.max() <= ink_map.ink.max() + 1e-6


def test_draw_ink_darkens_to_the_target_and_nowhere_else():
    image = torch.full((1, 3, 8, 8), 0.4)
    target = torch.zeros(1, 1, 8, 8)
    target[..., 3] = 0.6  # ink asked for along column 3
    drawn = draw_ink(image, target)
    assert torch.allclose(black_hat(luma(drawn))[..., 3], torch.full((1, 1, 8), 0.6), atol=1e-5)
    assert torch.equal(drawn[..., [0, 1, 2, 4, 5, 6, 7]], image[..., [0, 1, 2, 4, 5, 6, 7]])
    assert torch.equal(draw_ink(image, torch.zeros(1, 1, 8, 8)), image)  # no target, no change


def test_lift_ink_takes_lines_out_and_keeps_their_hue():
    ground = np.zeros((12, 12, 3), np.uint8)
    ground[:] = (200, 150, 90)  # a warm flat region
    inked = ground.copy()
    inked[:, 5] = (60, 30, 0)  # a dark brown line, one pixel wide, same hue family
    lifted = lift_ink(inked)
    assert np.array_equal(lift_ink(ground), ground)  # no ink, no change
    line = lifted[:, 5].astype(int)
    # the line's luma is back at its surroundings', all channels raised alike: its red-minus-blue stays
    assert np.abs(line.mean(0) @ [0.299, 0.587, 0.114] - np.array([200, 150, 90]) @ [0.299, 0.587, 0.114]) < 2
    assert np.abs((line[:, 0] - line[:, 2]) - 60).max() <= 1
    assert np.array_equal(lifted[:, :4], inked[:, :4]) and np.array_equal(lifted[:, 7:], inked[:, 7:])


def test_palette_fitted_on_lifted_images_does_not_count_the_lines(tmp_path):
    # The style is the photo with lines drawn on it: as they are, its statistics are darker than the photo's and the
    # palette darkens everything; with both sets' ink lifted out, the map is near the identity on the regions.
    from pipelines.fileio import write_image
    from pipelines.training.palette import PaletteMap

    g = np.random.default_rng(0)
    photo = np.clip(g.normal(150, 30, (48, 48, 3)), 0, 255).astype(np.uint8)
    photo = np.ascontiguousarray(np.repeat(np.repeat(photo[::8, ::8], 8, 0), 8, 1))  # flat 8 px blocks
    style = photo.copy()
    style[:, 3::8] = 10  # a dark line through every block
    write_image(tmp_path / "p.png", photo)
    write_image(tmp_path / "s.png", style)
    as_is = PaletteMap.fit([tmp_path / "p.png"], [tmp_path / "s.png"])
    lifted = PaletteMap.fit([tmp_path / "p.png"], [tmp_path / "s.png"], lift_ink)
    assert as_is.b[0] + 50 * as_is.a[0, 0] < 45  # mid grey's lightness pulled down by the lines
    assert abs(lifted.b[0] + 50 * lifted.a[0, 0] - 50) < 3


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

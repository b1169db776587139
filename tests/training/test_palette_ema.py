"""The colour anchor's palette map (training/palette.py) and the generator's weight average (training/ema.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.fileio import write_image
from pipelines.training import losses as L
from pipelines.training.ema import GeneratorEMA
from pipelines.training.palette import PaletteMap, lab_to_rgb, rgb_to_lab, transfer_map


def test_transfer_map_moves_mean_and_covariance_onto_the_target():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20000, 3)) @ np.array([[0.2, 0.0, 0.0], [0.05, 0.1, 0.0], [0.0, 0.02, 0.08]]) + [0.5, 0.0, 0.0]
    dst = rng.normal(size=(20000, 3)) @ np.array([[0.15, 0.0, 0.0], [0.0, 0.16, 0.03], [0.0, 0.0, 0.12]]) + [0.4, 0.05, 0.08]
    a, b = transfer_map((src.mean(0), np.cov(src, rowvar=False)), (dst.mean(0), np.cov(dst, rowvar=False)))
    moved = src @ a.T + b
    np.testing.assert_allclose(moved.mean(0), dst.mean(0), atol=1e-6)
    np.testing.assert_allclose(np.cov(moved, rowvar=False), np.cov(dst, rowvar=False), atol=1e-4)
    assert np.allclose(a, a.T)  # the Monge-Kantorovich map is symmetric positive definite
    # The same statistics on both sides: the identity (AnimeGAN's loss unchanged).
    a, b = transfer_map((src.mean(0), np.cov(src, rowvar=False)), (src.mean(0), np.cov(src, rowvar=False)))
    np.testing.assert_allclose(a, np.eye(3), atol=1e-4)
    np.testing.assert_allclose(b, 0, atol=1e-4)


def test_lab_conversion_matches_scikit_image_and_round_trips():
    from skimage import color, data

    img = data.astronaut()[::8, ::8]
    lab = rgb_to_lab(torch.from_numpy(img) / 255.0).numpy()
    np.testing.assert_allclose(lab, color.rgb2lab(img), atol=0.01)
    np.testing.assert_allclose(lab_to_rgb(torch.from_numpy(lab)).numpy() * 255, img, atol=1e-3)


def test_palette_map_from_files_recovers_a_lab_grading(tmp_path):
    """Style images = the photos graded in CIELAB (chroma x1.3, a* +6, b* +12): the fitted map recovers the
    grading, and applying it to a photo gives that photo's graded version."""
    from skimage import color, data

    photos, graded = [], []
    src = np.ascontiguousarray(data.coffee()[::4, ::4])
    for k in range(4):
        img = np.roll(src, 37 * k, axis=1)
        lab = color.rgb2lab(img)
        lab[..., 1:] = lab[..., 1:] * 1.3 + [6.0, 12.0]
        out = (np.clip(color.lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8)
        photos.append(write_path(tmp_path / f"p{k}.png", img))
        graded.append(write_path(tmp_path / f"g{k}.png", out))
    pm = PaletteMap.fit(photos, graded)
    assert "chroma x1.2" in pm.describe() or "chroma x1.3" in pm.describe()
    assert abs(pm.a[0, 0] - 1) < 0.1  # lightness barely touched (gamut clipping moves it a little)
    x = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 255
    y = pm(x)[0].permute(1, 2, 0).numpy() * 255
    target = color.lab2rgb(color.rgb2lab(src) * [1, 1.3, 1.3] + [0, 6, 12]) * 255
    assert np.abs(y - target).mean() < 6  # gamut clipping and rounding aside, the same grading
    assert np.abs(src.astype(float) - target).mean() > 12


def write_path(path, img):
    write_image(path, img)
    return path


def test_colour_loss_with_a_grade_is_zero_for_the_graded_photo():
    torch.manual_seed(0)
    photo = torch.rand(2, 3, 16, 16) * 1.6 - 0.8
    assert torch.equal(L.color_loss(photo, photo), L.color_loss(photo, photo, None))
    pm = PaletteMap(np.diag([1.0, 1.5, 1.5]), np.array([0.0, 5.0, 10.0]))
    graded = pm((photo + 1) / 2) * 2 - 1
    assert L.color_loss(photo, graded, pm) < 1e-5
    assert L.color_loss(photo, photo, pm) > 1e-3
    identity = PaletteMap(np.eye(3), np.zeros(3))
    assert L.color_loss(photo, photo, identity) < 1e-5


def test_ema_tracks_then_averages_with_warm_up():
    net = nn.Linear(3, 2)
    ema = GeneratorEMA(net, decay=0.999)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.track(net)
    assert torch.equal(ema.shadow.weight, net.weight) and ema.updates == 0
    with torch.no_grad():
        net.weight.fill_(2.0)
    ema.update(net)  # decay min(0.999, 2/11): most of the way to the new weights at first
    assert ema.shadow.weight[0, 0].item() == pytest.approx(1.0 + (1 - 2 / 11), abs=1e-6)
    state = ema.state_dict()
    other = GeneratorEMA(nn.Linear(3, 2), decay=0.999)
    other.load_state_dict(state)
    assert torch.equal(other.shadow.weight, ema.shadow.weight) and other.updates == 1
    assert not ema.shadow.weight.requires_grad

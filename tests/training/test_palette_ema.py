"""The colour anchor's palette map (training/palette.py) and the generator's weight average (training/ema.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.fileio import write_image
from pipelines.training import losses as L
from pipelines.training.ema import GeneratorEMA
from pipelines.training.palette import PaletteMap, color_stats, transfer_map


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


def test_palette_map_from_files_learns_a_warm_shift(tmp_path):
    rng = np.random.default_rng(1)
    photos, warm = [], []
    for k in range(6):
        img = rng.integers(40, 200, size=(48, 64, 3)).astype(np.uint8)
        shifted = np.clip(img.astype(int) + [30, 10, -30], 0, 255).astype(np.uint8)
        photos.append(tmp_path / f"p{k}.png")
        warm.append(tmp_path / f"w{k}.png")
        write_image(photos[-1], img)
        write_image(warm[-1], shifted)
    mean_p, _ = color_stats(photos)
    pm = PaletteMap.fit(photos, warm)
    assert pm.b[2] > 0.05 and pm.b[1] < -0.03  # V (red - luma) up, U (blue - luma) down: warmer
    yuv = torch.from_numpy(np.tile(mean_p, (1, 1, 1, 1)).reshape(1, 3, 1, 1)).float()
    out = pm(yuv).flatten().numpy()
    np.testing.assert_allclose(out, pm.a @ mean_p + pm.b, atol=1e-5)
    assert "chroma" in pm.describe()


def test_colour_loss_with_a_grade_is_zero_for_the_graded_photo():
    torch.manual_seed(0)
    photo = torch.rand(2, 3, 16, 16) * 1.6 - 0.8
    assert torch.equal(L.color_loss(photo, photo), L.color_loss(photo, photo, None))
    # A grade that doubles U and V: the graded photo itself has zero loss, the photo does not.
    pm = PaletteMap(np.diag([1.0, 2.0, 2.0]), np.zeros(3))
    yuv = pm(L.rgb_to_yuv((photo + 1) / 2))
    inv = torch.linalg.inv(L._YUV)
    graded = torch.einsum("ij,njhw->nihw", inv, yuv) * 2 - 1
    assert L.color_loss(photo, graded, pm) < 1e-6
    assert L.color_loss(photo, photo, pm) > 1e-3


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

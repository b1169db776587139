"""The guided filter against a direct per-pixel implementation (float64, explicit clipped windows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.models.guided_filter import box_mean, guided_filter


def _window_mean(a: np.ndarray, r: int) -> np.ndarray:
    # a: [H, W]; plain loops over clipped windows, the definition itself
    h, w = a.shape
    out = np.empty_like(a)
    for i in range(h):
        for j in range(w):
            out[i, j] = a[max(0, i - r): i + r + 1, max(0, j - r): j + r + 1].mean()
    return out


def _direct(x: np.ndarray, g: np.ndarray, r: int, eps: float) -> np.ndarray:
    # x: [C, H, W], g: [C or 1, H, W]; one regression per channel and window
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        gc = g[c if g.shape[0] > 1 else 0]
        xc = x[c]
        mg, mx = _window_mean(gc, r), _window_mean(xc, r)
        a = (_window_mean(gc * xc, r) - mg * mx) / (_window_mean(gc * gc, r) - mg * mg + eps)
        b = mx - a * mg
        out[c] = _window_mean(a, r) * gc + _window_mean(b, r)
    return out


@pytest.mark.parametrize(
    "shape, guide_ch, r, eps",
    [((3, 13, 17), 3, 1, 1e-2), ((3, 11, 9), 3, 2, 5e-3), ((3, 15, 12), 1, 5, 0.2), ((2, 7, 19), 2, 4, 1e-3),
     ((3, 5, 6), 3, 3, 0.2)],  # r 3 on a 5-row image: windows wider than the image
)
def test_matches_direct_implementation(shape, guide_ch, r, eps):
    rng = np.random.default_rng(sum(shape) + r)
    x = rng.uniform(-1, 1, size=shape)
    g = rng.uniform(-1, 1, size=(guide_ch, *shape[1:]))
    want = _direct(x, g, r, eps)
    got = guided_filter(torch.tensor(x[None], dtype=torch.float32), torch.tensor(g[None], dtype=torch.float32), r, eps)
    assert got.shape == (1, *shape)
    np.testing.assert_allclose(got[0].double().numpy(), want, atol=1e-5, rtol=0)


def test_box_mean_borders_are_normalized():
    # a constant image stays constant, borders included (no darkening from zero padding)
    x = torch.full((1, 1, 9, 10), 0.7)
    np.testing.assert_allclose(box_mean(x, 3).numpy(), 0.7, atol=1e-6)


def test_self_guided_filter_smooths_and_keeps_constant():
    x = torch.full((1, 3, 16, 16), -0.25)
    assert torch.allclose(guided_filter(x, x, 5, 0.2), x, atol=1e-6)
    noisy = torch.rand(1, 3, 32, 32) * 2 - 1
    out = guided_filter(noisy, noisy, 5, 0.2)
    assert (out - out.mean()).abs().mean() < 0.7 * (noisy - noisy.mean()).abs().mean()


def test_differentiable_and_batched():
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    g = torch.rand(2, 3, 12, 12)
    out = guided_filter(x, g, 1, 1e-2)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # each batch item is filtered independently
    single = guided_filter(x[1:].detach(), g[1:], 1, 1e-2)
    assert torch.allclose(out[1:].detach(), single, atol=1e-6)


def test_rejects_mismatched_guide():
    with pytest.raises(ValueError):
        guided_filter(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 8), 1, 1e-2)
    with pytest.raises(ValueError):
        guided_filter(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), 1, 1e-2)

"""The CPU fast path (pipelines.models.cpu_speed): same numbers as PyTorch's convolutions, within float32 noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from pipelines.models import cpu_speed
from pipelines.models.cpu_speed import accelerate, nnpack_usable, tune_allocator, winograd_weight_grad

needs_nnpack = pytest.mark.skipif(not nnpack_usable(), reason="this torch build has no usable NNPACK")


def _reference_weight_grad(x, go, k, padding):
    w = torch.zeros(go.shape[1], x.shape[1], k, k, dtype=x.dtype)
    return torch.ops.aten.convolution_backward(go, x, w, None, [1, 1], list(padding), [1, 1], False, [0, 0], 1,
                                               [False, True, False])[1]


@pytest.mark.parametrize("shape,padding", [
    ((2, 5, 13, 11), (1, 1)),   # sides not multiples of the 4x4 tile
    ((1, 3, 9, 9), (0, 0)),     # valid convolution (the generators pad explicitly)
    ((3, 4, 16, 8), (1, 0)),    # asymmetric padding
])
def test_winograd_weight_grad_is_exact_in_float64(shape, padding):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64, generator=g)
    ho, wo = shape[2] + 2 * padding[0] - 2, shape[3] + 2 * padding[1] - 2
    go = torch.randn(shape[0], 6, ho, wo, dtype=torch.float64, generator=g)
    got = winograd_weight_grad(x, go, 3, padding)
    ref = _reference_weight_grad(x, go, 3, padding)
    assert got.shape == (6, shape[1], 3, 3)
    assert torch.allclose(got, ref, rtol=0, atol=1e-10 * ref.abs().max().item())


def test_winograd_weight_grad_float32_error_is_small():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 32, 40, 40, generator=g)
    go = torch.randn(2, 16, 40, 40, generator=g)
    got = winograd_weight_grad(x, go, 3, (1, 1))
    ref = _reference_weight_grad(x.double(), go.double(), 3, (1, 1))
    assert (got.double() - ref).abs().max() / ref.abs().max() < 5e-5


def test_winograd_matrices_reproduce_a_1d_correlation():
    # y[j] = sum_i g[i] d[i + j]: the identity the whole weight gradient rests on.
    bt, gm, at = cpu_speed._winograd_matrices(3, 4)
    d = torch.arange(6, dtype=torch.float64) ** 2 - 3
    g = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    y = bt @ ((gm @ g) * (at @ d))
    ref = torch.stack([(g * d[j:j + 4]).sum() for j in range(3)])
    assert torch.allclose(y, ref, atol=1e-12)


@needs_nnpack
@pytest.mark.parametrize("n,k,padding", [(3, 3, 1), (2, 3, 0), (4, 7, 3), (2, 7, 6), (3, 3, 2)])
def test_stacked_nnpack_equals_conv2d(n, k, padding):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 6, 14, 11, generator=g)
    w = torch.randn(5, 6, k, k, generator=g)
    b = torch.randn(5, generator=g)
    got = cpu_speed._nnpack_stacked(x, w, b, [padding, padding])
    ref = F.conv2d(x, w, b, padding=padding)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-3 * ref.abs().max()


def _pair(make):
    torch.manual_seed(4)
    fast, plain = make(), make()
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@needs_nnpack
@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(64, 96, 3, padding=1),                      # Winograd weight gradient, bias
    lambda: nn.Conv2d(8, 4, 7, padding=0, bias=False),            # oneDNN weight gradient, NNPACK input gradient
    lambda: spectral_norm(nn.Conv2d(64, 64, 3, padding=1, bias=False)),  # parametrized weight
])
def test_accelerated_conv_matches_plain_forward_and_gradients(make):
    fast, plain = _pair(make)
    assert accelerate(fast, force=True) == 1
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, fast.in_channels, 40, 36, generator=g)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), plain(xb)
    grad = torch.randn(ya.shape, generator=g)
    ya.backward(grad)
    yb.backward(grad)

    def close(a, b):
        return (a - b).abs().max().item() <= 1e-4 * b.abs().max().item()

    assert close(ya, yb)
    assert close(xa.grad, xb.grad)
    for (name, pa), pb in zip(fast.named_parameters(), plain.parameters()):
        assert close(pa.grad, pb.grad), name
    with torch.no_grad():
        assert close(fast(x), plain(x))


@needs_nnpack
def test_accelerate_skips_what_it_cannot_do_and_small_maps():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=4),
                          nn.Conv2d(4, 4, 3, padding=1))
    assert accelerate(model, force=True) == 1  # only the dense stride-1 3x3
    assert accelerate(model, force=True) == 0  # already patched: not wrapped twice
    small = torch.randn(1, 4, 8, 8)  # below NNPACK_MIN_PIXELS: the plain path
    with torch.no_grad():
        assert torch.equal(model[3](small), F.conv2d(small, model[3].weight, model[3].bias, padding=1))


@needs_nnpack
def test_autocast_takes_the_plain_path():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    accelerate(conv, force=True)
    x = torch.randn(1, 8, 40, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16


def test_tune_allocator_is_idempotent():
    first = tune_allocator()
    assert isinstance(first, bool)
    assert tune_allocator() is first


def test_nnpack_only_where_it_beats_pytorchs_own_kernels(monkeypatch):
    import pipelines.models.cpu_speed as cs

    monkeypatch.setattr(cs, "nnpack_usable", lambda: True)
    for capability, expected in (("AVX512", 0), ("AVX2", 1), ("DEFAULT", 0)):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert cs.nnpack_pays_off() is bool(expected)
        assert cs.accelerate(nn.Conv2d(4, 4, 3, padding=1)) == expected
    assert cs.accelerate(nn.Conv2d(4, 4, 3, padding=1), force=True) == 1  # tests and benchmarks

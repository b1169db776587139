"""What makes the CPU path fast: allocator settings, NNPACK Winograd convolutions, a Winograd weight gradient.

Measured on the project's 2-core machines (docs/benchmarks.md), three things dominate a CPU forward
or training step of these generators, and each has a fix here:

1. **Allocation.** glibc serves blocks over 128 KiB-32 MiB with fresh `mmap`s and unmaps them on
   free, so every large activation is page-faulted in again, every time: a 32 MB copy took 17 ms
   instead of 5. `tune_allocator()` keeps large blocks in the heap (process-wide; glibc only).
2. **Dense stride-1 convolutions** (3x3, 7x7): oneDNN's direct kernels run at about 72 GFLOP/s on
   AVX2 CPUs; NNPACK's Winograd/FFT kernels do the same work in a third to a half of the time,
   but only one image at a time (its batched algorithm is slower than oneDNN). `accelerate()`
   routes such convs through NNPACK, per image, for the forward pass and for the input gradient
   (a stride-1 conv's input gradient is a stride-1 conv of the output gradient with the flipped,
   transposed kernel).
3. **Weight gradients** of 3x3 convs, which NNPACK cannot compute through torch: a Winograd
   F(3x3, 4x4) correlation (`winograd_weight_grad`): 2.25 multiplies per pixel and channel pair
   instead of 9, as one batched matrix product over the 36 transform points. Relative error about
   5e-6 of the largest entry in fp32 (oneDNN's is about 1e-6): far below what Adam can see.

Everything is checked before use (`nnpack_usable` compares NNPACK with `F.conv2d` once) and any
convolution whose NNPACK call fails falls back to the default path for good. On AVX-512 CPUs oneDNN's own
kernels are faster than NNPACK's AVX2 ones, and 2 and 3 stay off (`nnpack_pays_off`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

# NNPACK pays off from this feature-map size on (measured: 32x32 with 512 channels is 1.7x faster
# than oneDNN, 16x16 is not); smaller maps stay on the default path.
NNPACK_MIN_PIXELS = 32 * 32
# Batches of maps up to this size go through NNPACK as one stacked image (measured: 512 ch at 32x32,
# 4 images, 1.45x faster than one call per image; 128x128 and larger, no gain).
STACK_MAX_PIXELS = 64 * 64
# The Winograd weight gradient wins when the channel product is large (measured: 64x128 channels
# 1.9x, 32x64 slower: the transforms dominate).
WINOGRAD_MIN_CHANNEL_PRODUCT = 4096
WINOGRAD_TILE = 4  # output-gradient tile side m: F(3x3, 4x4), 6x6 transform points

_ALLOCATOR_TUNED: bool | None = None
_NNPACK_STATE: bool | None = None


# ---- allocator ------------------------------------------------------------------------------------


def tune_allocator() -> bool:
    """Keep large freed blocks in the process heap instead of returning them to the OS (glibc only).

    Sets `M_MMAP_THRESHOLD` to 1 GiB (blocks up to that size come from the heap) and
    `M_TRIM_THRESHOLD` to 2 GiB (free memory at the heap top is kept up to that size), so the
    activations of the next forward pass reuse already-mapped pages. Safe to call repeatedly;
    returns whether the settings are in effect.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        try:
            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            mallopt = getattr(libc, "mallopt", None)
            if mallopt is not None:
                m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
                _ALLOCATOR_TUNED = bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, -1))
        except (OSError, AttributeError, TypeError):
            _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


# ---- NNPACK ----------------------------------------------------------------------------------------


def nnpack_usable() -> bool:
    """Whether NNPACK convolution exists here and agrees with the plain convolution (checked once)."""
    global _NNPACK_STATE
    if _NNPACK_STATE is None:
        _NNPACK_STATE = False
        try:
            # `_nnpack_available()` also initializes the library; calls fail without it.
            if torch._nnpack_available():
                g = torch.Generator().manual_seed(0)
                x = torch.randn(1, 8, 20, 20, generator=g)
                w = torch.randn(4, 8, 3, 3, generator=g)
                b = torch.randn(4, generator=g)
                with torch.no_grad():
                    got = torch._nnpack_spatial_convolution(x, w, b, [1, 1])
                    ref = F.conv2d(x, w, b, padding=1)
                _NNPACK_STATE = bool(torch.allclose(got, ref, atol=1e-3, rtol=1e-3))
        except (RuntimeError, AttributeError):
            _NNPACK_STATE = False
    return _NNPACK_STATE


def _nnpack(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: list[int]) -> torch.Tensor:
    # [N, Ci, H, W] -> [N, Co, H', W'], stride 1, zero padding. NNPACK's single-image algorithm is
    # the fast one (its batched one is 2x slower for 4 images at 64x64, 256 ch), and it transforms
    # the kernel on every call: small maps are therefore stacked into one tall image, large ones
    # go one by one.
    x = x.contiguous()
    n = x.shape[0]
    if n == 1:
        return torch._nnpack_spatial_convolution(x, w, b, padding)
    if x.shape[-1] * x.shape[-2] <= STACK_MAX_PIXELS:
        return _nnpack_stacked(x, w, b, padding)
    return torch.cat([torch._nnpack_spatial_convolution(x[i:i + 1], w, b, padding) for i in range(n)])


def _nnpack_stacked(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: list[int]) -> torch.Tensor:
    """One NNPACK call for a batch: the images one above the other, `ph` zero rows between them.

    A stride-1 conv with zero padding ph reads at most ph rows beyond an image, which are then
    zeros, exactly as if the image were alone; and its ho = h + 2ph - kh + 1 <= h + ph output rows
    start at the image's own first row, so no output mixes two images.
    """
    n, c, h, wd = x.shape
    ph = padding[0]
    kh = w.shape[-2]
    canvas = torch.empty(c, n, h + ph, wd, dtype=x.dtype, device=x.device)  # [Ci, N, H + ph, W]
    if ph:
        canvas[:, :, h:].zero_()
    canvas[:, :, :h].copy_(x.transpose(0, 1))
    out = torch._nnpack_spatial_convolution(canvas.view(1, c, n * (h + ph), wd), w, b, padding)[0]
    co, rows, wo = out.shape  # rows = N (h + ph) + ph - kh + 1
    ho = h + 2 * ph - kh + 1
    per_image = out.as_strided((n, co, ho, wo), ((h + ph) * wo, rows * wo, wo, 1))
    return per_image.contiguous()


# ---- Winograd weight gradient ------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _winograd_matrices(k: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact (rational) matrices of the correlation F(k, m): k outputs of an m-tap filter over n = m + k - 1 inputs.

    Toom-Cook at the points 0, 1, -1, 2, -2, 1/2, ... and infinity: with Vandermonde matrices
    Bc (n x k) and Gc (n x m) and the interpolation matrix Ac = V^-1 (n x n), the correlation
    y[j] = sum_i g[i] d[i + j] is y = Bc^T [(Gc g) * (Ac^T d)] (the transpose of Toom-Cook's linear
    convolution). Returns (Bc^T [k, n], Gc [n, m], Ac^T [n, n]) in float64.
    """
    n = m + k - 1
    pts = [Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2),
           Fraction(3), Fraction(-3)][: n - 1]
    if len(pts) < n - 1:
        raise ValueError(f"no Winograd points for k={k}, m={m}")

    def vander(cols: int) -> list[list[Fraction]]:
        return [[p ** j for j in range(cols)] for p in pts] + [[Fraction(0)] * (cols - 1) + [Fraction(1)]]

    v = vander(n)
    aug = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(v)]
    for c in range(n):  # Gauss-Jordan in exact arithmetic
        p = next(r for r in range(c, n) if aug[r][c] != 0)
        aug[c], aug[p] = aug[p], aug[c]
        aug[c] = [e / aug[c][c] for e in aug[c]]
        for r in range(n):
            if r != c and aug[r][c] != 0:
                f = aug[r][c]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[c])]
    ac = [row[n:] for row in aug]

    def t(rows: list[list[Fraction]]) -> torch.Tensor:
        return torch.tensor([[float(e) for e in row] for row in rows], dtype=torch.float64)

    return t(vander(k)).T.contiguous(), t(vander(m)), t(ac).T.contiguous()


@lru_cache(maxsize=None)
def _winograd_kron(k: int, m: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out_1d, filter_1d, in_1d = _winograd_matrices(k, m)
    # 2-D transforms as single matrices over flattened tiles: input n*n, filter m*m, output k*k.
    return (torch.kron(in_1d, in_1d).to(dtype), torch.kron(filter_1d, filter_1d).to(dtype),
            torch.kron(out_1d, out_1d).to(dtype))


def winograd_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, k: int, padding: tuple[int, int],
                         m: int = WINOGRAD_TILE) -> torch.Tensor:
    """Gradient of `conv2d(x, W, stride=1, padding)` with respect to W `[Co, Ci, k, k]`.

    x `[N, Ci, H, W]`, grad_out `[N, Co, Ho, Wo]` (any values, same dtype). The output gradient is
    cut into m x m tiles (zero-padded at the far edges); each tile and its (m+k-1)^2 input window
    are transformed (a small stride-m convolution does the gathering and the transform at once),
    multiplied point by point over the channels as n^2 batched matrix products, and the sum is
    transformed back to k x k.
    """
    in_t, f_t, out_t = _winograd_kron(k, m, x.dtype)  # [n², n²], [n², m²], [k², n²]
    n = m + k - 1
    batch, ci = x.shape[:2]
    co, ho, wo = grad_out.shape[1:]
    th, tw = -(-ho // m), -(-wo // m)
    go = F.pad(grad_out, (0, tw * m - wo, 0, th * m - ho))
    ph, pw = padding
    hp, wp = th * m + k - 1, tw * m + k - 1
    xp = F.pad(x, (pw, wp - x.shape[3] - pw, ph, hp - x.shape[2] - ph))
    # [N*Ci, 1, hp, wp] -> [N, Ci, n², th*tw]: every tile's input window, transformed
    v = F.conv2d(xp.reshape(batch * ci, 1, hp, wp), in_t.view(n * n, 1, n, n), stride=m).view(batch, ci, n * n, th * tw)
    # [N*Co, 1, th*m, tw*m] -> [N, Co, n², th*tw]: every output-gradient tile, transformed
    u = F.conv2d(go.reshape(batch * co, 1, th * m, tw * m), f_t.view(n * n, 1, m, m), stride=m).view(batch, co, n * n, th * tw)
    acc = torch.zeros(n * n, co, ci, dtype=x.dtype, device=x.device)
    for i in range(batch):  # [n², Co, T] @ [n², T, Ci], strided views: no copies
        acc.baddbmm_(u[i].transpose(0, 1), v[i].permute(1, 2, 0))
    return (out_t @ acc.view(n * n, co * ci)).view(k, k, co, ci).permute(2, 3, 0, 1).contiguous()


# ---- the convolution -----------------------------------------------------------------------------


class _FastConv2d(torch.autograd.Function):
    """Stride-1 zero-padded conv: NNPACK forward and input gradient, Winograd or oneDNN weight gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                padding: tuple[int, int]) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return _nnpack(x, weight.contiguous(), bias, list(padding))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        go = grad_out.contiguous()
        k = weight.shape[-1]
        ph, pw = ctx.padding
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = ctx.has_bias and ctx.needs_input_grad[2]
        gx = gw = gb = None
        if want_x:
            flipped = weight.flip(-1, -2).transpose(0, 1).contiguous()  # [Ci, Co, kh, kw]
            try:
                gx = _nnpack(go, flipped, None, [weight.shape[-2] - 1 - ph, k - 1 - pw])
            except RuntimeError:
                gx = None
        use_winograd = (want_w and weight.shape[-2:] == (3, 3)
                        and weight.shape[0] * weight.shape[1] >= WINOGRAD_MIN_CHANNEL_PRODUCT)
        if use_winograd:
            gw = winograd_weight_grad(x, go, 3, (ph, pw))
        need_x_plain = want_x and gx is None
        if need_x_plain or (want_w and gw is None) or want_b:
            gx2, gw2, gb = torch.ops.aten.convolution_backward(
                go, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [ph, pw], [1, 1], False, [0, 0], 1,
                [need_x_plain, want_w and gw is None, want_b])
            gx = gx2 if need_x_plain else gx
            gw = gw2 if gw is None else gw
        return gx, gw, gb, None


def _eligible(conv: nn.Module) -> bool:
    # Any Conv2d, including spectral-norm parametrized ones (their `weight` is computed on access).
    return (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and conv.kernel_size != (1, 1))


def _fast_forward(conv: nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    plain = conv.forward
    ok = [True]

    def forward(x: torch.Tensor) -> torch.Tensor:
        if (ok[0] and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
                and x.shape[-1] * x.shape[-2] >= NNPACK_MIN_PIXELS
                and not torch.is_autocast_enabled("cpu")):
            weight, bias = conv.weight, conv.bias
            try:
                if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                or (bias is not None and bias.requires_grad)):
                    return _FastConv2d.apply(x, weight, bias, conv.padding)
                return _nnpack(x, weight.detach(), None if bias is None else bias.detach(), list(conv.padding))
            except RuntimeError:
                ok[0] = False
        return plain(x)

    return forward


def nnpack_pays_off() -> bool:
    """Whether NNPACK beats PyTorch's own CPU convolutions here: on CPUs whose best instruction set
    PyTorch uses is AVX2.

    NNPACK's kernels are AVX2 at best. Measured (docs/benchmarks.md): on a 2-core AMD EPYC (AVX2) the
    NNPACK path made the generators' steps about 2x faster; on a 2-core Intel Xeon with AVX-512, where
    oneDNN's kernels use AVX-512, it made them slower (`bench/bench_cpu_kernels.py`, training step and
    forward at 256x256, batch 4: AnimeGANv2 0.94x and 0.90x, White-box 0.75x and 0.76x, Style2paints
    0.67x and 0.60x). The rule is decided by the machine, not by timing, so a straight
    and a resumed run always take the same kernels (exact resume compares bits).
    """
    return nnpack_usable() and torch.backends.cpu.get_cpu_capability() == "AVX2"


def accelerate(model: nn.Module, force: bool = False) -> int:
    """Route `model`'s dense stride-1 convolutions through NNPACK on CPU (training and inference), where
    that pays off (`nnpack_pays_off`; `force`: wherever NNPACK works, for tests and benchmarks).

    Patches `forward` on the conv instances (state dicts, parameters and structure unchanged) and
    returns how many were patched; 0 when NNPACK is not usable or not faster here. Inputs that are not float32
    CPU tensors of at least `NNPACK_MIN_PIXELS` pixels, or that run under autocast, take the plain
    path, as does a conv whose NNPACK call ever fails.
    """
    if not (nnpack_pays_off() or (force and nnpack_usable())):
        return 0
    n = 0
    for conv in model.modules():
        if _eligible(conv) and not getattr(conv, "_animegan_fast", False):
            conv.forward = _fast_forward(conv)
            conv._animegan_fast = True
            n += 1
    return n


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles), as PyTorch's CPU feature
    detection (cpuinfo) reports it: there oneDNN's bf16 convolutions run about twice as fast as fp32; elsewhere
    bf16 is emulated and slower, so `--precision auto` stays fp32."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(cpu, name, lambda: False)() for name in probes)
    except RuntimeError:
        return False


def emulated_bf16_warning(option: str) -> str | None:
    """None on a CPU that computes bf16 natively; else the one line to say to a user who asked for bf16
    explicitly (`option`, as typed): oneDNN then emulates it, many times slower than fp32 (on an AVX2 EPYC:
    VGG19 at 224 px 85x, docs/benchmarks.md). `auto` never picks it there; the user's choice still stands."""
    if native_cpu_bf16():
        return None
    return (f"{option}: this CPU has no native bf16 (AVX512-BF16 or AMX), so it is emulated and runs many times "
            f"slower than fp32 here")

"""Differentiable guided filter (He et al.), used by White-box Cartoonization.

The filter smooths `x` while keeping the edges of `guide`: inside every (2r+1)^2 window the output
is a linear function a * guide + b fitted to `x` by ridge regression (`eps` is the ridge weight).
This is the per-channel form the White-box reference uses: each channel of `x` is regressed on the
matching channel of `guide` (or on the single guide channel when the guide is grayscale).

Windows are clipped at the image border and means are taken over the pixels actually inside,
so borders are not darkened; the box mean is two separable 1-D average pools with
`count_include_pad=False`, which gives exactly that normalization without the precision loss
of large cumulative sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, clipped to the image. `[N, C, H, W]` -> same."""
    if r <= 0:
        return x
    k = 2 * r + 1
    # A clipped window is a rectangle, so its mean factors into a vertical and a horizontal mean.
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, k), stride=1, padding=(0, r), count_include_pad=False)


def guided_filter(x: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Filter `x` `[N, C, H, W]` guided by `guide` `[N, C or 1, H, W]`; returns `[N, C, H, W]`.

    Values are used as given (the White-box parameters assume images in [-1, 1]). Computed, and
    returned, in float32 even under autocast: the variance is a difference of means that fp16 would
    cancel away, and the losses computed from the result are float32 too.
    """
    if x.dim() != 4 or guide.dim() != 4:
        raise ValueError(f"guided_filter expects [N, C, H, W] tensors, got {tuple(x.shape)} and {tuple(guide.shape)}")
    if guide.shape[0] != x.shape[0] or guide.shape[-2:] != x.shape[-2:] or guide.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"guide {tuple(guide.shape)} does not match x {tuple(x.shape)}")
    if r < 0 or eps <= 0:
        raise ValueError(f"guided_filter needs r >= 0 and eps > 0, got r={r}, eps={eps}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        g = guide.float()
        mean_g = box_mean(g, r)
        mean_x = box_mean(x, r)
        cov_gx = box_mean(g * x, r) - mean_g * mean_x
        var_g = box_mean(g * g, r) - mean_g * mean_g
        a = cov_gx / (var_g + eps)
        b = mean_x - a * mean_g
        return box_mean(a, r) * g + box_mean(b, r)

"""Surface, structure and texture representations on small real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.training.representations import (
    TEXTURE_WEIGHT_RANGES,
    StructureOptions,
    StructurePool,
    random_gray_weights,
    segment_mean_colors,
    structure_image,
    superpixel_labels,
    surface,
    tensor_to_uint8,
    texture,
    uint8_to_tensor,
)
from tests.conftest import skimage_photo


def _photo(size=64) -> np.ndarray:
    return skimage_photo("astronaut", size)[:size, :size]


def _high_freq_energy(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def test_surface_is_smoother_than_input():
    x = uint8_to_tensor(_photo()[None])
    s = surface(x)
    assert s.shape == x.shape
    assert _high_freq_energy(s) < 0.7 * _high_freq_energy(x)
    # edge-preserving: closer to the photo than a plain box blur of the same radius
    from pipelines.models.guided_filter import box_mean

    assert (s - x).abs().mean() < 0.8 * (box_mean(x, 5) - x).abs().mean()


@pytest.mark.parametrize("options", [StructureOptions(), StructureOptions(method="felzenszwalb")])
def test_structure_constant_inside_each_segment(options):
    img = _photo()
    labels = superpixel_labels(img, options)
    out = segment_mean_colors(img, labels)
    assert out.shape == img.shape and out.dtype == np.uint8
    n = len(np.unique(labels))
    assert 5 < n < img.shape[0] * img.shape[1] / 4
    for lab in np.unique(labels):
        region = out[labels == lab]
        assert (region == region[0]).all()
        mean = img[labels == lab].astype(np.float64).mean(axis=0)
        assert np.abs(region[0] - mean).max() <= 0.5 + 1e-9
    # fewer distinct colours than the photo: the representation flattens regions
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= n
    np.testing.assert_array_equal(structure_image(img, options), out)


def test_structure_pool_matches_direct_and_counts_cost():
    imgs = np.stack([_photo(), skimage_photo("chelsea", 64)[:64, :64]])
    x = uint8_to_tensor(imgs)
    np.testing.assert_array_equal(tensor_to_uint8(x), imgs)
    pool = StructurePool(workers=2)
    try:
        got = pool.submit(x).result()
    finally:
        pool.close()
    want = uint8_to_tensor(np.stack([structure_image(im) for im in imgs]))
    assert got.shape == (2, 3, 64, 64)
    assert torch.equal(got, want)
    assert pool.images == 2 and pool.seconds > 0


def test_texture_weights_in_range_and_gray():
    g = torch.Generator().manual_seed(0)
    w = random_gray_weights(500, generator=g)
    assert torch.allclose(w.sum(1), torch.ones(500))
    raw_lo = {c: lo for c, (lo, hi) in TEXTURE_WEIGHT_RANGES.items()}
    raw_hi = {c: hi for c, (lo, hi) in TEXTURE_WEIGHT_RANGES.items()}
    # after normalization each weight stays within the ranges scaled by the possible sums
    smin, smax = sum(raw_lo.values()), sum(raw_hi.values())
    for i, c in enumerate("rgb"):
        assert (w[:, i] >= raw_lo[c] / smax - 1e-6).all() and (w[:, i] <= raw_hi[c] / smin + 1e-6).all()
    assert w[:, 0].std() > 0.01  # actually random
    assert (w[:, 1] > w[:, 0]).all() and w[:, 0].mean() > w[:, 2].mean()

    x = uint8_to_tensor(_photo()[None])
    t = texture(x, w[:1])
    assert t.shape == (1, 1, 64, 64)
    assert t.min() >= -1 - 1e-5 and t.max() <= 1 + 1e-5
    # a gray input stays the same gray whatever the weights
    gray = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(texture(gray, w[:2]), torch.full((2, 1, 8, 8), 0.3), atol=1e-6)


def test_structure_process_pool_matches_threads():
    imgs = np.stack([_photo(32), skimage_photo("coffee", 32)[:32, :32]])
    x = uint8_to_tensor(imgs)
    pool = StructurePool(workers=1, kind="process")
    try:
        got = pool.compute(x)
    finally:
        pool.close()
    assert torch.equal(got, uint8_to_tensor(np.stack([structure_image(im) for im in imgs])))

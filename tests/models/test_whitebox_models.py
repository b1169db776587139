"""White-box generator and discriminators: size, shapes, spectral norm."""

from __future__ import annotations

import torch

from pipelines.models.whitebox import (
    GENERATOR_PARAMS,
    WhiteboxGenerator,
    count_parameters,
    surface_discriminator,
    texture_discriminator,
)


def test_generator_parameter_count():
    assert GENERATOR_PARAMS == 1_467_075
    assert count_parameters(WhiteboxGenerator()) == 1_467_075


def test_generator_shapes_and_no_normalization():
    g = WhiteboxGenerator()
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm))
                   for m in g.modules())
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    assert g(x).shape == (2, 3, 32, 48)


def test_generator_skips_are_added():
    # zeroing the bottleneck leaves a non-zero output only because the skips carry the input forward
    g = WhiteboxGenerator()
    with torch.no_grad():
        for p in list(g.enc2a.parameters()) + list(g.enc2b.parameters()) + list(g.blocks.parameters()) + list(g.dec2.parameters()):
            p.zero_()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    y1, y2 = g(x), g(-x)
    assert not torch.allclose(y1, y2)


def test_discriminators_patch_outputs_and_spectral_norm():
    ds, dt = surface_discriminator(), texture_discriminator()
    assert ds(torch.rand(2, 3, 64, 64)).shape == (2, 1, 8, 8)
    assert dt(torch.rand(2, 1, 64, 64)).shape == (2, 1, 8, 8)
    keys = dt.state_dict().keys()
    assert sum(k.endswith("parametrizations.weight.original") for k in keys) == 7
    # spectral norm bounds each conv's weight norm by 1 after power iteration settles
    dt.train()
    for _ in range(20):
        dt(torch.rand(1, 1, 32, 32))
    conv = dt.net[0]
    w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2) < 1.05

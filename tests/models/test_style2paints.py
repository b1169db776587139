"""Style2paints V1 networks, the fc1 VGG, the discriminator's targets and the training samples' variation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.data.references import jitter_colours, tps_maps, tps_warp
from pipelines.data.sketches import vary_sketch, xdog
from pipelines.models.style2paints import (ACDiscriminator, ColorizerModel, GuideDecoders, Style2PaintsGenerator,
                                           pad_to_multiple, style_target)
from pipelines.models.vgg import VGG19Fc1, build_vgg_fc1, load_vgg_file
from pipelines.errors import InputError

from conftest import anime_like, skimage_photo


@pytest.fixture(scope="module")
def generator() -> Style2PaintsGenerator:
    torch.manual_seed(0)
    return Style2PaintsGenerator().eval()


def test_generator_layout_follows_the_paper(generator):
    enc = [level[0].out_channels for level in generator.encoder]
    assert enc == [16, 32, 64, 128, 256]
    assert generator.to_bottleneck[0].out_channels == 2048 and generator.style.in_features == 4096
    assert generator.decoder[0][0].in_channels == 512 + 256  # 16x16x(512+256) at the first level
    x, s = torch.rand(2, 1, 256, 256) * 2 - 1, torch.rand(2, 4096)
    with torch.no_grad():
        out, encoded, first = generator(x, s, guides=True)
        b = generator.to_bottleneck(encoded)
    assert out.shape == (2, 3, 256, 256) and out.abs().max() <= 1
    assert encoded.shape == (2, 256, 16, 16) and first.shape == (2, 512, 16, 16) and b.shape == (2, 2048, 8, 8)
    g1, g2 = GuideDecoders()(encoded, first)
    assert g1.shape == (2, 1, 256, 256) and g2.shape == (2, 3, 256, 256)
    assert sum(p.numel() for p in generator.parameters()) == 26_871_555


@pytest.mark.parametrize("h,w", [(33, 47), (64, 64), (5, 130), (100, 31)])
def test_colorizer_model_takes_odd_sizes_and_pads_with_paper(generator, h, w):
    model = ColorizerModel(generator)
    x = torch.rand(1, 1, h, w) * 2 - 1
    with torch.no_grad():
        y = model(x, torch.rand(1, 4096))
    assert y.shape == (1, 3, h, w) and y.abs().max() <= 1
    padded = pad_to_multiple(x)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert torch.equal(padded[..., :h, :w], x) and (padded[..., h:, :] == 1).all() and (padded[..., w:] == 1).all()


def test_style_vector_changes_the_colours(generator):
    x = torch.rand(1, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        a = generator(x, torch.zeros(1, 4096))
        b = generator(x, torch.rand(1, 4096) * 5)
    assert (a - b).abs().mean() > 1e-2  # the style path reaches the output from the start (He init)


def test_guide_1_is_blind_to_the_style_and_guide_2_is_not(generator):
    x = torch.rand(1, 1, 64, 64) * 2 - 1
    guides = GuideDecoders().eval()
    with torch.no_grad():
        _, enc_a, first_a = generator(x, torch.zeros(1, 4096), guides=True)
        _, enc_b, first_b = generator(x, torch.rand(1, 4096) * 5, guides=True)
        (g1a, g2a), (g1b, g2b) = guides(enc_a, first_a), guides(enc_b, first_b)
    assert torch.equal(g1a, g1b)  # guide 1 reads the encoder before the style is added
    assert (g2a - g2b).abs().mean() > 1e-3


def test_style_standardization_is_fitted_kept_and_absent_in_older_files():
    torch.manual_seed(1)
    g = Style2PaintsGenerator().eval()
    vectors = torch.rand(32, 4096) * torch.linspace(0.1, 3, 4096) + 7.0  # a large common part, small differences
    g.set_style_statistics(vectors)
    standardized = (vectors - g.style_mean) * g.style_scale
    assert standardized.mean(0).abs().max() < 1e-4 and (standardized.std(0) - 1).abs().max() < 1e-3
    dead = vectors.clone()
    dead[:, 0] = 3.0  # a unit that never varies is not blown up
    g.set_style_statistics(dead)
    assert float(g.style_scale[0]) < 100 * float(g.style_scale[1:].mean())
    # The statistics travel with the weights; a file from before them loads as the identity.
    sd = g.state_dict()
    assert "style_mean" in sd and "style_scale" in sd
    old = {k: v for k, v in sd.items() if k not in ("style_mean", "style_scale")}
    h = Style2PaintsGenerator()
    h.load_state_dict(old)
    assert torch.equal(h.style_mean, torch.zeros(4096)) and torch.equal(h.style_scale, torch.ones(4096))


def test_style_targets():
    v = torch.tensor([[0.0, 2.0, 4.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    t = style_target(v, "max")
    assert torch.allclose(t, torch.tensor([[0.0, 0.5, 1.0, 0.25], [1.0, 0, 0, 0]]), atol=1e-5)
    l2 = style_target(v, "l2")
    assert torch.allclose(l2.norm(dim=1), torch.ones(2), atol=1e-5)
    assert style_target(torch.zeros(1, 4)).abs().max() == 0  # no division by zero
    with pytest.raises(ValueError):
        style_target(v, "sum")
    assert ACDiscriminator()(torch.rand(3, 3, 64, 64)).shape == (3, 4096)


def test_vgg_fc1_random_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a = build_vgg_fc1("random")
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_vgg_fc1("random")
    assert a.fingerprint() == b.fingerprint()
    img = torch.from_numpy(skimage_photo("astronaut", 120)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        v = a(img)
    assert v.shape == (1, 4096) and (v >= 0).all() and 0.2 < (v > 0).float().mean() < 0.8  # ReLU'd, calibrated
    assert not any(p.requires_grad for p in a.parameters())


def test_vgg_fc1_file_needs_the_classifier(tmp_path):
    model = VGG19Fc1()
    features_only = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    path = tmp_path / "vgg19-features.pth"
    torch.save({f"module.{k}": v for k, v in features_only.items()}, path)
    with pytest.raises(InputError, match=r"missing 2 of 34 tensors \(first: classifier.0.weight"):
        load_vgg_file(model, path)


def test_varied_sketches_differ_per_sample_and_repeat_per_seed():
    img = anime_like(skimage_photo("chelsea", 96))
    a = vary_sketch(img, np.random.default_rng(1))
    assert a.shape == img.shape[:2] and a.dtype == np.uint8
    assert np.array_equal(a, vary_sketch(img, np.random.default_rng(1)))  # same key, same sample
    styles = [vary_sketch(img, np.random.default_rng(s)) for s in range(12)]
    ink = [(255 - s.astype(int)).sum() for s in styles]
    assert max(ink) > 1.5 * min(ink)  # thickness, eps and intensity vary the amount of ink
    assert len({s.min() for s in styles}) > 3  # line intensity varies (pencil grey to black)
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert all((vary_sketch(flat, np.random.default_rng(s)) == 255).all() for s in range(5))  # no lines on flat areas


def test_recorded_sketch_is_used_some_of_the_time():
    img = anime_like(skimage_photo("coffee", 64))
    recorded = np.full(img.shape, 255, np.uint8)
    recorded[:, 30:32] = 0  # a sketch no XDoG would draw
    used = [vary_sketch(img, np.random.default_rng(s), recorded)[:, 30].max() < 255 and
            (vary_sketch(img, np.random.default_rng(s), recorded)[:, :20] == 255).all() for s in range(40)]
    assert 8 < sum(used) < 32  # about half


def test_tps_identity_and_warp():
    rng = np.random.default_rng(0)
    mx, my = tps_maps(40, 56, rng, shift=0.0)
    assert np.allclose(mx, np.arange(56)[None, :], atol=1e-3) and np.allclose(my, np.arange(40)[:, None], atol=1e-3)
    img = skimage_photo("astronaut", 96)
    warped = tps_warp(img, np.random.default_rng(3))
    assert warped.shape == img.shape
    diff = np.abs(warped.astype(int) - img.astype(int)).mean()
    assert diff > 5  # positions moved
    assert abs(warped.mean() - img.mean()) < 10  # the same content, moved
    jittered = jitter_colours(img, np.random.default_rng(4))
    assert jittered.shape == img.shape and not np.array_equal(jittered, img)
    # same layout: the edges stay where they were
    assert np.corrcoef(xdog(jittered).ravel() < 128, xdog(img).ravel() < 128)[0, 1] > 0.4


def test_the_recipe_trains_d_towards_fc1_targets_and_g_towards_the_references(tmp_path):
    """D: real illustrations -> norm(V(illustration)), generated -> 0; G's adversarial term -> norm(V(reference))."""
    import torch.nn.functional as F

    from pipelines.training.config import TrainConfig
    from pipelines.training.loop import resolve_config
    from pipelines.training.recipes.base import Update
    from pipelines.training.recipes.style2paints import Style2PaintsRecipe

    from conftest import build_illustration_dataset

    ds = build_illustration_dataset(tmp_path / "ds", size=64)
    config = resolve_config(overrides={"dataset": str(ds.root), "model": "style2paints", "out": str(tmp_path / "run"),
                                       "reference": "augmented", "vgg_weights": "random"})
    assert isinstance(config, TrainConfig)
    recipe = Style2PaintsRecipe(config)
    torch.manual_seed(0)
    nets = {**recipe.build_networks(), **recipe.build_frozen(torch.device("cpu"), lambda m: None)}
    batch = {"illustration": torch.rand(2, 3, 64, 64) * 2 - 1, "reference": torch.rand(2, 3, 64, 64) * 2 - 1,
             "sketch": torch.rand(2, 1, 64, 64) * 2 - 1}
    ctx: dict = {}
    with torch.no_grad():
        d_terms = recipe.losses("gan", Update("d"), nets, batch, ctx)
        g_terms = recipe.losses("gan", Update("g"), nets, batch, ctx)
        v_real, v_ref = nets["vgg_fc1"](batch["illustration"]), nets["vgg_fc1"](batch["reference"])
        fake = nets["generator"](batch["sketch"], v_ref)
        d = nets["discriminator"]
        # The log-likelihood distance, logged as a KL divergence: cross-entropy minus the targets' own entropy.
        def entropy(t):
            t = t.clamp(1e-6, 1 - 1e-6)
            return -(t * t.log() + (1 - t) * (1 - t).log()).mean()

        want_real = F.binary_cross_entropy_with_logits(d(batch["illustration"]), style_target(v_real)) - entropy(style_target(v_real))
        want_fake = F.binary_cross_entropy_with_logits(d(fake), torch.zeros(2, 4096)) - entropy(torch.zeros(2, 4096))
        want_g = 0.01 * (F.binary_cross_entropy_with_logits(d(fake), style_target(v_ref)) - entropy(style_target(v_ref)))
    assert torch.allclose(d_terms["d_real"], want_real, rtol=1e-4) and torch.allclose(d_terms["d_fake"], want_fake, rtol=1e-4)
    assert torch.allclose(g_terms["g_adv"], want_g, rtol=1e-4)
    assert not torch.allclose(style_target(v_real), style_target(v_ref))  # the two targets really differ here
    assert set(g_terms) == {"l1", "guide1", "guide2", "g_adv"}

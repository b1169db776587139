"""Generators, discriminator, inference wrapper, VGG19: sizes, parameter counts, the community
AnimeGANv2 layout and forward, and the three `--vgg-weights` modes."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from pipelines.errors import InputError, TrainingError
from pipelines.models import (
    Discriminator,
    GeneratorV1,
    GeneratorV2,
    InferenceModel,
    build_generator,
    build_vgg,
    count_parameters,
)
from pipelines.models import vgg as vgg_module
from pipelines.models.weights import load_generator




# ---- parameter counts (FACTS section 3) ---------------------------------------------------------


@pytest.mark.parametrize(
    "make, expected",
    [
        (GeneratorV1, 3_956_096),
        (GeneratorV2, 2_143_552),
        (lambda: Discriminator("instance"), 1_128_800),
        (lambda: Discriminator("layer"), 1_128_800),
    ],
    ids=["v1", "v2", "disc-instance", "disc-layer"],
)
def test_parameter_counts(make, expected):
    assert count_parameters(make()) == expected


def test_norm_layers_are_standard_modules():
    # Tiled inference finds these by type; the discriminator norms must differ by kind.
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in GeneratorV1().modules())
    assert any(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 1 for m in GeneratorV2().modules())
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in Discriminator("layer").modules())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in Discriminator("instance").modules())


def test_discriminator_is_spectral_normalized_and_outputs_quarter_patches():
    d = Discriminator("layer")
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    assert all(hasattr(c, "parametrizations") and "weight" in c.parametrizations for c in convs)
    assert all(c.bias is None for c in convs)
    out = d(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert out.shape == (2, 1, 8, 12)


# ---- any input size -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["animegan_v1", "animegan_v2"])
@pytest.mark.parametrize("hw", [(1, 1), (5, 9), (33, 47), (40, 24)])
def test_inference_model_keeps_any_size_and_range(arch, hw):
    model = InferenceModel.for_architecture(arch).eval()
    x = torch.rand(2, 3, *hw) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("make", [GeneratorV1, GeneratorV2])
def test_bare_generators_accept_odd_sizes(make):
    with torch.no_grad():
        assert make().eval()(torch.zeros(1, 3, 29, 35)).shape == (1, 3, 29, 35)


def test_inference_model_pads_and_crops_and_applies_postprocess():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["shape"] = tuple(x.shape)
            return x * 3  # goes out of range on purpose: the wrapper must clamp

    def post(inp, out):
        seen["post"] = tuple(inp.shape)
        return out - 0.5

    model = InferenceModel(Probe(), size_multiple=8, min_size=16, postprocess=post)
    x = torch.linspace(-1, 1, 3 * 10 * 20).reshape(1, 3, 10, 20)
    y = model(x)
    assert seen["shape"] == (1, 3, 16, 24) and seen["post"] == (1, 3, 16, 24)
    assert y.shape == (1, 3, 10, 20)
    # Cropping keeps the top-left (unpadded) region; the values are those of the clamped output.
    assert torch.allclose(y, (x * 3 - 0.5).clamp(-1, 1))


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="animegan_v2"):
        build_generator("no_such_arch")


# ---- the community AnimeGANv2 port: key layout and forward -------------------------------------


def _port_layout() -> list[tuple[str, tuple[int, ...]]]:
    """State-dict keys and shapes of bryandlee/animegan2-pytorch's `Generator`, spelled out from its
    layout: ConvNormLReLU = [pad, conv, GroupNorm, LReLU] (indices 0..3), IRB.layers =
    [ConvNormLReLU 1x1, ConvNormLReLU depthwise 3x3 with bias, conv 1x1, GroupNorm]."""
    keys: list[tuple[str, tuple[int, ...]]] = []

    def cnl(prefix, cin, cout, k=3, groups=1, bias=False):
        keys.append((f"{prefix}.1.weight", (cout, cin // groups, k, k)))
        if bias:
            keys.append((f"{prefix}.1.bias", (cout,)))
        keys.append((f"{prefix}.2.weight", (cout,)))
        keys.append((f"{prefix}.2.bias", (cout,)))

    def irb(prefix, cin, cout):
        mid = cin * 2
        cnl(f"{prefix}.layers.0", cin, mid, k=1)
        cnl(f"{prefix}.layers.1", mid, mid, groups=mid, bias=True)
        keys.append((f"{prefix}.layers.2.weight", (cout, mid, 1, 1)))
        keys.append((f"{prefix}.layers.3.weight", (cout,)))
        keys.append((f"{prefix}.layers.3.bias", (cout,)))

    cnl("block_a.0", 3, 32, k=7)
    cnl("block_a.1", 32, 64)
    cnl("block_a.2", 64, 64)
    cnl("block_b.0", 64, 128)
    cnl("block_b.1", 128, 128)
    cnl("block_c.0", 128, 128)
    irb("block_c.1", 128, 256)
    irb("block_c.2", 256, 256)
    irb("block_c.3", 256, 256)
    irb("block_c.4", 256, 256)
    cnl("block_c.5", 256, 128)
    cnl("block_d.0", 128, 128)
    cnl("block_d.1", 128, 128)
    cnl("block_e.0", 128, 64)
    cnl("block_e.1", 64, 64)
    cnl("block_e.2", 64, 32, k=7)
    keys.append(("out_layer.0.weight", (3, 32, 1, 1)))
    return keys


def test_generator_v2_state_dict_matches_the_port():
    ours = {k: tuple(v.shape) for k, v in GeneratorV2().state_dict().items()}
    assert ours == dict(_port_layout())
    assert sum(torch.Size(s).numel() for _, s in _port_layout()) == 2_143_552


def _random_port_state_dict() -> dict[str, torch.Tensor]:
    sd = {}
    for key, shape in _port_layout():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape) * (1.0 / fan_in) ** 0.5
        elif key.endswith("weight"):  # GroupNorm scale
            sd[key] = 1 + 0.1 * torch.randn(shape)
        else:
            sd[key] = 0.1 * torch.randn(shape)
    return sd


def _reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The port's forward written with torch.nn.functional only (align_corners=True upsampling)."""

    def cnl(prefix, h, k=3, stride=1, pad=(1, 1, 1, 1), groups=1):
        h = F.pad(h, pad, mode="reflect")
        h = F.conv2d(h, sd[f"{prefix}.1.weight"], sd.get(f"{prefix}.1.bias"), stride=stride, groups=groups)
        h = F.group_norm(h, 1, sd[f"{prefix}.2.weight"], sd[f"{prefix}.2.bias"], eps=1e-5)
        return F.leaky_relu(h, 0.2)

    def irb(prefix, h):
        mid = sd[f"{prefix}.layers.0.1.weight"].shape[0]
        out = cnl(f"{prefix}.layers.0", h, pad=(0, 0, 0, 0))
        out = cnl(f"{prefix}.layers.1", out, groups=mid)
        out = F.conv2d(out, sd[f"{prefix}.layers.2.weight"])
        out = F.group_norm(out, 1, sd[f"{prefix}.layers.3.weight"], sd[f"{prefix}.layers.3.bias"], eps=1e-5)
        return h + out if h.shape[1] == out.shape[1] else out

    h = cnl("block_a.0", x, pad=(3, 3, 3, 3))
    h = cnl("block_a.1", h, stride=2, pad=(0, 1, 0, 1))
    h = cnl("block_a.2", h)
    half = h.shape[-2:]
    h = cnl("block_b.0", h, stride=2, pad=(0, 1, 0, 1))
    h = cnl("block_b.1", h)
    h = cnl("block_c.0", h)
    for i in range(1, 5):
        h = irb(f"block_c.{i}", h)
    h = cnl("block_c.5", h)
    h = F.interpolate(h, size=half, mode="bilinear", align_corners=True)
    h = cnl("block_d.1", cnl("block_d.0", h))
    h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=True)
    h = cnl("block_e.2", cnl("block_e.1", cnl("block_e.0", h)), pad=(3, 3, 3, 3))
    return torch.tanh(F.conv2d(h, sd["out_layer.0.weight"]))


def test_community_v2_file_loads_and_matches_the_reference_forward(tmp_path: Path, photo_files):
    from pipelines.fileio import read_image

    sd = _random_port_state_dict()
    weights = tmp_path / "paprika.pt"
    torch.save(sd, weights)  # community files are plain state dicts

    rgb = read_image(photo_files[0])[:64, :72]  # a real photo crop, 64 x 72
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, 64, 72] in [-1, 1]

    loaded = load_generator(weights)
    assert loaded.arch == "animegan_v2" and loaded.info["format"] == "community"
    with torch.no_grad():
        # the bare network: the inference wrapper adds a reflect margin (test_image_edges_are_stylized_...)
        ours = loaded.model.generator(x).clamp(-1, 1)
        ref = _reference_forward(sd, x).clamp(-1, 1)
        assert loaded.model(x).shape == (1, 3, 64, 72)
    assert ours.shape == (1, 3, 64, 72)
    assert float(ref.std()) > 0.05  # the comparison means something only if the output is not flat
    assert float((ours - ref).abs().max()) * 127.5 <= 2.0  # within 2/255 on the 8-bit scale


# ---- VGG19 --------------------------------------------------------------------------------------


def _torchvision_style_file(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision-format VGG19 state dict (features up to conv4_4 plus a dummy classifier key)."""
    sd: dict[str, torch.Tensor] = {}
    cin = 3
    for idx, cout in zip((0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25),
                         (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512)):
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3) * 0.05
        sd[f"features.{idx}.bias"] = torch.randn(cout) * 0.01
        cin = cout
    sd["features.28.weight"] = torch.randn(512, 512, 3, 3)  # beyond conv4_4: ignored
    sd["classifier.0.weight"] = torch.randn(4, 4)  # classifier: ignored
    torch.save(sd, path)
    return sd


def test_vgg_loads_a_local_torchvision_file(tmp_path: Path):
    path = tmp_path / "vgg19.pth"
    sd = _torchvision_style_file(path)
    vgg = build_vgg(str(path))
    assert torch.equal(vgg.features[25].weight, sd["features.25.weight"])
    assert torch.equal(vgg.features[0].bias, sd["features.0.bias"])
    assert len(vgg.features) == 26 and isinstance(vgg.features[25], torch.nn.Conv2d)
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())

    # Inside: [-1, 1] -> [0, 1] -> ImageNet mean/std, then the features.
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = vgg.features(((x + 1) / 2 - mean) / std)
        out = vgg(x)
    assert out.shape == (1, 512, 2, 3)
    assert torch.allclose(out, expected)
    # conv4_4 is pre-ReLU: some features are negative.
    assert float(out.min()) < 0


def test_vgg_file_missing_feature_keys_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(InputError, match=r"partial\.pth.*missing"):
        build_vgg(path)


def test_vgg_random_says_so():
    messages: list[str] = []
    vgg = build_vgg("random", log=messages.append)
    assert any("RANDOM" in m for m in messages)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_imagenet_offline_names_the_file_to_place(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(TrainingError) as err:
        build_vgg("imagenet")
    message = str(err.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert str(expected) in message
    assert "--vgg-weights PATH" in message and "--vgg-weights random" in message and "\n" not in message
    assert vgg_module.imagenet_weights_path() == expected


def test_vgg_imagenet_uses_the_cached_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    sd = _torchvision_style_file(cached)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    vgg = build_vgg("imagenet")
    assert torch.equal(vgg.features[10].weight, sd["features.10.weight"])


def test_image_edges_are_stylized_as_with_real_context_around_them():
    """A White-box generator pads its convolutions with zeros: without the reflect margin (`edge_pad`) a photo's
    outermost pixels differed from the same pixels stylized inside a larger photo by about 4 levels (random weights;
    10-15 for a trained one): the tinted line along a stylized photo's top and left edges."""
    torch.manual_seed(0)
    model = InferenceModel.for_architecture("whitebox").eval()
    assert model.edge_pad % 4 == 0 and model.edge_pad > 0
    img = cv2.resize(skimage.data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, 160, 160] in [-1, 1]
    with torch.no_grad():
        inside = model(x)[..., 24:-24, 24:-24]  # pixels 24..135 with real context around them
        alone = model(x[..., 24:-24, 24:-24])
    d = (inside - alone).abs().mul(127.5).mean(1)[0]  # [112, 112] levels
    edges = torch.cat([d[:3].flatten(), d[-3:].flatten(), d[:, :3].flatten(), d[:, -3:].flatten()])
    assert float(edges.mean()) <= 2.0
    assert float(d[16:-16, 16:-16].max()) < 0.01  # the inside is what it was
    tiny = torch.rand(1, 3, 5, 7) * 2 - 1  # smaller than the margin: edge replication instead of reflection
    assert model(tiny).shape == tiny.shape

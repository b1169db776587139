"""Mixed precision done right, shown on CPU: loss terms are float32 whatever autocast does, spectral norm's
power iteration too, bf16 only where it is native, and a resume keeps its process count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.errors import TrainingError
from pipelines.models.animegan import Discriminator
from pipelines.models.guided_filter import guided_filter
from pipelines.training import losses as L
from pipelines.training.config import TrainConfig
from pipelines.training.loop import _amp_dtype
from pipelines.training.recipes.animegan import AnimeGANRecipe
from pipelines.training.recipes.whitebox import feature_l1, whitebox_tv

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def features(seed: int, scale: float = 30.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 64, 8, 8, generator=g) * scale  # real VGG conv4_4 features are this large


@pytest.mark.parametrize("name, args", [
    ("gram", (features(0),)),
    ("style_loss", (features(0), features(0) + 0.01 * features(1, 1.0))),  # near-identical: the hard case
    ("content_loss", (features(0), features(1))),
    ("color_loss", (torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1)),
    ("tv_loss", (torch.rand(2, 3, 16, 16),)),
    ("rgb_to_yuv", (torch.rand(2, 3, 16, 16),)),
])
def test_loss_terms_are_float32_under_autocast(name, args):
    fn = getattr(L, name)
    exact = fn(*args)
    with torch.autocast(**BF16):
        got = fn(*args)
        from_bf16 = fn(*(a.bfloat16() for a in args))  # what a bf16 network hands over
    assert got.dtype == torch.float32 and torch.equal(got, exact)
    assert torch.equal(from_bf16, fn(*(a.bfloat16().float() for a in args)))


def test_whitebox_terms_and_guided_filter_are_float32_under_autocast():
    a, b = features(2), features(3)
    x, guide = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    exact = (feature_l1(a, b), whitebox_tv(x), guided_filter(x, guide, 1, 1e-2))
    with torch.autocast(**BF16):
        got = (feature_l1(a, b), whitebox_tv(x), guided_filter(x.bfloat16(), guide.bfloat16(), 1, 1e-2))
    assert torch.equal(got[0], exact[0]) and torch.equal(got[1], exact[1])
    assert got[2].dtype == torch.float32  # not cast back to the generator's bf16
    assert torch.equal(got[2], guided_filter(x.bfloat16().float(), guide.bfloat16().float(), 1, 1e-2))


class NoAutocast(nn.Module):
    """Runs a network in float32 even inside autocast, so that only the recipe's own loss code differs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.autocast("cpu", enabled=False):
            return self.net(x.float())


def test_animegan_recipe_terms_equal_fp32_under_autocast():
    from pipelines.models.vgg import build_vgg

    torch.manual_seed(0)
    cfg = TrainConfig(model="animeganv2", weights={}, lr_init=1e-4, lr_g=1e-4, lr_d=1e-4, batch_size=2, epochs=1, init_epochs=1)
    cfg = cfg.model_copy(update={"weights": AnimeGANRecipe.default_weights("animeganv2", "hayao")})
    recipe = AnimeGANRecipe(cfg)
    # eval: spectral norm's power iteration then leaves u and v alone, so both calls see the same D
    nets = {k: NoAutocast(v).eval() for k, v in recipe.build_networks().items()}
    nets["vgg"] = NoAutocast(build_vgg("random"))
    batch = {k: torch.rand(2, 3, 32, 32) * 2 - 1 for k in ("photo", "style", "smooth")}
    fake = nets["generator"](batch["photo"]).detach()
    for phase, update in (("init", recipe.phases()[0].updates[0]), ("gan", recipe.phases()[1].updates[0]),
                          ("gan", recipe.phases()[1].updates[1])):
        exact = recipe.losses(phase, update, nets, batch, {"fake": fake})
        with torch.autocast(**BF16):
            got = recipe.losses(phase, update, nets, batch, {"fake": fake})
        assert exact.keys() == got.keys()
        for k in exact:
            assert got[k].dtype == torch.float32 and torch.equal(got[k], exact[k]), (phase, update.optimizer, k)


def test_spectral_norm_power_iteration_runs_without_autocast(monkeypatch):
    """CUDA autocast runs `torch.mv` (the power iteration) in half precision; CPU autocast does not, so
    the test records whether autocast was on when the iteration ran, rather than comparing values."""
    seen = []
    real_mv = torch.mv

    def recording_mv(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real_mv(*args, **kwargs)

    monkeypatch.setattr(torch, "mv", recording_mv)
    torch.manual_seed(0)
    d = Discriminator(norm="layer").train()
    with torch.autocast(**BF16):
        out = d(torch.rand(1, 3, 32, 32))
    assert seen and not any(seen)  # every power-iteration product ran with autocast off
    plain = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 3, 3))
    seen.clear()
    with torch.autocast(**BF16):
        plain.weight
    assert seen and all(seen)  # PyTorch's own parametrization would have run it under autocast
    assert out.dtype == torch.bfloat16  # the convolutions themselves still use autocast


def test_amp_auto_uses_native_bf16_only(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    assert _amp_dtype("auto", cuda) == torch.float16
    with pytest.raises(TrainingError, match="compute capability 7.5.*no native bfloat16"):
        _amp_dtype("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100
    assert _amp_dtype("auto", cuda) == torch.bfloat16 and _amp_dtype("fp16", cuda) == torch.float16
    assert _amp_dtype("auto", torch.device("cpu")) is None


def test_bf16_asked_for_on_a_cpu_that_emulates_it_is_said_once(monkeypatch):
    import pipelines.models.cpu_speed as cs

    monkeypatch.setattr(cs, "native_cpu_bf16", lambda: False)
    line = cs.emulated_bf16_warning("--amp bf16")
    assert line.startswith("--amp bf16: this CPU has no native bf16") and "\n" not in line
    monkeypatch.setattr(cs, "native_cpu_bf16", lambda: True)
    assert cs.emulated_bf16_warning("--amp bf16") is None


def test_the_style_vector_is_fp32_under_autocast():
    """Style2paints' VGG19 fc1 ignores autocast: training with --amp sees the vectors colorize computes in fp32
    (and a CPU that emulates bf16 does not run VGG19 at 224 px in it)."""
    from pipelines.models.vgg import VGG19Fc1

    torch.manual_seed(0)
    vgg = VGG19Fc1().eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        plain = vgg(x)
        with torch.autocast(**BF16):
            under = vgg(x)
    assert under.dtype == torch.float32 and torch.equal(under, plain)

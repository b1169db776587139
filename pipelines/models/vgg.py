"""VGG19 up to conv4_4 (before its ReLU), for the content and style losses, and up to fc1 (Style2paints'
style vector); no torchvision needed.

The layers sit at torchvision's indices (`features.0` ... `features.25`), so torchvision's
ImageNet file `vgg19-dcbb9e9d.pth` (or any state dict in its format) loads directly.
`--vgg-weights` accepts `imagenet` (torchvision's cache, downloaded once when missing), a PATH
to a local torchvision-format file, or `random` (explicit, for tests and smoke runs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, TrainingError
from .weights import describe_unloadable

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
# torchvision names its files with the first hex digits of their sha256; the downloader checks them.
VGG19_HASH_PREFIX = "dcbb9e9d"

# torchvision's VGG19 configuration up to conv4_4: channels per conv, "M" for max-pool.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
N_FEATURES = 26  # features[:26]: conv4_4 is index 25, its ReLU (26) is left out

# The rest of the convolutions (conv4_4's ReLU, pool4, conv5_1..conv5_4, pool5: features[26:37]).
_CFG_REST = ("M", 512, 512, 512, 512, "M")
FC1_INPUT = 224  # the reference is seen at ImageNet's size, as fc1 was trained
FC1_FEATURES = 4096
RANDOM_SEED = 0  # `--vgg-weights random` for the fc1 network: the same weights in every process and run

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layers(cfg: tuple, in_ch: int = 3) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = int(v)
    return layers


def _torchvision_init(modules) -> None:
    for m in modules:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class VGG19Features(nn.Module):
    """`[N, 3, H, W]` RGB in [-1, 1] -> conv4_4 pre-ReLU features `[N, 512, H/8, W/8]`."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_layers(_CFG)[:N_FEATURES])
        # torchvision's VGG initialization. PyTorch's default conv init shrinks activations about 3x per
        # layer, so with `--vgg-weights random` conv4_4 features would be ~1e-3 and the content and style
        # terms would vanish; with this init random features keep their scale and still act as a
        # (weak) perceptual loss. Loaded weights replace all of it.
        _torchvision_init(self.features)
        # Not persistent: the state dict then holds exactly torchvision's `features.*` keys.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, H, W] in [-1, 1] -> [0, 1] -> ImageNet-normalized
        x = ((x + 1) * 0.5 - self.mean) / self.std
        return self.features(x)  # [N, 512, H/8, W/8]

    def freeze(self) -> "VGG19Features":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()


class VGG19Fc1(nn.Module):
    """Style2paints' style vector: `[N, 3, H, W]` RGB in [-1, 1] (any size) -> fc1 after its ReLU, `[N, 4096]` >= 0.

    The image is resized to 224x224 (antialiased: references are usually larger), ImageNet-normalized,
    and run through all 16 convolutions, pool5, torchvision's adaptive 7x7 average pool and
    `classifier.0` (+ ReLU). State dict keys are torchvision's (`features.*`, `classifier.0.*`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_layers(_CFG + _CFG_REST))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, FC1_FEATURES))
        _torchvision_init([*self.features, *self.classifier])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, H, W] in [-1, 1] -> [N, 3, 224, 224] ImageNet-normalized
        # Always fp32, whatever autocast is on around it: `colorize` computes style vectors in fp32, so training
        # (--amp) sees the same vectors; and where a CPU has no native bf16, VGG19 at 224 px in autocast bf16 is
        # emulated: 110 s against 1.3 s in fp32 for two references on an AVX2 EPYC (docs/benchmarks.md).
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if x.shape[-2:] != (FC1_INPUT, FC1_INPUT):
                x = F.interpolate(x, size=(FC1_INPUT, FC1_INPUT), mode="bilinear", align_corners=False, antialias=True)
            x = ((x + 1) * 0.5 - self.mean) / self.std
            f = F.adaptive_avg_pool2d(self.features(x), 7)  # [N, 512, 7, 7]
            return F.relu(self.classifier(f.flatten(1)))  # [N, 4096]

    #: set by `build_vgg_fc1("random")`: how the weights were made, fingerprinted instead of their bits
    random_recipe: str | None = None

    def fingerprint(self) -> str:
        """A short hash naming these weights: a colorizer records it, so inference can tell another VGG19 was
        given. Loaded weights: a hash of some of their tensors; random ones: of how they were made."""
        h = hashlib.sha256()
        if self.random_recipe is not None:
            h.update(self.random_recipe.encode())
        else:
            for t in (self.features[0].weight, self.features[0].bias, self.classifier[0].bias):
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def natural_noise(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`[n, 3, size, size]` random images with natural images' statistics, in ImageNet-normalized units.

    Natural images have a power spectrum falling as 1/f^2 and strongly correlated colour channels, so
    the noise is white noise shaped to a 1/f amplitude spectrum, a shared luminance field plus weaker
    per-channel fields, each channel scaled to unit variance (what ImageNet normalization gives photos).
    """
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    amplitude = 1.0 / torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size)

    def field(count: int) -> torch.Tensor:
        white = torch.randn(count, size, size, generator=generator)
        return torch.fft.irfft2(torch.fft.rfft2(white) * amplitude, s=(size, size))

    luma = field(n).unsqueeze(1)  # [n, 1, S, S]
    chroma = field(3 * n).view(n, 3, size, size)
    x = luma / luma.std() + 0.35 * chroma / chroma.std()
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


@torch.no_grad()
def calibrate_random(model: VGG19Features | VGG19Fc1, seed: int = 0, size: int = 96) -> VGG19Features | VGG19Fc1:
    """Scale each random conv so that its pre-ReLU output has unit variance on natural-image statistics.

    Layer-sequential unit-variance scaling (LSUV, Mishkin & Matas 2016). Without it, random conv4_4
    features come out about 0.13 in standard deviation and their Gram matrices about 1e-5, so the
    content, style and structure losses of a `--vgg-weights random` run are too small to steer
    anything; networks with random filters are known to carry texture and structure (Ustyuzhaninov
    et al. 2017, He et al. 2016) once their activations are at a usable scale. Uses its own seeded
    generator: the global RNG (and so an exact resume) is not touched.
    """
    h = natural_noise(4, size, torch.Generator().manual_seed(seed))
    layers = list(model.features)
    if isinstance(model, VGG19Fc1):
        layers += [nn.AdaptiveAvgPool2d(7), nn.Flatten(1), *model.classifier]
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            # Rounded to 3 significant digits: the first convolutions of a process may run other kernels
            # than later ones and differ in the last bits, which must not change the weights (a resumed
            # run, or a colorizer's style vectors, need the same random VGG every time).
            std = float(f"{layer(h).std().item():.3g}")
            layer.weight.div_(std)
            layer.bias.zero_()
        h = layer(h)
    return model


def imagenet_weights_path() -> Path:
    """Where torchvision caches the VGG19 ImageNet file (`$TORCH_HOME/hub/checkpoints/...`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(path, "no such VGG19 weights file (expected torchvision's vgg19-dcbb9e9d.pth format)")
    try:
        try:
            # mmap: only the feature tensors are read, not the 400+ MB classifier.
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            sd = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files
    except Exception as exc:  # refused objects, foreign or damaged files: one line, never "retry unsafely"
        raise InputError(path, describe_unloadable(path, exc)) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise InputError(path, f"expected a state dict, found {type(sd).__name__}")
    return sd


def load_vgg_file(model: VGG19Features | VGG19Fc1, path: Path) -> None:
    """Load the tensors `model` has (`features.{i}`, and `classifier.0` for fc1) from a torchvision-format
    file; other keys are ignored."""
    sd = _load_state_dict(path)
    # Some exports prefix keys ("module.", "vgg."); match on the part from "features."/"classifier." on.
    feats: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            continue
        for part in ("features.", "classifier."):
            i = k.find(part)
            if i >= 0:
                feats[k[i:]] = v
    expected = model.state_dict()
    missing = [k for k in expected if k not in feats]
    if missing:
        what = "tensors" if isinstance(model, VGG19Fc1) else "feature tensors"
        raise InputError(
            path,
            f"not a torchvision VGG19 state dict: missing {len(missing)} of {len(expected)} {what} "
            f"(first: {', '.join(missing[:3])})",
        )
    for k, ref in expected.items():
        if tuple(feats[k].shape) != tuple(ref.shape):
            raise InputError(path, f"{k} has shape {tuple(feats[k].shape)}, VGG19 needs {tuple(ref.shape)}")
    model.load_state_dict({k: feats[k].float() for k in expected}, strict=True)


def _download_imagenet(dest: Path, log: Callable[[str], None]) -> None:
    hint = (
        f"place torchvision's {VGG19_FILENAME} (from {VGG19_URL}) at {dest}, "
        f"or pass --vgg-weights PATH to a local copy (--vgg-weights random runs without it: for smoke runs and "
        f"demos, the perceptual losses then know nothing of ImageNet)"
    )
    log(f"downloading VGG19 ImageNet weights (548 MB) to {dest}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Writes to a temporary file and renames it when complete, checking the hash prefix.
        torch.hub.download_url_to_file(VGG19_URL, str(dest), hash_prefix=VGG19_HASH_PREFIX, progress=False)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise TrainingError(f"{dest}: VGG19 ImageNet weights missing and the download failed ({reason}); {hint}") from None


def _weights_file(spec: str | Path, log: Callable[[str], None]) -> Path:
    if str(spec) == "imagenet":
        path = imagenet_weights_path()
        if not path.is_file():
            _download_imagenet(path, log)
        return path
    return Path(spec)


RANDOM_FC1_LINE = ("VGG19 fc1: using RANDOM weights (--vgg-weights random), scaled to unit variance per layer: style "
                   "vectors then describe colour statistics, not what ImageNet taught; for tests and smoke runs")


def build_vgg_fc1(spec: str | Path, *, log: Callable[[str], None] | None = None) -> VGG19Fc1:
    """The frozen, eval-mode VGG19 up to fc1 for `--vgg-weights spec` (imagenet, random or a PATH).

    `random` builds the same weights every time (its own seed, the global RNG untouched): a colorizer
    trained with them finds them again at inference.
    """
    log = log or (lambda message: None)
    if str(spec) == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = VGG19Fc1()
        calibrate_random(model, size=112)
        model.random_recipe = f"random seed {RANDOM_SEED}, torchvision init, LSUV on 1/f noise at 112 px"
        log(RANDOM_FC1_LINE)
    else:
        model = VGG19Fc1()
        load_vgg_file(model, _weights_file(spec, log))
    model.requires_grad_(False)
    return model.eval()


def build_vgg(spec: str | Path, *, log: Callable[[str], None] | None = None) -> VGG19Features:
    """The frozen, eval-mode VGG19 feature extractor for `--vgg-weights spec`.

    `spec`: "imagenet" (torchvision's cached file, downloaded if missing), "random", or a path.
    Input `[N, 3, H, W]` in [-1, 1]; output conv4_4 pre-ReLU features `[N, 512, H/8, W/8]`.
    """
    log = log or (lambda message: None)
    model = VGG19Features()
    name = str(spec)
    if name == "random":
        calibrate_random(model)
        log("VGG19: using RANDOM weights (--vgg-weights random), each layer scaled to unit variance: the "
            "perceptual losses see texture and structure but not what ImageNet taught; for tests, demos "
            "and smoke runs")
    else:
        load_vgg_file(model, _weights_file(spec, log))
    return model.freeze()

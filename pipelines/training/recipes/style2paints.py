"""Style2paints V1 (FACTS 7): learn to colour sketches from colour illustrations alone.

Each training sample is made in the loader's workers (`ColorizationSamples`): a freshly varied sketch of the
target window (random XDoG parameters, thickness, intensity; or the dataset's own sketch half the time when it
has one) and the reference: with `--reference crop` (the default) another crop of the same illustration at the
training scale, sharing the target's random palette change; `augmented`, a colour-jittered, TPS-warped copy;
`original`, the illustration itself. Per step:

1. discriminator update (GAN phase): D(illustration) -> norm(V(illustration)) and D(G(sketch)) -> 0,
   binary cross-entropy on the 4096 fc1 units (AC-GAN, the paper's modified form), logged as a KL divergence;
2. generator update: L1(y, G) + 0.3 L1(gray(y), guide 1) + 0.9 L1(y, guide 2) + 0.01 BCE(D(G),
   norm(V(reference))), the guides being the two training-only decoders.

The reference's style vector V (VGG19 fc1 on the reference at 224x224) is computed once per step and
shared by both updates; it is also the discriminator's real target with `original` (where it is V of the
illustration itself) and with `crop` (the same illustration and palette: one VGG pass instead of two). The
generator standardizes V with statistics of training references fitted at the start (`build_frozen`). An
optional init phase (`--init-epochs`, default 0) trains G and the guides on the L1 terms alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from ...data.manifest import Dataset
from ...data.derived import resize_short_side
from ...data.references import apply_palette, draw_palette, jitter_colours, random_square, reference_crop, tps_warp
from ...data.sketches import XDOG_DEFAULTS, vary_sketch, xdog
from ...models.registry import build_generator
from ...models.style2paints import ACDiscriminator, GuideDecoders, style_target
from ..batches import SOURCE_PREFIX, SetGroup
from .base import Phase, Recipe, Update

# The paper's weights (FACTS 7); d_adv scales the discriminator's own loss.
WEIGHTS = {"l1": 1.0, "guide1": 0.3, "guide2": 0.9, "adv": 0.01, "d_adv": 1.0}
SKETCH_SET = "sketch"
PREVIEW_SEED = 12345  # the held-out references' warp: the same in every evaluation of every run
STYLE_SAMPLES = 64  # references whose fc1 statistics standardize the style vector
STYLE_EPOCH = 2**31 - 1  # their sample keys: an epoch no run reaches


@dataclass(frozen=True)
class ColorizationSamples:
    """The loader-side `SampleTransform`: `{illustration set: [S,S,3], sketch?: [S,S,3]}` uint8 ->
    `{"illustration": [S,S,3], "sketch": [S,S], "reference"?: [S,S,3]}` uint8.

    `reference` (config `--reference`): "original" (none: the loss uses the illustration itself), "augmented"
    (jittered target, TPS-warped copy), or "crop": the transform then takes the whole illustration from the
    loader (`wants_source`), scales it so that its short side is `size * scale`, crops the target there and the
    reference elsewhere (`references.reference_crop`), and gives both one random palette change."""

    illustration_set: str
    reference: str = "original"
    size: int = 256
    scale: float = 1.0

    @property
    def wants_source(self) -> bool:
        return self.reference == "crop"

    def __call__(self, crops: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.reference == "crop":
            return self._crop_sample(crops, rng)
        ill = crops[self.illustration_set]
        out = {"sketch": vary_sketch(ill, rng, crops.get(SKETCH_SET))}
        if self.reference == "augmented":
            target = jitter_colours(ill, rng)
            out["illustration"], out["reference"] = target, tps_warp(target, rng)
        else:
            out["illustration"] = ill
        return out

    def _crop_sample(self, crops: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        short = max(self.size, round(self.size * self.scale))
        whole = resize_short_side(crops[SOURCE_PREFIX + self.illustration_set], short)  # [H', W', 3]
        h, w = whole.shape[:2]
        top, left = random_square(h, w, self.size, rng)
        flip = rng.random() < 0.5
        def window(a: np.ndarray) -> np.ndarray:
            cut = a[top:top + self.size, left:left + self.size]
            return np.ascontiguousarray(cut[:, ::-1] if flip else cut)

        ill = window(whole)
        recorded = crops.get(SOURCE_PREFIX + SKETCH_SET)
        if recorded is not None:  # the dataset's own sketch of this illustration, the same window
            recorded = window(cv2.resize(recorded, (w, h), interpolation=cv2.INTER_AREA))
        palette = draw_palette(rng)
        return {"sketch": vary_sketch(ill, rng, recorded),
                "illustration": apply_palette(ill, palette),
                "reference": apply_palette(reference_crop(whole, self.size, rng), palette)}


@L.fp32
def gray1(x: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` RGB in [-1, 1] -> `[N, 1, H, W]` BT.601 luma in [-1, 1] (guide 1's target)."""
    return L.to_gray3(x)[:, :1]


@L.fp32
def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The log-likelihood distance of `[N, 4096]` logits to targets in [0, 1], as a KL divergence: binary
    cross-entropy minus the targets' own entropy. The gradient is the cross-entropy's; the value is 0 at a perfect
    fit, so the discriminator-collapse check (a loss falling towards 0) can see it (soft targets put a floor of
    their entropy under the plain cross-entropy)."""
    t = target.clamp(1e-6, 1 - 1e-6)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log()).mean()
    return F.binary_cross_entropy_with_logits(logits, target) - entropy.detach()


class Style2PaintsRecipe(Recipe):
    """`animegan train --model style2paints`."""

    preview_set = "illustration"

    def __init__(self, config: Any):
        super().__init__(config)
        self.illustration_set = getattr(config, "illustration_set", None) or "illustration"
        self.preview_set = self.illustration_set
        # The dataset's own sketches join in when it has any (made by make-sketch or imported).
        try:
            has_sketches = bool(Dataset.open(config.dataset).manifest.records(SKETCH_SET))
        except Exception:  # no dataset yet: load_groups reports that with its own message
            has_sketches = False
        self.data_groups = (SetGroup(self.illustration_set, (SKETCH_SET,) if has_sketches else ()),)
        self.reference = getattr(config, "reference", "crop")
        # The scale illustrations are seen at: short side = image_size * train_scale ("crop" only; the other two
        # crop at the files' own resolution, as before).
        self.train_scale = float(getattr(config, "train_scale", 1.0)) if self.reference == "crop" else 1.0
        self.norm = getattr(config, "target_norm", "max")
        self._vgg: nn.Module | None = None
        self._generator: nn.Module | None = None  # the one build_networks made: its style statistics are fitted
        self._groups: list | None = None  # the training files (fit_data)
        self._preview: tuple[int, torch.Tensor, torch.Tensor] | None = None

    # -- declarations -----------------------------------------------------------------------------
    @classmethod
    def defaults(cls, model: str, style: str) -> dict[str, Any]:
        # The paper states no schedule; Adam(1e-4, 0.5, 0.999) for both networks is the pix2pix-family
        # choice the re-implementations make. An epoch of a few thousand illustrations is short, so 50.
        return {"epochs": 50, "init_epochs": 0, "batch_size": 8, "lr_init": 1e-4, "lr_g": 1e-4, "lr_d": 1e-4}

    @classmethod
    def default_weights(cls, model: str, style: str) -> dict[str, float]:
        return dict(WEIGHTS)

    def fit_data(self, groups, log) -> None:
        self._groups = groups  # the style statistics are fitted once the VGG exists (build_frozen)

    def build_networks(self) -> dict[str, nn.Module]:
        arch, kwargs = self.export_arch()
        self._generator = build_generator(arch, **kwargs)
        return {"generator": self._generator, "guides": GuideDecoders(), "discriminator": ACDiscriminator()}

    def build_frozen(self, device: torch.device, log: Callable[[str], None]) -> dict[str, nn.Module]:
        from ...models.vgg import build_vgg_fc1

        self._vgg = build_vgg_fc1(self.config.vgg_weights, log=log).to(device)
        if self._groups and self._generator is not None:
            self._fit_style_statistics(device, log)
        return {"vgg_fc1": self._vgg}

    @torch.no_grad()
    def _fit_style_statistics(self, device: torch.device, log: Callable[[str], None]) -> None:
        """The generator's style standardization from STYLE_SAMPLES references made exactly as training makes
        them (a fixed sample key range: the same statistics on every start and resume)."""
        from ..batches import CropDataset, SampleKey

        n = min(STYLE_SAMPLES, max(16, 4 * len(self._groups[0])))  # a small set needs fewer to be covered
        data = CropDataset(self._groups, self.config.seed, self.config.image_size, n, self.sample_transform())
        key = "reference" if self.reference != "original" else "illustration"
        images = torch.stack([data[SampleKey(STYLE_EPOCH, i)][key] for i in range(n)])  # [n, 3, S, S] uint8
        vectors = torch.cat([self._vgg(chunk.to(device).float().div(127.5).sub(1)) for chunk in images.split(16)])
        self._generator.set_style_statistics(vectors.cpu())
        log(f"style vectors standardized with {n} training references")

    def build_optimizers(self, networks: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        g = [*networks["generator"].parameters(), *networks["guides"].parameters()]
        return {
            "g_init": torch.optim.Adam(g, lr=c.lr_init, betas=(0.5, 0.999)),
            "d": torch.optim.Adam(networks["discriminator"].parameters(), lr=c.lr_d, betas=(0.5, 0.999)),
            "g": torch.optim.Adam(g, lr=c.lr_g, betas=(0.5, 0.999)),
        }

    def phases(self) -> list[Phase]:
        return [
            Phase("init", self.config.init_epochs, (Update("g_init", frozen=("discriminator",)),)),
            Phase("gan", self.config.epochs, (Update("d", frozen=("generator", "guides")),
                                              Update("g", frozen=("discriminator",)))),
        ]

    def export_arch(self) -> tuple[str, dict[str, Any]]:
        return "style2paints_v1", {}

    def export_meta(self) -> dict[str, Any]:
        # The style vector is part of the model's input: inference must use the VGG19 it was trained with.
        meta: dict[str, Any] = {"vgg_weights": self.config.vgg_weights}
        if self._vgg is not None:
            meta["vgg_fingerprint"] = self._vgg.fingerprint()
        if self.reference == "crop":
            # The scale the network learned at: colorize works at it unless told otherwise (--max-side).
            meta["train_short_side"] = max(self.config.image_size, round(self.config.image_size * self.train_scale))
        return meta

    def sample_transform(self) -> ColorizationSamples:
        return ColorizationSamples(self.illustration_set, self.reference, self.config.image_size, self.train_scale)

    # -- held-out previews: the published "same reference" protocol (FACTS 7b) -------------------
    def _preview_inputs(self, illustrations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Default-XDoG sketches `[N, 1, S, S]` and TPS-warped references `[N, 3, S, S]` of the held-out
        illustrations, both in [-1, 1]; made once, the same at every evaluation."""
        key = illustrations.data_ptr()
        if self._preview is None or self._preview[0] != key:
            u8 = ((illustrations.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            rng = np.random.default_rng(PREVIEW_SEED)
            sketches = np.stack([xdog(im, **XDOG_DEFAULTS) for im in u8])[:, None]
            refs = np.stack([tps_warp(im, rng) for im in u8]).transpose(0, 3, 1, 2)
            to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(illustrations.device).float() / 127.5 - 1  # noqa: E731
            self._preview = (key, to(sketches), to(refs))
        return self._preview[1], self._preview[2]

    def generate(self, generator: nn.Module, photos: torch.Tensor) -> torch.Tensor:
        sketch, reference = self._preview_inputs(photos)
        return generator(sketch, self._vgg(reference))

    def held_out_metrics(self, generator: nn.Module, photos: torch.Tensor) -> dict[str, float]:
        """How far the outputs follow the reference (`pipelines.evaluation.colorization`): tinted, hue-turned and
        other held-out illustrations as references of the held-out sketches (the cross-reference protocol)."""
        if len(photos) < 2 or self._vgg is None:
            return {}
        from ...evaluation.colorization import network_colorizer, reference_following

        sketch, _ = self._preview_inputs(photos)
        u8 = lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()  # noqa: E731
        sketches = u8(sketch)[:, 0]  # [N, S, S]
        illustrations = u8(photos).transpose(0, 2, 3, 1)  # [N, S, S, 3]
        f = reference_following(network_colorizer(generator, self._vgg, photos.device), sketches, illustrations)
        return f.as_dict()

    def sample_rows(self, generator: nn.Module, photos: torch.Tensor) -> list[torch.Tensor]:
        sketch, reference = self._preview_inputs(photos)
        return [sketch, reference, self.generate(generator, photos), photos]  # sketch, reference, output, target

    # -- losses -----------------------------------------------------------------------------------
    def losses(self, phase: str, update: Update, nets: Mapping[str, nn.Module],
               batch: Mapping[str, torch.Tensor], ctx: dict[str, Any]) -> dict[str, torch.Tensor]:
        w = self.config.weights
        target = batch["illustration"]  # [N, 3, S, S] in [-1, 1]
        sketch = batch["sketch"]  # [N, 1, S, S] in [-1, 1]
        if "v_ref" not in ctx:
            with torch.no_grad():
                vgg = nets["vgg_fc1"]
                if "reference" in batch and self.reference == "crop":
                    # The reference is the same illustration with the same palette change: its vector is also the
                    # discriminator's real target (VGG19 at 224 px is most of a CPU step: one pass, not two).
                    v_ref = v_real = vgg(batch["reference"]).float()
                elif "reference" in batch:
                    v_ref, v_real = vgg(torch.cat([batch["reference"], target])).float().chunk(2)
                else:
                    v_ref = v_real = vgg(target).float()  # [N, 4096]
            ctx["v_ref"], ctx["t_ref"], ctx["t_real"] = v_ref, style_target(v_ref, self.norm), style_target(v_real, self.norm)

        if update.optimizer == "d":
            with torch.no_grad():
                fake = nets["generator"](sketch, ctx["v_ref"])
            real_l, fake_l = nets["discriminator"](torch.cat([target, fake])).float().chunk(2)
            return {
                "d_real": w["d_adv"] * bce(real_l, ctx["t_real"]),
                "d_fake": w["d_adv"] * bce(fake_l, torch.zeros_like(fake_l)),
            }

        # Generator (and guides) update: the init phase, or the generator's half of the GAN phase.
        out, encoded, first = nets["generator"](sketch, ctx["v_ref"], guides=True)
        g1, g2 = nets["guides"](encoded, first)
        terms = {
            "l1": w["l1"] * F.l1_loss(out.float(), target.float()),
            "guide1": w["guide1"] * F.l1_loss(g1.float(), gray1(target)),
            "guide2": w["guide2"] * F.l1_loss(g2.float(), target.float()),
        }
        if phase != "init" and w["adv"] > 0:
            terms["g_adv"] = w["adv"] * bce(nets["discriminator"](out).float(), ctx["t_ref"])
        return terms

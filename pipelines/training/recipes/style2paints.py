"""Style2paints V1 (FACTS 7): learn to colour sketches from colour illustrations alone.

Each training sample is made in the loader's workers from one illustration crop (`ColorizationSamples`):
a freshly varied sketch of it (random XDoG parameters, thickness, intensity; or the dataset's own sketch
half the time when it has one) and, with `--reference augmented`, a colour-jittered target and a
TPS-warped reference. Per step:

1. discriminator update (GAN phase): D(illustration) -> norm(V(illustration)) and D(G(sketch)) -> 0,
   binary cross-entropy on the 4096 fc1 units (AC-GAN, the paper's modified form);
2. generator update: L1(y, G) + 0.3 L1(gray(y), guide 1) + 0.9 L1(y, guide 2) + 0.01 BCE(D(G),
   norm(V(reference))), the guides being the two training-only decoders.

The reference's style vector V (VGG19 fc1 on the reference at 224x224) is computed once per step and
shared by both updates; with the paper's reference (the illustration itself) V(reference) is also the
discriminator's real target. An optional init phase (`--init-epochs`, default 0) trains G and the guides
on the L1 terms alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from ...data.manifest import Dataset
from ...data.references import jitter_colours, tps_warp
from ...data.sketches import XDOG_DEFAULTS, vary_sketch, xdog
from ...models.registry import build_generator
from ...models.style2paints import ACDiscriminator, GuideDecoders, style_target
from ..batches import SetGroup
from .base import Phase, Recipe, Update

# The paper's weights (FACTS 7); d_adv scales the discriminator's own loss.
WEIGHTS = {"l1": 1.0, "guide1": 0.3, "guide2": 0.9, "adv": 0.01, "d_adv": 1.0}
SKETCH_SET = "sketch"
PREVIEW_SEED = 12345  # the held-out references' warp: the same in every evaluation of every run


@dataclass(frozen=True)
class ColorizationSamples:
    """The loader-side `SampleTransform`: `{illustration set: [S,S,3], sketch?: [S,S,3]}` uint8 ->
    `{"illustration": [S,S,3], "sketch": [S,S], "reference"?: [S,S,3]}` uint8."""

    illustration_set: str
    augmented: bool

    def __call__(self, crops: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        ill = crops[self.illustration_set]
        out = {"sketch": vary_sketch(ill, rng, crops.get(SKETCH_SET))}
        if self.augmented:
            target = jitter_colours(ill, rng)
            out["illustration"], out["reference"] = target, tps_warp(target, rng)
        else:
            out["illustration"] = ill
        return out


@L.fp32
def gray1(x: torch.Tensor) -> torch.Tensor:
    """`[N, 3, H, W]` RGB in [-1, 1] -> `[N, 1, H, W]` BT.601 luma in [-1, 1] (guide 1's target)."""
    return L.to_gray3(x)[:, :1]


@L.fp32
def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of `[N, 4096]` logits against targets in [0, 1] (the log-likelihood distance)."""
    return F.binary_cross_entropy_with_logits(logits, target)


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
        self.augmented = getattr(config, "reference", "original") == "augmented"
        self.norm = getattr(config, "target_norm", "max")
        self._vgg: nn.Module | None = None
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

    def build_networks(self) -> dict[str, nn.Module]:
        arch, kwargs = self.export_arch()
        return {"generator": build_generator(arch, **kwargs), "guides": GuideDecoders(), "discriminator": ACDiscriminator()}

    def build_frozen(self, device: torch.device, log: Callable[[str], None]) -> dict[str, nn.Module]:
        from ...models.vgg import build_vgg_fc1

        self._vgg = build_vgg_fc1(self.config.vgg_weights, log=log).to(device)
        return {"vgg_fc1": self._vgg}

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
        return meta

    def sample_transform(self) -> ColorizationSamples:
        return ColorizationSamples(self.illustration_set, self.augmented)

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
                if "reference" in batch:
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

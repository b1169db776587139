"""AnimeGAN v1 and v2 (FACTS sections 4 and 5): init phase (content reconstruction), then the GAN phase.

Per training step of the GAN phase, G(photo) is computed once: the discriminator update sees it
detached, and the generator update (after D has stepped, as in the reference) back-propagates through
it. VGG features of G(photo) are computed once for both the content and the style terms, and those
of the photo and of the grayscale style frame together in one batch without gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from ..augment import augment
from ..palette import fit_for
from ...models.animegan import Discriminator
from ...models.registry import build_generator
from ..batches import SetGroup
from .base import Phase, Recipe, Update

# (content, style, colour, TV, D real, D fake, D gray, D smooth) per AnimeGANv2 style (FACTS 4).
V2_STYLE_WEIGHTS = {
    "hayao": (1.5, 2.5, 15.0, 1.0, 1.2, 1.2, 1.2, 0.8),
    "paprika": (2.0, 0.6, 50.0, 0.1, 1.0, 1.0, 1.0, 0.005),
    "shinkai": (1.2, 2.0, 10.0, 1.0, 1.7, 1.7, 1.7, 1.0),
}
_WEIGHT_NAMES = ("content", "style", "color", "tv", "d_real", "d_fake", "d_gray", "d_smooth")

ARCH = {"animegan": ("animegan_v1", {}), "animeganv2": ("animegan_v2", {"align_corners": True})}


class AnimeGANRecipe(Recipe):
    data_groups = (SetGroup("photo"), SetGroup("style", ("smooth",)))

    @classmethod
    def defaults(cls, model: str, style: str) -> dict[str, Any]:
        # augment none: on the known-answer benchmark it did not stop v2's ripples (docs/benchmarks.md, ninth session)
        if model == "animegan":  # paper / reference code (batch 6 in the code, 4 in the paper)
            return {"epochs": 100, "init_epochs": 1, "batch_size": 6, "lr_init": 1e-4, "lr_g": 8e-5, "lr_d": 1.6e-5,
                    "augment": "none"}
        return {"epochs": 100, "init_epochs": 10, "batch_size": 12, "lr_init": 1e-4, "lr_g": 2e-5, "lr_d": 4e-5,
                "augment": "none"}

    @classmethod
    def default_weights(cls, model: str, style: str) -> dict[str, float]:
        if model == "animegan":  # v1 uses the paper's weights whatever the style; no TV term
            values = (1.5, 3.0, 10.0, 0.0, 1.0, 1.0, 1.0, 0.1)
        else:
            values = V2_STYLE_WEIGHTS[style]
        # recon: a pixel L1 term in the init phase (0 in the reference recipe; see docs/training.md)
        return {"adv": 300.0, "d_adv": 300.0, **dict(zip(_WEIGHT_NAMES, values)), "recon": 0.0}

    palette = None  # the colour anchor's map (fit_data)

    def fit_data(self, groups, log) -> None:
        self.palette = fit_for(self.config, groups, "photo", "style", log)

    # -- networks and optimizers -----------------------------------------------------------------
    def build_networks(self) -> dict[str, nn.Module]:
        arch, kwargs = self.export_arch()
        norm = "instance" if self.config.model == "animegan" else "layer"
        return {"generator": build_generator(arch, **kwargs), "discriminator": Discriminator(norm=norm)}

    def build_optimizers(self, networks: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        g, d = networks["generator"].parameters, networks["discriminator"].parameters
        # beta1 0.5 in both phases, as in the reference trainers.
        return {
            "g_init": torch.optim.Adam(g(), lr=c.lr_init, betas=(0.5, 0.999)),
            "d": torch.optim.Adam(d(), lr=c.lr_d, betas=(0.5, 0.999)),
            "g": torch.optim.Adam(g(), lr=c.lr_g, betas=(0.5, 0.999)),
        }

    def phases(self) -> list[Phase]:
        return [
            Phase("init", self.config.init_epochs, (Update("g_init", frozen=("discriminator",)),)),
            Phase("gan", self.config.epochs, (Update("d"), Update("g", frozen=("discriminator",)))),
        ]

    def export_arch(self) -> tuple[str, dict[str, Any]]:
        arch, kwargs = ARCH[self.config.model]
        return arch, dict(kwargs)

    # -- losses ----------------------------------------------------------------------------------
    def losses(self, phase: str, update: Update, nets: Mapping[str, nn.Module],
               batch: Mapping[str, torch.Tensor], ctx: dict[str, Any]) -> dict[str, torch.Tensor]:
        w = self.config.weights
        kind = self.config.gan_loss
        photo = batch["photo"]  # [N, 3, S, S] in [-1, 1]
        if "fake" not in ctx:
            ctx["fake"] = nets["generator"](photo)  # [N, 3, S, S] in [-1, 1], with graph into G
        fake = ctx["fake"]
        vgg = nets["vgg"]

        if phase == "init":
            with torch.no_grad():
                feat_photo = vgg(photo)
            terms = {"content": w["content"] * L.content_loss(feat_photo.float(), vgg(fake).float())}
            if w.get("recon", 0.0) > 0:
                terms["recon"] = w["recon"] * F.l1_loss(fake.float(), photo.float())
            return terms

        d = nets["discriminator"]
        if update.optimizer == "d":
            style = batch["style"]
            # One discriminator pass over real, fake, gray and gray-smooth: the norms are per sample,
            # so this equals four passes, and spectral norm's power iteration runs once per update.
            inputs = torch.cat([style, fake.detach(), L.to_gray3(style), L.to_gray3(batch["smooth"])])
            real_l, fake_l, gray_l, smooth_l = d(augment(inputs, self.config.augment)).float().chunk(4)
            s = w["d_adv"]
            return {
                "d_real": s * w["d_real"] * L.d_real_loss(real_l, kind),
                "d_fake": s * w["d_fake"] * L.d_fake_loss(fake_l, kind),
                "d_gray": s * w["d_gray"] * L.d_fake_loss(gray_l, kind),
                "d_smooth": s * w["d_smooth"] * L.d_fake_loss(smooth_l, kind),
            }

        # Generator update of the GAN phase.
        n = photo.shape[0]
        with torch.no_grad():
            feat_photo, feat_gray = vgg(torch.cat([photo, L.to_gray3(batch["style"])])).float().split(n)
        feat_fake = vgg(fake).float()
        terms = {
            "g_adv": w["adv"] * L.generator_adv_loss(d(augment(fake, self.config.augment)).float(), kind),
            "content": w["content"] * L.content_loss(feat_photo, feat_fake),
            "style": w["style"] * L.style_loss(feat_gray, feat_fake),
            "color": w["color"] * L.color_loss(photo.float(), fake.float(), self.palette),
        }
        if w["tv"] > 0:
            terms["tv"] = w["tv"] * L.tv_loss(fake.float())
        if self.config.temporal_weight > 0:
            terms["temporal"] = self.config.temporal_weight * L.shift_consistency_loss(nets["generator"], photo, fake)
        return terms

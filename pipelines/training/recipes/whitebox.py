"""White-box Cartoonization (FACTS 6): a pretrain phase (L1 reconstruction), then the GAN phase on the
surface, structure and texture representations.

One GAN step, in this order:

1. discriminator update: G(photo) without gradients, guided-filtered with the photo as guide
   (r 1, eps 1e-2; not with the ink term, whose network is trained and exported bare: `export_postprocess`).
   Its superpixel structure is submitted to a CPU thread pool right away; the two
   discriminators then learn on surface (guided filter r 5, eps 0.2) and texture (random-weight
   grayscale, one weight draw shared by cartoons and fakes) of cartoon vs fake.
2. generator update: G(photo) again with gradients (same weights as in 1, D stepped but not G), so
   the structure target is exactly the superpixels of this output, as in the released code. The
   VGG passes and the adversarial terms are queued first; only then does the update wait for the
   superpixels, so the CPU segmentation overlaps D's step and G's forward on the accelerator.

Loss scales follow the released code, so its weights (and the paper's) apply unchanged:
- the feature L1 (content, structure) is divided by the conv4_4 size of a 256x256 crop
  (32*32*512) and multiplied by `VGG_UNIT`, the ratio of the reference's caffe VGG inputs
  (0..255 minus the mean) to torchvision's (0..1 minus mean, over std): about 57.6;
- TV is (mean dh^2 + mean dw^2) / (3*256*256);
- each discriminator loss is 0.5 * (E(D(real)-1)^2 + E D(fake)^2).
The normalizers are fixed at the reference's 256 crop (the released code divides by the current
size) so that the balance between the terms does not move with `--crop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from ..augment import augment
from ..ink import InkMap, draw_ink, ink_loss, lift_ink
from ..palette import fit_for
from ...models.guided_filter import guided_filter
from ...models.registry import build_generator
from ...models.whitebox import TRAIN_FILTER, inference_postprocess, surface_discriminator, texture_discriminator
from ..representations import StructureOptions, StructurePool, random_gray_weights, surface, texture
from ..batches import SetGroup
from .base import Phase, Recipe, Update

# Weight names: users may override entries (`--weight NAME=VALUE`), never add names.
# `color` (0 in both presets, not in the paper): AnimeGAN's YUV colour loss against the photo, an anchor
# for short runs in which the discriminators' pull otherwise drifts the colours (the demo uses it).
# `ink` (0 in both presets, not in the paper): the style's line contrast along the photo's strongest edges
# (training/ink.py), the one term that says where outlines go.
RELEASED_WEIGHTS = {"surface": 0.1, "texture": 1.0, "structure": 200.0, "content": 200.0, "tv": 1e4, "recon": 1.0, "color": 0.0, "ink": 0.0}
PAPER_WEIGHTS = {"surface": 1.0, "texture": 10.0, "structure": 2000.0, "content": 2000.0, "tv": 1e4, "recon": 1.0, "color": 0.0, "ink": 0.0}
# The default: the released weights plus the colour anchor at the style set's palette (training/palette.py).
# Measured by bench/bench_style_learning.py (docs/benchmarks.md): without it the colours drift (a green-teal
# cast on a warm look); with it the palette moves towards the style's and SSIM to the answer rises. With the ink
# term lines appear along edges (warm look, 400 GAN steps: outline gap closed 0.17 against 0.01), and the anchor
# doubled keeps the palette against it. Ink 10: trained and exported bare, 50 drew lines thicker than the style's
# (warm look, 1800 steps: colour 0.38 and outlines 0.56 at 10, 0.34 and 0.64 at 50; docs/benchmarks.md, fourteenth
# session).
ANCHORED_WEIGHTS = {**RELEASED_WEIGHTS, "color": 10.0, "ink": 10.0}
PRESETS = {"anchored": ANCHORED_WEIGHTS, "released": RELEASED_WEIGHTS, "paper": PAPER_WEIGHTS}

_REF_FEATURES = 32 * 32 * 512  # conv4_4 of a 256x256 crop
_REF_PIXELS = 3 * 256 * 256
VGG_UNIT = 255.0 * (0.229 + 0.224 + 0.225) / 3.0


@L.fp32
def feature_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Released-code scale of the L1 between conv4_4 features `[N, 512, h, w]` (see the module doc)."""
    return F.l1_loss(a, b) * (VGG_UNIT / _REF_FEATURES)


@L.fp32
def whitebox_tv(x: torch.Tensor) -> torch.Tensor:
    """`[N, C, H, W]` -> scalar: (mean dh^2 + mean dw^2) / (3 * 256 * 256), the released code's TV."""
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    return (dh.pow(2).mean() + dw.pow(2).mean()) / _REF_PIXELS


class WhiteboxRecipe(Recipe):
    """`animegan train --model whitebox`."""

    # The cartoon images default to the style set; `cartoon_set` in the config picks another.
    data_groups = (SetGroup("photo"), SetGroup("style"))

    def __init__(self, config: Any):
        super().__init__(config)
        self.cartoon_set = getattr(config, "cartoon_set", None) or "style"
        self.data_groups = (SetGroup("photo"), SetGroup(self.cartoon_set))
        self.structure_options = StructureOptions(
            method=getattr(config, "superpixels", None) or "slic",
            segments=int(getattr(config, "superpixel_segments", None) or 200),
        )
        self._pool: StructurePool | None = None
        self._steps = 0  # GAN steps since the last metrics row

    # -- declarations -----------------------------------------------------------------------------
    @classmethod
    def defaults(cls, model: str, style: str) -> dict[str, Any]:
        # Released code: batch 16, Adam(2e-4, 0.5, 0.99) in both phases; 50k pretrain and 100k GAN
        # iterations, which on a few thousand images is tens of epochs (docs/whitebox.md).
        # augment: the discriminators see randomly shifted and cut images (training/augment.py); measured on the
        # known-answer benchmark (docs/benchmarks.md): a 10-image fine-tune stops fitting its images (colour gap
        # closed 0.387 at 1000 steps against 0.356), and a 40-image run on the held-out look gains a little (0.350
        # against 0.313 at 1000 steps).
        return {"epochs": 50, "init_epochs": 10, "batch_size": 16, "lr_init": 2e-4, "lr_g": 2e-4, "lr_d": 2e-4,
                "augment": "translation,cutout"}

    @classmethod
    def weight_preset(cls, config: Any) -> str:
        return getattr(config, "preset", None) or "anchored"

    @classmethod
    def default_weights(cls, model: str, style: str) -> dict[str, float]:
        # `style` is the preset name here (weight_preset): "released" or "paper"
        if style not in PRESETS:
            raise ValueError(f"unknown White-box preset {style!r}; use {' or '.join(PRESETS)}")
        return dict(PRESETS[style])

    def build_networks(self) -> dict[str, nn.Module]:
        arch, kwargs = self.export_arch()
        return {"generator": build_generator(arch, **kwargs),
                "d_surface": surface_discriminator(), "d_texture": texture_discriminator()}

    def build_optimizers(self, networks: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        d_params = [*networks["d_surface"].parameters(), *networks["d_texture"].parameters()]
        return {
            "g_init": torch.optim.Adam(networks["generator"].parameters(), lr=c.lr_init, betas=(0.5, 0.99)),
            "d": torch.optim.Adam(d_params, lr=c.lr_d, betas=(0.5, 0.99)),
            "g": torch.optim.Adam(networks["generator"].parameters(), lr=c.lr_g, betas=(0.5, 0.99)),
        }

    def phases(self) -> list[Phase]:
        ds = ("d_surface", "d_texture")
        return [
            Phase("init", self.config.init_epochs, (Update("g_init", frozen=ds),)),
            Phase("gan", self.config.epochs, (Update("d", frozen=("generator",)), Update("g", frozen=ds))),
        ]

    def export_arch(self) -> tuple[str, dict[str, Any]]:
        return "whitebox", {}

    def export_postprocess(self) -> bool:
        # The inference guided filter (guide: the photo) fits the output locally to a linear function of the photo, so
        # a line the photo does not have is blurred away: with the ink term the exported network is used bare
        # (demo, held-out: outlines 0.51 bare against 0.27 filtered; docs/benchmarks.md, fourteenth session). The
        # released and paper presets keep the released inference.
        return self.config.weights.get("ink", 0.0) <= 0

    def generate(self, generator: nn.Module, photos: torch.Tensor) -> torch.Tensor:
        # Samples show what the exported model will give: inference guided filter included when it is exported so.
        with torch.no_grad():
            out = generator(photos)
            return (inference_postprocess(photos, out) if self.export_postprocess() else out).clamp(-1, 1)

    palette = None  # the colour anchor's map (fit_data)
    ink_map: InkMap | None = None  # the ink term's target (fit_data), when its weight is not 0

    def fit_data(self, groups, log) -> None:
        inked = self.config.weights.get("ink", 0.0) > 0
        # With ink drawn apart, the palette is the regions' colours: both sets' lines lifted out before the fit.
        self.palette = fit_for(self.config, groups, "photo", self.cartoon_set, log, lift_ink if inked else None)
        if inked:
            files = {s: f for g in groups for s, f in g.files.items()}
            self.ink_map = InkMap.fit(files["photo"], files[self.cartoon_set])
            log(f"ink target: the '{self.cartoon_set}' set's line contrast ({self.ink_map.describe()})")

    @torch.no_grad()
    def _init_target(self, photo: torch.Tensor, ink: torch.Tensor | None) -> torch.Tensor:
        # What the GAN phase's anchors ask for: the photo at the style's palette (colour weight > 0) with the style's
        # ink drawn along its edges (ink weight > 0); the photo itself in the released and paper presets.
        target = photo.float()
        if self.palette is not None and self.config.weights.get("color", 0.0) > 0:
            target = self.palette((target + 1) * 0.5) * 2 - 1
        return target if ink is None else draw_ink(target, ink)

    # -- structure pool ---------------------------------------------------------------------------
    def _get_pool(self, device: torch.device) -> StructurePool:
        # Beside a GPU, processes: segmentation then never competes with the training thread for
        # the GIL. On CPU, threads: no start-up cost, and the cores are busy with the step anyway.
        if self._pool is None:
            self._pool = StructurePool(self.structure_options, kind="process" if device.type == "cuda" else "thread")
        return self._pool

    def metrics(self) -> dict[str, float]:
        """Since the last row: CPU seconds of segmentation per image, and per step the seconds the
        generator update blocked waiting for it (near 0 when the overlap hides the CPU work)."""
        p = self._pool
        if p is None or p.images == 0 or self._steps == 0:
            return {}
        row = {"structure/cpu_s_per_image": p.seconds / p.images, "structure/wait_s_per_step": p.wait_seconds / self._steps}
        p.seconds = p.wait_seconds = 0.0
        p.images = 0
        self._steps = 0
        return row

    # -- losses -----------------------------------------------------------------------------------
    def _outputs(self, generator: nn.Module, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (raw, fake), each [N, 3, S, S] in about [-1, 1]: G(photo), and it filtered with the photo as guide (training setting)
        raw = generator(photo)
        if not self.export_postprocess():
            # Exported bare (the ink term): every loss sees what the user will get. Losses on the filtered output let
            # the raw one keep what the filter hides (held-out pastel: colour 0.39 against 0.30; docs/benchmarks.md,
            # fourteenth session).
            return raw, raw
        return raw, guided_filter(raw, photo, *TRAIN_FILTER)

    def _fake(self, generator: nn.Module, photo: torch.Tensor) -> torch.Tensor:
        return self._outputs(generator, photo)[1]

    def losses(self, phase: str, update: Update, nets: Mapping[str, nn.Module],
               batch: Mapping[str, torch.Tensor], ctx: dict[str, Any]) -> dict[str, torch.Tensor]:
        w = self.config.weights
        kind = getattr(self.config, "gan_loss", "lsgan")  # released code: lsgan
        photo = batch["photo"]  # [N, 3, S, S] in [-1, 1]
        g = nets["generator"]

        if phase == "init":
            # Reconstruction pretraining on the raw output, as in the released code, of the photo with the anchors'
            # palette and lines (`_init_target`). With the ink term here too, lines are drawn within the init phase's
            # cheap steps (demo: outline gap 0.26 after 1000 init + 300 GAN steps, against 0.00 when only the GAN
            # phase had the term; docs/benchmarks.md, thirteenth session); L1 alone learns thin lines very slowly.
            ink = self.ink_map(photo) if self.ink_map is not None else None  # [N, 1, S, S] >= 0
            raw = g(photo).float()
            terms = {"recon": w["recon"] * F.l1_loss(raw, self._init_target(photo, ink))}
            if ink is not None:
                terms["ink"] = w["ink"] * ink_loss(raw, photo, ink)
            return terms

        cartoon = batch[self.cartoon_set]
        if update.optimizer == "d":
            with torch.no_grad():
                fake = self._fake(g, photo).float()
            ctx["structure"] = self._get_pool(photo.device).submit(fake)  # CPU superpixels, overlapping what follows
            # One weight draw per step, shared by cartoons and fakes (global torch RNG: checkpointed).
            ctx["gray_weights"] = random_gray_weights(1, device=photo.device)  # moved once, used by both updates
            both = torch.cat([cartoon.float(), fake])
            n = cartoon.shape[0]
            aug = self.config.augment  # DiffAugment (training/augment.py): the same policy for real and fake
            s_real, s_fake = nets["d_surface"](augment(surface(both), aug)).float().split(n)
            t_real, t_fake = nets["d_texture"](augment(texture(both, ctx["gray_weights"]), aug)).float().split(n)
            return {
                "d_surface": 0.5 * (L.d_real_loss(s_real, kind) + L.d_fake_loss(s_fake, kind)),
                "d_texture": 0.5 * (L.d_real_loss(t_real, kind) + L.d_fake_loss(t_fake, kind)),
            }

        # Generator update of the GAN phase.
        raw, fake = self._outputs(g, photo)
        vgg = nets["vgg"]
        terms = {
            "g_surface": w["surface"] * L.generator_adv_loss(
                nets["d_surface"](augment(surface(fake.float()), self.config.augment)).float(), kind),
            "g_texture": w["texture"] * L.generator_adv_loss(
                nets["d_texture"](augment(texture(fake.float(), ctx["gray_weights"]), self.config.augment)).float(), kind),
            "tv": w["tv"] * whitebox_tv(fake.float()),
        }
        feat_fake = vgg(fake).float()
        with torch.no_grad():
            feat_photo = vgg(photo).float()
        terms["content"] = w["content"] * feature_l1(feat_photo, feat_fake)
        superpixels = ctx.pop("structure").result().to(photo.device, non_blocking=True)  # [N, 3, S, S] in [-1, 1]
        self._steps += 1
        with torch.no_grad():
            feat_sp = vgg(superpixels).float()
        terms["structure"] = w["structure"] * feature_l1(feat_sp, feat_fake)
        ink = self.ink_map(photo) if self.ink_map is not None else None  # [N, 1, S, S] >= 0
        if w.get("color", 0.0) > 0:
            # With ink, the target is the init phase's (the graded photo with the ink drawn in): against the graded photo
            # alone the colour term would pay for every line the ink term asks for (held-out pastel: cast 15.2 -> 7.5;
            # docs/benchmarks.md, fourteenth session).
            terms["color"] = w["color"] * (L.color_loss(self._init_target(photo, ink), fake.float()) if ink is not None
                                           else L.color_loss(photo.float(), fake.float(), self.palette))
        if ink is not None:
            # With ink the network is trained bare (`_outputs`: raw is fake). When the term still saw the output through
            # the training filter (eps 1e-2), that filter halved each drawn line first (twelfth session, ink 30:
            # outline gap 0.124 on the raw output against 0.093 on the filtered one).
            terms["ink"] = w["ink"] * ink_loss(raw, photo, ink)
        if self.config.temporal_weight > 0:
            terms["temporal"] = self.config.temporal_weight * L.shift_consistency_loss(
                lambda x: self._fake(g, x), photo, fake)
        return terms

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

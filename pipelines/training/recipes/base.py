"""What a model family declares so that `pipelines.training.loop.train` can train it.

The training loop owns everything shared: data loading, devices, AMP and GradScalers, DDP, the run
folder, checkpoints and resume, metrics, samples, NaN checks and export. A recipe only says:

- which dataset sets it needs (`data_groups`),
- its defaults (epochs, batch, learning rates) and loss weights, which the user may override,
- its trainable networks (`build_networks`, checkpointed) and frozen helpers (`build_frozen`, e.g. VGG;
  rebuilt identically on every run, never checkpointed),
- its optimizers (`build_optimizers`) and phases: each phase is a list of `Update`s, one optimizer
  step each, run in order on every batch,
- the loss terms of each update (`losses`), already weighted; their sum is what is minimized,
- the architecture its generator exports as (`export_arch`).

Within one training step `ctx` is a dict the recipe may use to share tensors between its updates
(for example G(photo), computed once for the discriminator and the generator updates).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..batches import GroupFiles, SetGroup
from ..config import TrainConfig


@dataclass(frozen=True)
class Update:
    """One optimizer step inside a training step.

    `frozen` networks need no parameter gradients during this update (their inputs may still need
    them); the loop switches their `requires_grad` off and hands the recipe their bare module (not the
    DDP wrapper), so that an update never all-reduces gradients of a network it does not train.
    """

    optimizer: str
    frozen: tuple[str, ...] = ()


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    updates: tuple[Update, ...]


class Recipe(ABC):
    """One model family's training recipe. Constructed with the resolved `TrainConfig`."""

    #: sets read from the manifest; each group drawn independently
    data_groups: tuple[SetGroup, ...] = ()
    #: the generator's key in `build_networks()`; used for samples and export
    generator_key: str = "generator"
    #: the set whose held-out images feed the sample grids and evaluations (photos for stylizers)
    preview_set: str = "photo"

    def __init__(self, config: TrainConfig):
        self.config = config

    # -- declarations -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def defaults(cls, model: str, style: str) -> dict[str, Any]:
        """Values for the config fields the user left unset (epochs, init_epochs, batch_size, lr_*)."""

    @classmethod
    @abstractmethod
    def default_weights(cls, model: str, style: str) -> dict[str, float]:
        """Every loss weight this recipe uses, by name; users override entries, never add names."""

    @abstractmethod
    def build_networks(self) -> dict[str, nn.Module]:
        """The trainable networks, on CPU, freshly initialized (the loop seeds torch first)."""

    def build_frozen(self, device: torch.device, log: Callable[[str], None]) -> dict[str, nn.Module]:
        """Frozen helper networks, already on `device`, in eval mode.

        By default the VGG19 feature extractor (`--vgg-weights`) that the content, style and
        structure losses of every family so far use; a family without perceptual losses returns {}.
        """
        from ...models.vgg import build_vgg

        vgg = build_vgg(self.config.vgg_weights, log=log).to(device).eval()
        vgg.requires_grad_(False)
        return {"vgg": vgg}

    @abstractmethod
    def build_optimizers(self, networks: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name, over the parameters of the (bare) networks."""

    @abstractmethod
    def phases(self) -> list[Phase]:
        """The phases in order; their epochs add up to the run's length."""

    @abstractmethod
    def losses(self, phase: str, update: Update, nets: Mapping[str, nn.Module],
               batch: Mapping[str, torch.Tensor], ctx: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted loss terms (scalar tensors) of `update`; the loop minimizes their sum.

        `batch[set]` is `[N, 3, S, S]` float in [-1, 1] on the device, for every set of `data_groups`.
        Called under autocast when AMP is on.
        """

    @abstractmethod
    def export_arch(self) -> tuple[str, dict[str, Any]]:
        """(architecture name, builder kwargs) for `weights.save_generator` and the registry."""

    # -- optional hooks -----------------------------------------------------------------------
    @classmethod
    def weight_preset(cls, config: TrainConfig) -> str:
        """The preset name passed to `default_weights` as `style` (AnimeGAN: --style; White-box: --preset)."""
        return config.style

    def fit_data(self, groups: list[GroupFiles], log: Callable[[str], None]) -> None:
        """Called once the training files are known, before the first step: statistics of the data a
        recipe needs (the colour anchor's palette map). Must depend on the files alone (exact resume)."""

    def metrics(self) -> dict[str, float]:
        """Extra values for the current metrics row (e.g. CPU time of a representation); called once per row."""
        return {}

    def close(self) -> None:
        """Release what the recipe started (worker pools); called when training ends."""

    def generate(self, generator: nn.Module, photos: torch.Tensor) -> torch.Tensor:
        """The output for held-out `photos` ([N, 3, H, W] in [-1, 1] -> same): what the sample grid
        shows and the held-out evaluation compares with `photos`. Called in eval mode, without gradients."""
        return generator(photos)

    def held_out_metrics(self, generator: nn.Module, photos: torch.Tensor) -> dict[str, float]:
        """Recipe-specific figures of the held-out evaluation (e.g. how far a colorizer follows its reference),
        added to its row as `eval/<name>`. Called in eval mode, without gradients."""
        return {}

    def sample_rows(self, generator: nn.Module, photos: torch.Tensor) -> list[torch.Tensor]:
        """The rows of a sample grid (each `[N, 1 or 3, H, W]` in [-1, 1]): by default inputs, then outputs."""
        return [photos, self.generate(generator, photos)]

    def sample_transform(self):
        """A picklable `batches.SampleTransform` run in the loader's workers on every cropped sample, or None."""
        return None

    def export_meta(self) -> dict[str, Any]:
        """Extra description stored with the exported generator (e.g. which VGG19 a colorizer needs)."""
        return {}

    def export_postprocess(self) -> bool:
        """Whether the exported generator is used with its architecture's post-process (the registry's); False for a
        network trained to be used bare."""
        return True

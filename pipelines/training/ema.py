"""An exponential moving average of the generator's weights (StyleGAN's practice).

A GAN's generator moves every step as the discriminator moves: its colours and textures oscillate
around what the losses agree on (users of the reference trainers see "colours change every
iteration"). The average over the last few hundred steps sits near the centre of that oscillation,
so samples, held-out evaluations and exports use it; training itself still updates the raw weights.

The average starts when the last phase (the one that learns the style) starts; before it, it tracks the
generator exactly. Its decay warms up as (1 + n) / (10 + n) after n updates, capped at `decay`, so a short
run is not dominated by the weights it started from; buffers (none in the shipped generators) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class GeneratorEMA:
    def __init__(self, generator: nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = copy.deepcopy(generator).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def track(self, generator: nn.Module) -> None:
        """Copy the generator as it is (before the averaged phase); the average restarts from it."""
        for s, p in zip(self.shadow.parameters(), generator.parameters()):
            s.copy_(p)
        for s, b in zip(self.shadow.buffers(), generator.buffers()):
            s.copy_(b)
        self.updates = 0

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = [p.detach() for p in generator.parameters()]
        torch._foreach_lerp_(list(self.shadow.parameters()), params, 1.0 - d)
        for s, b in zip(self.shadow.buffers(), generator.buffers()):
            s.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.shadow.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shadow.load_state_dict(state["weights"])
        self.updates = int(state["updates"])

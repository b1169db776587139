"""Training health, said while it happens: the failures users of the reference trainers found only
after days (FACTS 8.2, 8.3) are looked for in every metrics row and every held-out evaluation.

`HealthMonitor.observe_losses(row)` and `.observe_eval(row)` return the warnings that newly apply,
each one line; the loop prints them and writes them to metrics.jsonl. A condition warns once, and
again only after it has cleared. The thresholds are named constants below; docs/training.md explains
each check.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The discriminator has collapsed when its loss stays below this fraction of its value in the first
# GAN rows for COLLAPSE_ROWS rows in a row, while the generator's adversarial loss is above its own
# early value by ADV_RISE: D wins every time and G's adversarial signal is saturated.
COLLAPSE_FRACTION = 0.1
COLLAPSE_ROWS = 3
ADV_RISE = 1.5
BASELINE_ROWS = 3  # GAN rows that set the early values

# Outputs of the held-out photos, `[N, H, W, 3] uint8`: flat when the per-image standard deviation is
# below FLAT_STD (in 0..255); black when the mean is below BLACK_MEAN; saturated when more than
# SATURATED_FRACTION of the values are 0 or 255.
FLAT_STD = 4.0
BLACK_MEAN = 12.0
SATURATED_FRACTION = 0.5

# The content score (edge correlation with the input) falls steadily when it dropped in each of the
# last FALLING_EVALS evaluations and by more than FALLING_DROP from its best.
FALLING_EVALS = 3
FALLING_DROP = 0.1
# A GAN phase whose outputs correlate with their inputs' edges less than CONTENT_LOST has lost the photo: the
# healthy runs measured keep 0.27 (a 300-step colorizer) to 0.62 (the demo), a collapsed AnimeGAN v2 run 0.01.
# An init phase that ends under INIT_UNFINISHED has not yet taught the generator to reproduce its input, and the
# GAN phase would start from blobs (11 init steps: 0.04; a 1000-step White-box init phase ends at 0.54).
CONTENT_LOST = 0.1
INIT_UNFINISHED = 0.2
# A colorizer (after its first evaluations) ignores its reference when a warm and a cool tint move its outputs'
# red-minus-blue balance by less than this share of their own difference, and gives every reference the same
# colours when its outputs of one sketch differ by less than ALIKE_LEVELS between references.
REFERENCE_GRACE_EVALS = 1
REFERENCE_IGNORED = 0.05
ALIKE_LEVELS = 2.0


def output_stats(outputs: np.ndarray) -> dict[str, float]:
    """Brightness, contrast and clipping of generated images `[N, H, W, 3] uint8`."""
    x = outputs.reshape(outputs.shape[0], -1, outputs.shape[-1]).astype(np.float32)  # [N, H*W, 3]
    return {
        "mean": float(x.mean()),
        # Over each image's pixels, channel by channel, then averaged: a one-colour image is flat whatever its
        # colour (the spread between its channels is no contrast).
        "std": float(np.mean(x.std(axis=1))),
        "saturated": float(np.mean((outputs == 0) | (outputs == 255))),
    }


@dataclass
class HealthMonitor:
    d_key: str = "loss/total_d"
    adv_key: str = "loss/g_adv"
    content_key: str = "eval/edge_corr"
    _early_d: list[float] = field(default_factory=list)
    _early_adv: list[float] = field(default_factory=list)
    _low_d_rows: int = 0
    _content: deque = field(default_factory=lambda: deque(maxlen=FALLING_EVALS + 1))
    _best_content: float = float("-inf")
    _active: set[str] = field(default_factory=set)
    _evals: int = 0

    def _once(self, kind: str, condition: bool, message: str) -> list[tuple[str, str]]:
        if condition and kind not in self._active:
            self._active.add(kind)
            return [(kind, message)]
        if not condition:
            self._active.discard(kind)
        return []

    def observe_losses(self, row: dict[str, Any]) -> list[tuple[str, str]]:
        """(kind, message) pairs for a metrics row of the GAN phase (other rows are ignored)."""
        d, adv = row.get(self.d_key), row.get(self.adv_key)
        if row.get("phase") != "gan" or d is None:
            return []
        if len(self._early_d) < BASELINE_ROWS:
            self._early_d.append(float(d))
            if adv is not None:
                self._early_adv.append(float(adv))
            return []
        d0 = float(np.median(self._early_d))
        self._low_d_rows = self._low_d_rows + 1 if d < COLLAPSE_FRACTION * d0 else 0
        adv0 = float(np.median(self._early_adv)) if self._early_adv else None
        rising = adv is None or adv0 is None or adv > ADV_RISE * adv0
        collapsed = self._low_d_rows >= COLLAPSE_ROWS and rising
        return self._once("d_collapse", collapsed,
                          f"step {row['step']}: the discriminator has collapsed (its loss {d:.3g} is under "
                          f"{COLLAPSE_FRACTION:g}x its early {d0:.3g} for {self._low_d_rows} rows"
                          + (f", generator adversarial loss up from {adv0:.3g} to {adv:.3g}" if adv0 and adv else "")
                          + "); try a lower --lr-d, a higher --d-adv-weight ratio, or more style images")

    def observe_eval(self, step: int, stats: dict[str, float], content: float | None,
                     means: dict[str, float] | None = None, phase: str = "gan",
                     phase_ends: bool = False) -> list[tuple[str, str]]:
        """(kind, message) pairs from the held-out outputs' `output_stats`, their content score and the recipe's
        own held-out figures (`means`: a colorizer's `ref_tint`, `ref_spread`), evaluated in `phase` (at its
        last step when `phase_ends` and another phase follows)."""
        found = []
        means = means or {}
        self._evals += 1
        if content is not None and phase == "init" and phase_ends:
            found += self._once("init_unfinished", content < INIT_UNFINISHED,
                                f"step {step}: the init phase ends before the generator reproduces its inputs (edge "
                                f"correlation {content:.2f} with them, under {INIT_UNFINISHED:g}): the GAN phase starts from a "
                                "generator that does not draw them yet; raise --init-epochs, or start from --init-weights")
        black = stats["mean"] < BLACK_MEAN
        flat = not black and stats["std"] < FLAT_STD
        if content is not None and phase == "gan":  # black and flat outputs have lost it too, and are said as such
            found += self._once("content_lost", content < CONTENT_LOST and not (black or flat),
                                f"step {step}: the outputs no longer follow their inputs (edge correlation "
                                f"{content:.2f}): the adversarial and style terms overpower the content term; lower "
                                "--adv-weight, or train the init phase longer")
        found += self._once("black", black,
                            f"step {step}: the outputs are black (mean brightness {stats['mean']:.1f} of 255)")
        found += self._once("flat", flat,
                            f"step {step}: the outputs are flat (contrast {stats['std']:.1f} of 255): the generator "
                            "has stopped following its input")
        excess = stats["saturated"] - stats.get("target_saturated", 0.0)
        found += self._once("saturated", excess > SATURATED_FRACTION,
                            f"step {step}: {stats['saturated']:.0%} of the output values are clipped at 0 or 255"
                            + (f" (the targets: {stats['target_saturated']:.0%})" if "target_saturated" in stats else ""))
        if "ref_tint" in means and self._evals > REFERENCE_GRACE_EVALS:
            found += self._once("reference_ignored", means["ref_tint"] < REFERENCE_IGNORED,
                                f"step {step}: the colorizer ignores its reference (a warm and a cool reference move the "
                                f"outputs' red-blue balance by {means['ref_tint']:.0%} of their own difference); train with "
                                f"--reference crop")
        if "ref_spread" in means and self._evals > REFERENCE_GRACE_EVALS:
            found += self._once("outputs_alike", means["ref_spread"] < ALIKE_LEVELS,
                                f"step {step}: every reference gives the same colours (outputs differ by "
                                f"{means['ref_spread']:.1f} levels between references)")
        if content is not None:
            self._content.append(content)
            self._best_content = max(self._best_content, content)
            seq = list(self._content)
            falling = (len(seq) == FALLING_EVALS + 1 and all(b < a for a, b in zip(seq, seq[1:]))
                       and self._best_content - content > FALLING_DROP)
            found += self._once("content_falling", falling,
                                f"step {step}: the content score (edge correlation with the input) fell in each of the "
                                f"last {FALLING_EVALS} evaluations, to {content:.3f} from a best of {self._best_content:.3f}; "
                                "the style terms are overpowering the content term")
        return found

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps so that a resumed run warns as a straight one would."""
        return {"early_d": self._early_d, "early_adv": self._early_adv, "low_d_rows": self._low_d_rows,
                "content": list(self._content), "best_content": self._best_content, "active": sorted(self._active), "evals": self._evals}

    def load_state(self, s: dict[str, Any]) -> None:
        self._early_d, self._early_adv = list(s["early_d"]), list(s["early_adv"])
        self._low_d_rows = int(s["low_d_rows"])
        self._content = deque(s["content"], maxlen=FALLING_EVALS + 1)
        self._best_content = float(s["best_content"])
        self._active = set(s["active"])
        self._evals = int(s.get("evals", 0))  # checkpoints from before this counter: counted from the resume on


def phase_ranges(phases: list[tuple[str, int]], steps_per_epoch: int, total_steps: int) -> list[dict[str, Any]]:
    """Each phase's first and last step (1-based) given (name, epochs) in order; phases past
    `total_steps` get `first` > `total_steps` and `runs: False`."""
    out, start = [], 0
    for name, epochs in phases:
        first, last = start + 1, start + epochs * steps_per_epoch
        out.append({"phase": name, "epochs": epochs, "first": first, "last": min(last, total_steps),
                    "runs": first <= total_steps, "complete": last <= total_steps})
        start = last
    return out

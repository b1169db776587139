"""The reference-following figures on constructed colorizers: one that copies its reference's colours, one that
ignores the reference, one that turns colours the wrong way; and the network adapter on a tiny model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import skimage_photo
from pipelines.evaluation.colorization import (mean_hue, network_colorizer, red_minus_blue, reference_following,
                                               tint, turn_hue)
from pipelines.data.sketches import XDOG_DEFAULTS, xdog

NAMES = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    ills = np.stack([cv2.resize(skimage_photo(n), (64, 64), interpolation=cv2.INTER_AREA) for n in NAMES])  # [4, 64, 64, 3]
    return np.stack([xdog(i, **XDOG_DEFAULTS) for i in ills]), ills


def follower(sketches: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Paints the reference's own picture under the sketch's lines: follows every colour change fully."""
    lines = sketches.astype(np.float32)[..., None] / 255.0
    return np.clip(np.rint(references.astype(np.float32) * lines), 0, 255).astype(np.uint8)


def ignorer(sketches: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The same fixed colour for every reference: the failure the issue saw."""
    base = np.array([180, 150, 120], np.float32)
    return np.clip(np.rint(base * sketches.astype(np.float32)[..., None] / 255.0), 0, 255).astype(np.uint8)


def contrarian(sketches: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Swaps red and blue of the reference: moves colours, the wrong way for tints."""
    return follower(sketches, references[..., ::-1])


def test_tint_and_hue_helpers_move_the_way_they_say():
    rgb = skimage_photo("coffee", 48)
    assert red_minus_blue(tint(rgb, True)) > red_minus_blue(rgb) > red_minus_blue(tint(rgb, False))
    d = (mean_hue(turn_hue(rgb, 30)) - mean_hue(rgb) + 180) % 360 - 180
    assert 20 < d < 40


def test_figures_tell_a_follower_from_an_ignorer(held_out):
    sketches, ills = held_out
    f = reference_following(follower, sketches, ills)
    assert f.tint > 0.8 and f.hue > 0.7 and f.nearest == 1.0 and f.spread > 10 and f.lines > 20
    i = reference_following(ignorer, sketches, ills)
    assert abs(i.tint) < 1e-6 and abs(i.hue) < 1e-6 and i.spread == 0.0
    assert 0 <= f.distance < i.distance <= 1
    assert i.nearest <= 1.0 / 3 + 1e-9  # all outputs alike: at most one reference per sketch is "nearest"
    c = reference_following(contrarian, sketches, ills)
    assert c.tint < -0.5  # a warm reference gives a cool output


def test_network_adapter_runs_a_tiny_colorizer(held_out):
    import torch

    from pipelines.models.registry import build_generator
    from pipelines.models.vgg import build_vgg_fc1

    sketches, ills = held_out
    torch.manual_seed(0)
    run = network_colorizer(build_generator("style2paints_v1").eval(), build_vgg_fc1("random").eval())
    out = run(sketches[:2], ills[:2])
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8
    again = run(sketches[:2], ills[:2])
    assert np.array_equal(out, again)  # deterministic

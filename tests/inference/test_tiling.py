"""Tiled stylizing stays close to untiled: global norm statistics frozen, overlaps blended."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from conftest import skimage_photo
from pipelines.models.registry import InferenceModel
from pipelines.inference.engine import Engine
from pipelines.inference.tile_blend import plan_axis
from pipelines.inference.tiling import stylize_tiled


def to_input(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1


def untiled(model, rgb: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        y = model(to_input(rgb))
    return ((y[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


@pytest.fixture
def image() -> np.ndarray:
    return cv2.resize(skimage_photo("astronaut"), (150, 118), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("arch", ["animegan_v2", "animegan_v1"])
def test_tiled_close_to_untiled(arch: str, image: np.ndarray):
    torch.manual_seed(1)
    model = InferenceModel.for_architecture(arch).eval()
    ref = untiled(model, image)
    out, rep = stylize_tiled(model, image, tile=80, overlap=32, to_input=to_input, stats_pixels=1 << 20)
    assert out.shape == image.shape and rep.tiles == len(plan_axis(118, 80, 32)) * len(plan_axis(150, 80, 32)) > 1 and rep.norm_layers > 0
    mad = np.abs(out.astype(int) - ref).mean()
    assert mad < 3.0, mad
    # Without frozen statistics, the same tiles are far off: the test can tell the difference.
    with torch.inference_mode():
        naive = np.zeros_like(ref)
        for y0 in range(0, 118, 80):
            for x0 in range(0, 150, 80):
                naive[y0:y0 + 80, x0:x0 + 80] = untiled(model, image[y0:y0 + 80, x0:x0 + 80])
    assert np.abs(naive.astype(int) - ref).mean() > mad + 2
    # The model is left unpatched.
    assert np.array_equal(untiled(model, image), ref)


def test_plan_covers_with_overlap():
    for length, tile, ov in [(100, 64, 16), (64, 64, 16), (30, 64, 16), (1000, 256, 64)]:
        spans = plan_axis(length, tile, ov)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(min(tile, length) <= e - s < tile + 4 for s, e in spans)
        assert all(s % 4 == 0 for s, _ in spans)  # the networks' stride phase is kept
        assert all(b[0] <= a[1] - min(ov, tile) for a, b in zip(spans, spans[1:]))


def test_engine_tiles_what_does_not_fit(image: np.ndarray):
    torch.manual_seed(2)
    model = InferenceModel.for_architecture("animegan_v2").eval()
    ref = untiled(model, image)
    # A budget of a quarter of the image forces tiling and a downscaled statistics pass.
    engine = Engine(model, torch.device("cpu"), pixel_budget=118 * 150 // 4)
    assert engine.needs_tiling(118, 150) and not engine.needs_tiling(50, 50)
    out = engine.stylize_image(image)
    assert out.shape == image.shape
    assert np.abs(out.astype(int) - ref).mean() < 6.0


def test_one_memory_budget_bounds_every_pass(image: np.ndarray):
    """--max-memory sizes the statistics pass and the tiles (with the image's accumulators paid for);
    --tile alone bounds the statistics pass to one tile's worth as well."""
    from pipelines.inference.sizing import TILED_BYTES_PER_IMAGE_PIXEL

    model = InferenceModel.for_architecture("animegan_v2").eval()
    budget = 96 * 96 * 3400  # bytes: about a 96 px square of activations
    engine = Engine(model, torch.device("cpu"), fast_cpu=False, memory_budget=budget)
    assert engine.pixel_budget == budget // engine.bytes_per_pixel  # the statistics pass's pixels
    h, w = image.shape[:2]
    side = engine.tile_side(h, w)
    assert side * side * engine.bytes_per_pixel + TILED_BYTES_PER_IMAGE_PIXEL * h * w <= budget
    assert engine.needs_tiling(h, w) and engine.stylize_image(image).shape == image.shape
    tiled = Engine(model, torch.device("cpu"), fast_cpu=False, tile=64)
    assert tiled.pixel_budget == 64 * 64 and tiled.tile_side(h, w) == 64


def test_cpu_bf16_casts_the_generator_once_and_keeps_the_post_process_in_fp32():
    from pipelines.inference.engine import _Cast

    torch.manual_seed(0)
    model = InferenceModel.for_architecture("whitebox").eval()
    exact = Engine(InferenceModel.for_architecture("whitebox", generator=copy.deepcopy(model.generator)),
                   torch.device("cpu"), fast_cpu=False)
    fast = Engine(model, torch.device("cpu"), torch.bfloat16)
    assert isinstance(fast.model.generator, _Cast)
    assert {p.dtype for p in fast.model.generator.parameters()} == {torch.bfloat16}
    assert fast.model.postprocess is not None  # the guided filter runs on the float32 it returns
    rgb = np.ascontiguousarray(skimage_photo("chelsea", 96)[:80, :96])
    a, b = exact.stylize_batch(rgb[None]).astype(int), fast.stylize_batch(rgb[None]).astype(int)
    assert np.abs(a - b).mean() < 1.5
    assert fast.check_precision(rgb) is None and fast.dtype == torch.bfloat16

"""`--match-colors`: the colorizer's output moved onto its reference's colours (pipelines.inference.color_match)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.evaluation.metrics import color_histogram, histogram_distance
from pipelines.fileio import read_image, write_image
from pipelines.inference.color_match import PALETTE_SAMPLES, histogram_match, lab_match, match_colors, palette_match

from conftest import skimage_photo


def _lab_stats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    return lab.mean((0, 1)), lab.std((0, 1))


def test_lab_match_takes_the_references_means_and_spreads_and_keeps_the_layout():
    image, ref = skimage_photo("chelsea", 64), skimage_photo("coffee", 48)
    out = lab_match(image, ref)
    (m_in, _), (m_out, s_out), (m_ref, s_ref) = _lab_stats(image), _lab_stats(out), _lab_stats(ref)
    assert out.shape == image.shape and out.dtype == np.uint8
    # Within rounding and the clipping of colours outside the RGB gamut (6 levels of spread measured).
    assert np.abs(m_out - m_ref).max() < 4 and np.abs(s_out - s_ref).max() < 8
    assert np.abs(m_out - m_ref).sum() < 0.2 * np.abs(m_in - m_ref).sum()
    # Where the image was lighter, the output is lighter: the layout is the image's, not the reference's.
    gray_in, gray_out = image.mean(-1).ravel(), out.mean(-1).ravel()
    assert np.corrcoef(gray_in, gray_out)[0, 1] > 0.9


def test_histogram_match_takes_the_references_palette():
    image, ref, other = skimage_photo("chelsea", 64), skimage_photo("coffee", 48), skimage_photo("astronaut", 48)
    out = histogram_match(image, ref)
    for c in range(3):  # each channel's values are the reference's, rank for rank (quantiles within a level)
        q = np.linspace(0.02, 0.98, 9)
        assert np.abs(np.quantile(out[..., c], q) - np.quantile(ref[..., c], q)).max() <= 2
    h = color_histogram(out)
    assert histogram_distance(h, color_histogram(ref)) < histogram_distance(h, color_histogram(other))
    assert histogram_distance(h, color_histogram(ref)) < histogram_distance(color_histogram(image), color_histogram(ref))


def _two_colour_case() -> tuple[np.ndarray, np.ndarray]:
    """A grey ramp with noise (what an under-trained colorizer gives) and a reference of pure red and pure blue."""
    ramp = np.repeat(np.linspace(0, 255, 64)[None, :, None], 3, 2).repeat(32, 0)
    image = np.clip(ramp + np.random.default_rng(1).normal(0, 8, ramp.shape), 0, 255).astype(np.uint8)
    ref = np.zeros((20, 20, 3), np.uint8)
    ref[:10, :, 0] = 255
    ref[10:, :, 2] = 255
    return image, ref


def _near(rgb: np.ndarray, colour: tuple[int, int, int], levels: int = 40) -> np.ndarray:
    return np.abs(rgb.astype(np.int32) - np.array(colour)).sum(-1) < levels


def test_palette_match_gives_only_the_references_colours_in_its_proportions():
    image, ref = _two_colour_case()
    out = palette_match(image, ref, detail=0)  # the transfer alone; the detail step is tested below
    red, blue = _near(out, (255, 0, 0)), _near(out, (0, 0, 255))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (red | blue).mean() > 0.98 and 0.4 < red.mean() < 0.6
    # Matching the channels one by one raises red and blue together where the ramp is light (magenta) and lowers
    # them together where it is dark (black): colours the reference does not have.
    per_channel = histogram_match(image, ref).astype(np.int32)
    assert (_near(per_channel, (255, 0, 0)) | _near(per_channel, (0, 0, 255))).mean() < 0.1
    magenta, black = (per_channel[..., 0] > 128) & (per_channel[..., 2] > 128), per_channel.sum(-1) < 128
    assert (magenta | black).mean() > 0.8 and magenta.mean() > 0.2


def test_palette_match_takes_the_references_colour_distribution_on_large_images():
    image, ref, other = skimage_photo("chelsea", 300), skimage_photo("coffee", 96), skimage_photo("astronaut", 96)
    assert image.shape[0] * image.shape[1] > PALETTE_SAMPLES  # the maps are estimated on a sample, applied to all
    ref_hist = color_histogram(ref)
    out = palette_match(image, ref, detail=0)
    to_ref = histogram_distance(color_histogram(out), ref_hist)
    assert to_ref < histogram_distance(color_histogram(out), color_histogram(other))
    # Nearer the reference's 3-D distribution than per-channel matching gets (0.16 against 0.24 measured).
    assert to_ref < 0.75 * histogram_distance(color_histogram(histogram_match(image, ref)), ref_hist)
    # With the photo's own fine detail back (the default), still its reference's colours, not another's.
    full = palette_match(image, ref)
    assert histogram_distance(color_histogram(full), ref_hist) < histogram_distance(color_histogram(full), color_histogram(other))
    assert np.array_equal(full, palette_match(image, ref))  # the same output on every run
    # The layout is the image's: lighter stays lighter.
    assert np.corrcoef(image.mean(-1).ravel(), full.mean(-1).ravel())[0, 1] > 0.8


def test_palette_match_does_not_stretch_faint_stripes_into_bands():
    # What an under-trained colorizer gives in a flat sky: one colour with stripes 2 levels deep, every other row.
    image = np.empty((200, 64, 3), np.uint8)
    image[0::2], image[1::2] = (120, 130, 140), (122, 132, 142)
    ref = skimage_photo("coffee", 96)
    stretched, kept = palette_match(image, ref, detail=0), palette_match(image, ref)
    rows = lambda rgb: rgb.astype(np.float32).mean((1, 2))  # noqa: E731  one value per row
    assert rows(stretched).std() > 20  # the transfer alone turns the two rows' colours into far-apart ones
    assert rows(kept).std() < 3  # detail finer than a Gaussian of 1% of the side is the image's own: 2 levels deep
    # ...while the colour is the reference's: the transfer's mean, not the image's grey-blue.
    assert np.abs(kept.mean((0, 1)) - stretched.mean((0, 1))).max() < 3
    assert np.abs(kept.mean((0, 1)) - image.mean((0, 1))).max() > 10


def test_a_flat_output_and_off_and_an_unknown_mode():
    grey = np.full((16, 16, 3), 128, np.uint8)
    ref = skimage_photo("coffee", 32)
    out = lab_match(grey, ref)
    assert np.isfinite(out).all() and out.std((0, 1)).max() < 1  # flat stays flat, at the reference's mean colour
    assert np.abs(_lab_stats(out)[0] - _lab_stats(ref)[0]).max() < 3
    assert match_colors(grey, ref, "off") is grey
    with pytest.raises(ValueError, match="histogram"):
        match_colors(grey, ref, "lut")


def test_colorize_match_colors_follows_each_reference_and_keeps_the_lines(untrained_colorizer, tmp_path):
    weights = untrained_colorizer
    from pipelines.data.sketches import xdog

    from conftest import anime_like

    sketch = np.repeat(xdog(anime_like(skimage_photo("chelsea", 80)))[:, :, None], 3, axis=2)
    write_image(tmp_path / "in" / "cat.png", sketch)
    refs = {"coffee": skimage_photo("coffee", 96), "astronaut": skimage_photo("astronaut", 96)}
    for name, rgb in refs.items():
        write_image(tmp_path / f"{name}.png", rgb)
    outs = {}
    for name in refs:
        for mode in ("off", "histogram", "palette"):
            out = tmp_path / f"{name}-{mode}"
            res = CliRunner().invoke(app, ["colorize", str(tmp_path / "in"), "-r", str(tmp_path / f"{name}.png"), "-w",
                                           str(weights), "-o", str(out), "--match-colors", mode, "--quiet"])
            assert res.exit_code == 0, res.output
            outs[name, mode] = read_image(out / "cat.png")
    lines = sketch[..., 0] < 128
    for (name, mode), got in outs.items():
        if mode == "off":
            continue
        rgb = refs[name]
        assert got.shape == sketch.shape and got[lines].max() <= 5  # --keep-lines: multiplied after the matching
        own = histogram_distance(color_histogram(got[~lines][None]), color_histogram(rgb))
        other = [histogram_distance(color_histogram(got[~lines][None]), color_histogram(r)) for n, r in refs.items() if n != name]
        assert own < min(other)
        # The untrained network's own colours are far from either reference; matching brings them nearer.
        assert own < histogram_distance(color_histogram(outs[name, "off"][~lines][None]), color_histogram(rgb))
    res = CliRunner().invoke(app, ["colorize", str(tmp_path / "in"), "-r", str(tmp_path / "coffee.png"), "-w",
                                   str(weights), "-o", str(tmp_path / "x"), "--match-colors", "lut"])
    assert res.exit_code == 2 and "lut" in res.output

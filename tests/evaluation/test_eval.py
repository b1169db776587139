"""`animegan eval`: the figures equal their published definitions, pairing by relative path, JSON shape,
style distances, and the FID/KID path with a stand-in feature network."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.evaluation import metrics as M
from pipelines.evaluation.fid import fid_kid, image_features
from pipelines.fileio import write_image

from conftest import build_tiny_dataset, skimage_photo


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_psnr_is_scikit_images_and_ssim_is_wangs_form_as_torchmetrics_computes_it(name):
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    a = skimage_photo(name, 96)
    b = noisy(a, 12)
    assert M.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-12)
    wang = structural_similarity(a, b, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    assert M.ssim(a, b) == pytest.approx(wang, abs=1e-12)
    # torchmetrics computes the same definition (its borders are handled otherwise: closer on larger images);
    # scikit-image's default form (7x7 uniform window, sample covariances) is further off.
    big = skimage_photo(name, 256)
    noisy_big = noisy(big, 12)
    t = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    theirs = float(tm_ssim(t(noisy_big), t(big), data_range=1.0))
    assert abs(M.ssim(big, noisy_big) - theirs) < 0.015
    assert abs(M.ssim(big, noisy_big) - theirs) < abs(structural_similarity(big, noisy_big, data_range=255, channel_axis=-1) - theirs)
    assert M.psnr(a, a) == float("inf") and M.ssim(a, a) == pytest.approx(1.0)
    small = skimage_photo(name, 8)
    assert M.ssim(small, noisy(small, 12)) < 1.0  # images under 11 px use a smaller window


def test_edge_corr_and_color_shift_rank_what_they_should():
    a = skimage_photo("chelsea", 128)
    assert M.edge_corr(a, a) == pytest.approx(1.0)
    # a recolouring keeps every edge; a blur loses most; another photo shares none
    tinted = np.clip(a.astype(int) + [40, -20, -30], 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(a, (0, 0), 4)
    other = cv2.resize(skimage_photo("rocket", 128), (a.shape[1], a.shape[0]))
    assert M.edge_corr(a, tinted) > 0.95 > M.edge_corr(a, blurred) and M.edge_corr(a, blurred) > M.edge_corr(a, other)
    assert abs(M.edge_corr(a, other)) < 0.3
    assert M.color_shift(a, a) == pytest.approx(0.0, abs=1e-9)
    assert M.color_shift(a, tinted) > 10 > M.color_shift(a, noisy(a, 5))


def test_ms_ssim_needs_five_scales():
    a = skimage_photo("astronaut", 192)
    assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < M.ms_ssim(a, noisy(a, 20)) < 0.999
    assert M.ms_ssim(a[:100, :100], a[:100, :100]) is None


def test_histogram_distance_orders_palettes():
    a = skimage_photo("coffee", 96)
    h = M.color_histogram(a)
    assert h.sum() == pytest.approx(1.0) and M.histogram_distance(h, h) == pytest.approx(0.0, abs=1e-6)
    assert M.histogram_distance(h, M.color_histogram(255 - a)) > M.histogram_distance(h, M.color_histogram(noisy(a, 8)))


@pytest.fixture
def outputs_and_inputs(tmp_path):
    """inputs/{a,sub/b}.jpg and outputs/{a,sub/b}.png (another suffix, as `stylize --format png` writes)."""
    names = {"a": "astronaut", "sub/b": "coffee", "sub/c": "rocket"}
    for rel, photo in names.items():
        img = skimage_photo(photo, 180)
        write_image(tmp_path / "inputs" / f"{rel}.jpg", img)
        if rel != "sub/c":  # c has no output
            write_image(tmp_path / "outputs" / f"{rel}.png", noisy(img, 10))
    write_image(tmp_path / "outputs" / "orphan.png", skimage_photo("chelsea", 64))  # no input
    return tmp_path


def test_eval_json_pairs_by_relative_path(outputs_and_inputs):
    root = outputs_and_inputs
    res = CliRunner().invoke(app, ["eval", str(root / "outputs"), "--reference", str(root / "inputs"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # the unpaired output's warning goes to stderr
    assert set(doc) >= {"metrics", "count", "images", "unpaired", "protocol"}
    assert set(doc["metrics"]) == {"psnr", "ssim", "ms_ssim", "edge_corr", "color_shift"}
    assert doc["count"] == 3 and [p.endswith("orphan.png") for p in doc["unpaired"]] == [True]
    paired = {r["output"].split("outputs/")[1]: r for r in doc["images"] if "reference" in r}
    assert set(paired) == {"a.png", "sub/b.png"} and paired["sub/b.png"]["reference"].endswith("inputs/sub/b.jpg")
    for row in paired.values():  # each figure is the metric module's, and the means are their means
        from pipelines.fileio import read_image

        out, ref = read_image(row["output"]), read_image(row["reference"])
        assert row["psnr"] == pytest.approx(M.psnr(ref, out)) and row["ssim"] == pytest.approx(M.ssim(ref, out))
    assert doc["metrics"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in paired.values()]))


def test_eval_table_and_a_bad_output_file(outputs_and_inputs):
    root = outputs_and_inputs
    (root / "outputs" / "broken.png").write_bytes(b"not a png")
    res = CliRunner().invoke(app, ["eval", str(root / "outputs"), "-r", str(root / "inputs"), "-q"])
    assert res.exit_code == 1  # one output unreadable: said, the rest measured
    text = " ".join(res.output.split())
    assert "broken.png" in text and "3 outputs measured, 1 unreadable" in text and "psnr" in text


def test_eval_style_distances_with_random_vgg(tmp_path, monkeypatch):
    import pipelines.evaluation.evaluate as evaluate

    # The figures' wiring at the images' own size: VGG19 at the 256 px of real use took 53 s of this test on an
    # AVX2 CPU, where it says nothing more.
    monkeypatch.setattr(evaluate, "GRAM_SIDE", 64)
    ds = build_tiny_dataset(tmp_path / "ds", size=64, with_smooth=False)
    res = CliRunner().invoke(app, ["eval", str(ds.root / "photo"), "--reference", str(ds.root / "photo"),
                                   "--style", str(ds.root), "--vgg-weights", "random", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    # outputs = inputs here, so both sides of each comparison are the same figure
    assert m["style_hist"] == pytest.approx(m["input_style_hist"]) and 0 < m["style_hist"] < 1
    assert m["style_gram"] == pytest.approx(m["input_style_gram"]) and m["style_gram"] > 0
    again = CliRunner().invoke(app, ["eval", str(ds.root / "style"), "--style", str(ds.root), "--vgg-weights", "random", "--json"])
    m2 = json.loads(again.stdout)["metrics"]
    assert m2["style_hist"] == pytest.approx(0.0, abs=1e-6) and m2["style_gram"] == pytest.approx(0.0, abs=1e-9)


class TinyFeatures(nn.Module):
    """Stand-in for Inception: uint8 images of any size -> 8 pooled features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x.float() / 255).mean(dim=(2, 3))


def test_fid_and_kid_with_a_stand_in_network():
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(24)]
    dark = [(rng.random((36, 40, 3)) * 80).astype(np.uint8) for _ in range(20)]
    net = TinyFeatures()
    f_real, f_dark = image_features(net, real), image_features(net, dark)
    assert f_real.shape == (24, 8)
    same = fid_kid(f_real, image_features(net, real))
    assert abs(same.fid) < 1e-6 and abs(same.kid_mean) < 1e-3
    apart = fid_kid(f_real, f_dark)
    assert apart.fid > 0.01 and apart.kid_mean > 0.01 and (apart.real, apart.fake) == (24, 20)
    assert fid_kid(f_real, f_dark).kid_mean == apart.kid_mean  # seeded subsets: repeatable


def test_inception_file_problems_are_one_line(tmp_path, outputs_and_inputs):
    root = outputs_and_inputs
    missing = CliRunner().invoke(app, ["eval", str(root / "outputs"), "--inception-weights", str(tmp_path / "none.pth"),
                                       "--fid-against", str(root / "inputs")])
    assert missing.exit_code == 2 and "pt_inception-2015-12-05-6726825d.pth" in " ".join(missing.output.split())
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, junk)
    wrong = CliRunner().invoke(app, ["eval", str(root / "outputs"), "--inception-weights", str(junk), "--fid-against", str(root / "inputs")])
    assert wrong.exit_code == 2 and "not the Inception-v3 FID weights" in " ".join(wrong.output.split())
    nothing = CliRunner().invoke(app, ["eval", str(root / "outputs"), "--inception-weights", str(junk)])
    assert nothing.exit_code == 2 and "--fid-against" in nothing.output


def test_eval_fid_path_end_to_end_with_a_stand_in_network(tmp_path, monkeypatch):
    """The whole `eval --inception-weights` path (style set read once for histograms, Grams and features;
    or a folder given with --fid-against), with the stand-in network in place of Inception."""
    import pipelines.evaluation.fid as fid

    monkeypatch.setattr(fid, "load_inception", lambda path: TinyFeatures())
    ds = build_tiny_dataset(tmp_path / "ds", size=64, with_smooth=False)
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"stand-in")
    res = CliRunner().invoke(app, ["eval", str(ds.root / "photo"), "--style", str(ds.root), "--vgg-weights", "random",
                                   "--inception-weights", str(weights), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    assert {"style_hist", "style_gram", "fid", "kid", "kid_std"} <= set(m) and m["fid"] > 0
    same = CliRunner().invoke(app, ["eval", str(ds.root / "photo"), "--inception-weights", str(weights),
                                    "--fid-against", str(ds.root / "photo"), "--json"])
    assert same.exit_code == 0, same.output
    assert abs(json.loads(same.stdout)["metrics"]["fid"]) < 1e-6  # a set against itself


def test_eval_with_nothing_to_compare_is_an_error(outputs_and_inputs):
    """`eval OUT` alone used to print "N outputs measured" and exit 0 without a single figure."""
    res = CliRunner().invoke(app, ["eval", str(outputs_and_inputs / "outputs")])
    assert res.exit_code == 2
    assert "nothing to compare with" in " ".join(res.output.split()) and "--reference" in res.output

"""The known-answer benchmark's pieces: a deterministic cartoon look, and gap figures that are 0 for the
photo, 1 for the answer and of the right sign in between (pipelines/data/cartoon.py,
pipelines/evaluation/known_answer.py, pipelines/known_answer.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.cartoon import LOOKS, cartoonize, outline_mask
from pipelines.evaluation.known_answer import gap_figures, outline_contrast
from pipelines.known_answer import labelled_grid, skimage_quarters, split_halves, split_names


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[96:224, 160:288])  # 128x128, real photo detail


def test_looks_are_deterministic_and_differ(photo):
    outs = {name: cartoonize(photo, name) for name in LOOKS}
    for name, out in outs.items():
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert np.array_equal(out, cartoonize(photo.copy(), name)), name  # a pure function of the pixels
        assert np.abs(out.astype(int) - photo).mean() > 8, name  # a visible change
    warm, cool = outs["warm"].reshape(-1, 3).mean(0), outs["cool"].reshape(-1, 3).mean(0)
    assert warm[0] - warm[2] > cool[0] - cool[2] + 20  # warm is redder than blue, cool the other way
    with pytest.raises(ValueError, match="unknown cartoon look"):
        cartoonize(photo, "sepia")


def test_outlines_are_dark_in_the_answer(photo):
    for name, look in LOOKS.items():
        mask = outline_mask(photo, look)
        assert 0.02 < mask.mean() < 0.5, name
        answer = cartoonize(photo, look)
        assert outline_contrast(answer, mask) > outline_contrast(photo, mask) + 10, name


def test_gap_figures_are_zero_for_the_photo_one_for_the_answer_and_signed_between(photo):
    answer = cartoonize(photo, "warm")
    mask = outline_mask(photo, LOOKS["warm"])
    f = lambda out: gap_figures([photo], [out], [answer], [mask])  # noqa: E731
    zero, one = f(photo), f(answer)
    for k in ("color_closed", "outline_closed", "ssim_closed"):
        assert zero[k] == pytest.approx(0.0, abs=1e-9), k
        assert one[k] == pytest.approx(1.0, abs=1e-9), k
    assert one["max_cast"] == 0.0 and zero["max_cast"] > 10

    # Halfway in colour (a blend of the blurred images) closes part of the colour gap and none is lost.
    half = np.clip(0.5 * photo.astype(float) + 0.5 * answer, 0, 255).astype(np.uint8)
    mid = f(half)
    assert 0.2 < mid["color_closed"] < 0.9 and 0.2 < mid["outline_closed"] < 0.8
    assert mid["ssim_output"] > mid["ssim_photo"]

    # A cast the other way (bluer, where the answer is warmer) is negative colour progress.
    bluish = np.clip(photo.astype(int) + np.array([-40, 0, 40]), 0, 255).astype(np.uint8)
    assert f(bluish)["color_closed"] < 0
    # Brighter outline pixels than the photo's are negative outline progress.
    lifted = photo.copy()
    lifted[mask] = np.clip(lifted[mask].astype(int) + 60, 0, 255).astype(np.uint8)
    assert f(lifted)["outline_closed"] < 0


def test_split_is_deterministic_and_disjoint():
    names = [f"p{i:03d}" for i in range(30)]
    train, held = split_names(names, 6)
    assert len(held) == 6 and len(train) == 24 and not set(train) & set(held)
    assert split_names(list(reversed(names)), 6) == (train, held)

    rng = np.random.default_rng(0)
    photos = {n: rng.integers(0, 255, size=(40, 60 + k, 3), dtype=np.uint8) for k, n in enumerate(train[:6])}
    style, photo = split_halves(photos)
    assert len(style) == len(photo) == 6
    for name, img in photos.items():
        a, b = style[f"{name}-s"], photo[f"{name}-p"]
        assert a.shape[0] == b.shape[0] == 40 and a.shape[1] + b.shape[1] == img.shape[1]  # cut along the long side
        assert sorted([a.tobytes(), b.tobytes()]) == sorted([np.ascontiguousarray(img[:, : img.shape[1] // 2]).tobytes(),
                                                             np.ascontiguousarray(img[:, img.shape[1] // 2:]).tobytes()])
    assert split_halves(photos)[0].keys() == style.keys()
    assert any(np.array_equal(style[f"{n}-s"], photos[n][:, : photos[n].shape[1] // 2]) for n in photos)
    assert any(np.array_equal(style[f"{n}-s"], photos[n][:, photos[n].shape[1] // 2:]) for n in photos)


def test_skimage_quarters_hold_out_one_quarter_per_photo():
    train, held = skimage_quarters()
    assert len(held) == 5 and len(train) == 15
    for name, img in held.items():
        assert img.ndim == 3 and min(img.shape[:2]) >= 100
        assert not any(np.array_equal(img, t) for t in train.values())


def test_labelled_grid_shape():
    a = np.zeros((40, 60, 3), np.uint8)
    grid = labelled_grid([[("x", a), ("y", a)], [("z", a)]], ["title"], height=50)
    assert grid.ndim == 3 and grid.shape[1] >= 2 * 75 and grid.shape[0] > 2 * 50
    assert (grid[:20] == 255).mean() > 0.8


@pytest.mark.slow
def test_benchmark_machinery_end_to_end_on_tiny_images(tmp_path):
    """build_set -> train (init, then resumed into the GAN phase, as bench_style_learning.py does) -> measure."""
    from pipelines.data.manifest import Dataset
    from pipelines.known_answer import build_set, load_held, measure, photo_baseline
    from pipelines.progress import Reporter
    from pipelines.training.loop import TrainRequest, run_train

    train_q, held_q = skimage_quarters()
    kas = build_set(train_q, "cool", tmp_path / "ka", Reporter(), short_side=48, held_photos=held_q)
    m = Dataset.open(kas.dataset).manifest
    assert len(m.records("style")) == len(m.records("smooth")) == len(m.records("photo")) == 15
    assert kas.held.names == sorted(held_q) and all(min(p.shape[:2]) == 48 for p in kas.held.photos)
    assert not set(kas.held.names) & {n.rsplit("-", 1)[0] for n in kas.photo_names + kas.style_names}
    assert load_held(tmp_path / "ka").names == kas.held.names

    base = photo_baseline(kas.held)
    assert base["color_closed"] == base["outline_closed"] == 0 and base["max_cast"] > 5
    run = tmp_path / "ka" / "run"
    common = dict(dataset=str(kas.dataset), out=str(run), model="whitebox", image_size=32, batch_size=4,
                  device="cpu", vgg_weights="random", workers=0, init_epochs=2, checkpoint_every=1000)
    run_train(TrainRequest(overrides={**common, "max_steps": 6}), Reporter())
    init = measure(run, kas.held)
    run_train(TrainRequest(overrides={**common, "max_steps": 12}, resume=True), Reporter())
    final = measure(run, kas.held)
    for figures in (init.figures, final.figures):
        assert set(base) == set(figures) and all(np.isfinite(v) for v in figures.values())
    assert len(final.outputs) == 5 and all(o.shape == p.shape for o, p in zip(final.outputs, kas.held.photos))
    assert init.figures != final.figures
    # A second build over the same folder reuses what exists.
    again = build_set(train_q, "cool", tmp_path / "ka", Reporter(), short_side=48, held_photos=held_q)
    assert again.style_names == kas.style_names
    assert len(Dataset.open(kas.dataset).manifest.records("photo")) == 15

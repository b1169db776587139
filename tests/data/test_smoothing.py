"""Edge smoothing: bit-exact to the per-pixel reference recipe; make-smooth end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from conftest import SKIMAGE_PHOTOS, anime_like, build_tiny_dataset, skimage_photo
from pipelines.data import smoothing
from pipelines.errors import InputError, PartialFailure
from pipelines.fileio import encode_image, read_image, sha256_bytes
from pipelines.data.manifest import Dataset, DerivedSource, ImportedSource, make_record
from pipelines.progress import RecordingReporter
from pipelines.data.smoothing import SmoothOptions, make_smooth, smooth_edges


def reference_smooth_bgr(bgr: np.ndarray) -> np.ndarray:
    """The recipe as written, one pixel at a time, on OpenCV's BGR order (slow: tiny images only)."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(gray, 100, 200)
    dilated = cv2.dilate(edges, np.ones((5, 5), np.uint8))
    padded = np.pad(bgr, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    g = cv2.getGaussianKernel(5, 0)
    kernel = g * g.transpose(1, 0)
    out = np.copy(bgr)
    ys, xs = np.where(dilated != 0)
    for y, x in zip(ys, xs):
        for c in range(3):
            # Assigning the float64 sum into the uint8 array truncates, as the reference does.
            out[y, x, c] = np.sum(np.multiply(padded[y : y + 5, x : x + 5, c], kernel))
    return out


def _via_reference(rgb: np.ndarray) -> np.ndarray:
    return reference_smooth_bgr(np.ascontiguousarray(rgb[:, :, ::-1]))[:, :, ::-1]


def _random_blocks(rng, h: int, w: int, levels: int = 4) -> np.ndarray:
    """Flat coloured blocks with hard edges: lots of masked pixels whose windows are flat."""
    small = rng.integers(0, levels, (max(1, h // 4), max(1, w // 4), 3)) * (255 // (levels - 1))
    return cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


def _cases() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    cases = [
        ("noise", rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)),
        ("blocks", _random_blocks(rng, 40, 36)),
        ("astronaut", skimage_photo("astronaut", 40)),
        ("coffee_anime", anime_like(skimage_photo("coffee", 44))),
        ("chelsea_odd", skimage_photo("chelsea", 37)[:37, :53]),
        ("tiny_1x9", rng.integers(0, 256, (1, 9, 3), dtype=np.uint8)),
        ("tiny_3x3", rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)),
        ("thin_2x17", _random_blocks(rng, 2, 17, 2)),
    ]
    border = np.full((19, 26, 3), 200, np.uint8)
    border[:, :2] = (10, 250, 30)  # edges touching the left border: windows read the reflected copy
    border[-1:, :] = (250, 0, 120)  # and the bottom row
    border[5:9, 10:14] = 0
    cases.append(("border_edges", border))
    # A red and a blue square on black: gray weighs R (0.299) and B (0.114) differently, so the
    # red square's outline is a Canny edge and the blue one's is not; a channel mix-up swaps them.
    rb = np.zeros((16, 28, 3), np.uint8)
    rb[4:12, 3:11] = (255, 0, 0)
    rb[4:12, 17:25] = (0, 0, 255)
    cases.append(("red_blue", rb))
    return cases


@pytest.mark.parametrize(("name", "rgb"), _cases(), ids=[c[0] for c in _cases()])
def test_bit_exact_to_per_pixel_reference(name: str, rgb: np.ndarray):
    expected = _via_reference(rgb)
    got = smooth_edges(rgb)
    assert got.dtype == np.uint8 and got.shape == rgb.shape
    assert np.array_equal(got, expected), f"{np.count_nonzero(got != expected)} values differ"
    if name not in ("tiny_1x9", "tiny_3x3", "thin_2x17"):
        assert np.count_nonzero(got != rgb) > 0  # the case really exercises smoothing


@pytest.mark.parametrize("near", [smoothing._NEAR_INT, 1.0])
def test_fallback_exact_path_is_bit_exact(monkeypatch, near: float):
    # The fallback for a non-dyadic kernel: the near-integer fix-up as it would run, and with
    # every masked value routed through the ordered float64 sum (near=1.0).
    assert smoothing._DYADIC  # this OpenCV's kernel is [1, 4, 6, 4, 1] / 16: the fast path is exact
    monkeypatch.setattr(smoothing, "_DYADIC", False)
    monkeypatch.setattr(smoothing, "_NEAR_INT", near)
    for rgb in (anime_like(skimage_photo("astronaut", 40)), dict(_cases())["tiny_3x3"]):
        assert np.array_equal(smooth_edges(rgb), _via_reference(rgb))


def test_ordered_sum_matches_numpy_sum():
    rng = np.random.default_rng(3)
    padded = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    ys, xs = np.divmod(np.arange(25), 5)
    got = smoothing._exact_sums(padded, ys, xs)
    kernel = smoothing._GAUSS_2D
    for i, (y, x) in enumerate(zip(ys, xs)):
        for c in range(3):
            assert got[i, c] == np.sum(np.multiply(padded[y : y + 5, x : x + 5, c], kernel))


def test_channel_order_matters_for_the_mask():
    # Guards against computing gray on the wrong channel order: RGB2GRAY on the BGR array gives
    # another mask for this image, so smooth_edges must use the right one to match.
    rgb = dict(_cases())["red_blue"]
    wrong = smoothing.edge_mask(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert not np.array_equal(wrong, smoothing.edge_mask(rgb))
    assert np.array_equal(smooth_edges(rgb), _via_reference(rgb))


def test_rejects_non_rgb_uint8():
    with pytest.raises(ValueError):
        smooth_edges(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        smooth_edges(np.zeros((4, 4, 3), np.float32))


def test_resize_short_side_keeps_aspect():
    img = np.zeros((30, 90, 3), np.uint8)
    assert smoothing.resize_short_side(img, 20).shape == (20, 60, 3)
    assert smoothing.resize_short_side(img.transpose(1, 0, 2), 45).shape == (135, 45, 3)


def test_twin_path():
    assert smoothing.twin_path("style/film/0001.jpg", ".jpg") == "smooth/film/0001.jpg"
    assert smoothing.twin_path("style/a.jpeg", ".png") == "smooth/a.png"


# -- make-smooth end to end -------------------------------------------------------------


@pytest.fixture
def style_dataset(tmp_path: Path) -> Dataset:
    return build_tiny_dataset(tmp_path / "ds", size=40, with_smooth=False)


def _smooth_records(ds: Dataset):
    return {r.path: r for r in ds.reload().records("smooth")}


def test_make_smooth_writes_twins_and_is_incremental(style_dataset: Dataset):
    ds = style_dataset
    rep = RecordingReporter()
    s = make_smooth(ds.root, SmoothOptions(workers=1), rep)
    assert (s.total, s.smoothed, s.up_to_date, s.removed, s.failed) == (6, 6, 0, 0, [])
    recs = _smooth_records(ds)
    assert set(recs) == {f"smooth/{n}.png" for n in SKIMAGE_PHOTOS}
    for name in SKIMAGE_PHOTOS:
        rec = recs[f"smooth/{name}.png"]
        style = ds.manifest.find("style", f"style/{name}.png")
        assert isinstance(rec.source, DerivedSource)
        assert (rec.source.source, rec.source.source_sha256) == (style.path, style.sha256)
        data = (ds.root / rec.path).read_bytes()
        assert (rec.sha256, rec.bytes) == (sha256_bytes(data), len(data))
        # PNG is lossless, so the file holds exactly smooth_edges of the style image.
        assert np.array_equal(read_image(ds.root / rec.path), smooth_edges(read_image(ds.root / style.path)))
    mtimes = {p: (ds.root / p).stat().st_mtime_ns for p in recs}

    s2 = make_smooth(ds.root, SmoothOptions(workers=1), RecordingReporter())
    assert (s2.smoothed, s2.up_to_date, s2.removed) == (0, 6, 0)
    assert {p: (ds.root / p).stat().st_mtime_ns for p in recs} == mtimes


def test_changed_params_rebuild_and_format_switch(style_dataset: Dataset):
    ds = style_dataset
    make_smooth(ds.root, SmoothOptions(workers=1))
    style_bytes = {p.name: p.read_bytes() for p in (ds.root / "style").iterdir()}

    s = make_smooth(ds.root, SmoothOptions(size=24, workers=1))
    assert s.smoothed == 6
    for rec in _smooth_records(ds).values():
        assert min(rec.width, rec.height) == 24 and rec.source.params["size"] == 24

    # Another format moves the twins; the old ones (records and files) go, style files stay.
    s = make_smooth(ds.root, SmoothOptions(size=24, format="jpg", workers=1))
    assert (s.smoothed, s.removed) == (6, 6)
    assert set(_smooth_records(ds)) == {f"smooth/{n}.jpg" for n in SKIMAGE_PHOTOS}
    assert sorted(p.name for p in (ds.root / "smooth").iterdir()) == sorted(f"{n}.jpg" for n in SKIMAGE_PHOTOS)
    assert {p.name: p.read_bytes() for p in (ds.root / "style").iterdir()} == style_bytes

    # Back to PNG explicitly: the same result as the source's own format here.
    s = make_smooth(ds.root, SmoothOptions(size=24, format="png", workers=1))
    assert s.smoothed == 6 and all(p.endswith(".png") for p in _smooth_records(ds))


def test_vanished_style_source_drops_its_twin(style_dataset: Dataset):
    ds = style_dataset
    make_smooth(ds.root, SmoothOptions(workers=1))
    with ds.transaction() as m:
        m.remove("style", "style/coffee.png")
    s = make_smooth(ds.root, SmoothOptions(workers=1), RecordingReporter())
    assert (s.smoothed, s.up_to_date, s.removed) == (0, 5, 1)
    assert "smooth/coffee.png" not in _smooth_records(ds)
    assert not (ds.root / "smooth/coffee.png").exists()
    assert (ds.root / "style/coffee.png").exists()


def test_imported_smooth_images_are_left_alone(style_dataset: Dataset):
    ds = style_dataset
    data = encode_image(np.zeros((8, 8, 3), np.uint8), ".png")
    (ds.root / "smooth").mkdir()
    (ds.root / "smooth/mine.png").write_bytes(data)
    with ds.transaction() as m:
        m.put("smooth", make_record("smooth/mine.png", data, 8, 8, ImportedSource(original="/u/mine.png")))
    make_smooth(ds.root, SmoothOptions(workers=1))
    assert "smooth/mine.png" in _smooth_records(ds) and (ds.root / "smooth/mine.png").exists()


def test_unreadable_style_file_reported_others_done(style_dataset: Dataset):
    ds = style_dataset
    bad = b"this is not an image"
    (ds.root / "style/rocket.png").write_bytes(bad)
    with ds.transaction() as m:  # recorded consistently, so only decoding fails
        m.put("style", make_record("style/rocket.png", bad, 40, 40, ImportedSource(original="/x/rocket.png")))
    rep = RecordingReporter()
    with pytest.raises(PartialFailure, match="1 of 6 style images failed"):
        make_smooth(ds.root, SmoothOptions(workers=2), rep)  # also exercises the process pool
    assert len(rep.warnings) == 1
    assert "rocket.png" in rep.warnings[0] and "not a readable image" in rep.warnings[0]
    assert all("\n" not in w for w in rep.warnings)
    done = _smooth_records(ds)
    assert set(done) == {f"smooth/{n}.png" for n in SKIMAGE_PHOTOS if n != "rocket"}
    assert not any(p.name.startswith(".") for p in (ds.root / "smooth").iterdir())  # no temporaries left


def test_style_file_changed_behind_the_manifest_is_reported(style_dataset: Dataset):
    ds = style_dataset
    make_smooth(ds.root, SmoothOptions(workers=1))
    (ds.root / "style/astronaut.png").write_bytes(encode_image(np.zeros((9, 9, 3), np.uint8), ".png"))
    rep = RecordingReporter()
    with pytest.raises(PartialFailure):
        make_smooth(ds.root, SmoothOptions(workers=1), rep)
    assert len(rep.warnings) == 1 and "astronaut.png: changed since it was recorded" in rep.warnings[0]


class _AbortAfter(RecordingReporter):
    def should_abort(self) -> bool:
        return self.advanced.get("smooth", 0) >= 2


def test_abort_keeps_finished_twins(style_dataset: Dataset):
    s = make_smooth(style_dataset.root, SmoothOptions(workers=1), _AbortAfter())
    assert s.aborted and s.smoothed == 2
    assert len(_smooth_records(style_dataset)) == 2
    s = make_smooth(style_dataset.root, SmoothOptions(workers=1))  # resumes with the other four
    assert (s.smoothed, s.up_to_date, s.aborted) == (4, 2, False)


def test_bad_options_and_empty_dataset(tmp_path: Path, style_dataset: Dataset):
    with pytest.raises(InputError, match="not an image format"):
        make_smooth(style_dataset.root, SmoothOptions(format="gif"))
    Dataset.open(tmp_path / "empty", create=True)
    with pytest.raises(InputError, match="no style images"):
        make_smooth(tmp_path / "empty", SmoothOptions())


def test_cli_make_smooth(style_dataset: Dataset):
    runner = CliRunner()
    res = runner.invoke(app, ["make-smooth", str(style_dataset.root), "--format", "png", "-j", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert len(_smooth_records(style_dataset)) == 6
    res = runner.invoke(app, ["make-smooth", "--dataset", str(style_dataset.root), "--size", "2"])
    assert res.exit_code == 2 and "--size" in res.output
    res = runner.invoke(app, ["make-smooth", str(style_dataset.root.parent / "nowhere"), "-q"])
    assert res.exit_code == 3 and "no dataset here" in res.output


def test_make_smooth_runs_wait_for_each_other(style_dataset: Dataset):
    """Issue 23: three make-smooth at once with different --format left the dataset inconsistent. Writers of a derived
    set now take turns: one that finds the set being written waits, says so, then plans against the finished set."""
    import threading
    import time

    from filelock import FileLock

    ds = style_dataset
    holder = FileLock(ds.root / ".make-smooth.lock")
    holder.acquire()  # another make-smooth is writing
    rep = RecordingReporter()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (make_smooth(ds.root, SmoothOptions(format="jpg", workers=1), rep), done.set()))
    thread.start()
    time.sleep(1.0)
    assert not done.is_set() and any("waiting for it" in line for line in rep.infos)
    assert not Dataset.open(ds.root).manifest.records("smooth")  # nothing written while the other one holds the set
    holder.release()
    thread.join(60)
    assert done.is_set()
    res = CliRunner().invoke(app, ["dataset", str(ds.root), "--check"])
    assert res.exit_code == 0, res.output

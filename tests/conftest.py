"""Shared fixtures. Test data is generated here or taken from `skimage.data` (real photos that
scikit-image ships), never from the development-only `../shared` folder."""

from __future__ import annotations

import os

from pathlib import Path

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from pipelines.fileio import encode_image
from pipelines.data.manifest import Dataset, FrameSource, ImportedSource, make_record

@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads (OpenMP start-up and waiting dominate), and exact-resume
    tests compare runs bit for bit, which needs the same thread count for every run: session scope, so
    that module-scoped fixtures that train are covered too."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _pixel_limit():
    """`--max-pixels` sets ANIMEGAN_MAX_PIXELS in this process's environment (so workers inherit it): a CLI test
    that passes it must not lower the limit for every test after it."""
    old = os.environ.pop("ANIMEGAN_MAX_PIXELS", None)
    yield
    os.environ.pop("ANIMEGAN_MAX_PIXELS", None)
    if old is not None:
        os.environ["ANIMEGAN_MAX_PIXELS"] = old


# Colour photos shipped by scikit-image; used as "photos" and, posterized, as "anime frames".
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def skimage_photo(name: str, size: int | None = None) -> np.ndarray:
    """`[H, W, 3] uint8 RGB`; with `size`, resized so its short side is `size`."""
    img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3])
    if size is not None:
        h, w = img.shape[:2]
        s = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
    return img


def anime_like(rgb: np.ndarray) -> np.ndarray:
    """A crude flat-shaded look: bilateral smoothing, colour quantization and dark edges."""
    flat = cv2.bilateralFilter(rgb, 9, 60, 60)
    flat = (flat // 48) * 48 + 24
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 100, 200) > 0
    flat[edges] = 20
    return flat.astype(np.uint8)


@pytest.fixture(scope="module")
def references_at_64_px():
    """For a test module: VGG19 sees Style2paints references at 64 px instead of ImageNet's 224 (fc1's 7x7 average
    pool takes any size). What such modules test does not depend on it, and at 224 px VGG19 costs about 1 s a
    reference on an AVX2 CPU (208 of the 255 s of the Style2paints training module, 77 s with 64 px)."""
    import pipelines.models.vgg as vgg

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vgg, "FC1_INPUT", 64)
        yield


@pytest.fixture
def photo_files(tmp_path: Path) -> list[Path]:
    """Six real photos written as JPEG files into tmp_path/photos."""
    out = []
    for name in SKIMAGE_PHOTOS:
        p = tmp_path / "photos" / f"{name}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode_image(skimage_photo(name, 96), ".jpg"))
        out.append(p)
    return out


def build_tiny_dataset(root: Path, size: int = 80, with_smooth: bool = True) -> Dataset:
    """A dataset with photo, style and (optionally) smooth sets built directly through the manifest API,
    so training and stylizing tests do not depend on the data commands."""
    ds = Dataset.open(root, create=True)
    with ds.transaction() as m:
        for i, name in enumerate(SKIMAGE_PHOTOS):
            img = skimage_photo(name, size)
            for set_name, pixels, source in (
                ("photo", img, ImportedSource(original=f"/generated/{name}.jpg")),
                ("style", anime_like(img), FrameSource(film="/generated/film.mp4", time=i / 25, frame_index=i)),
            ):
                rel = f"{set_name}/{name}.png"
                data = encode_image(pixels, ".png")
                (root / set_name).mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
                m.put(set_name, make_record(rel, data, pixels.shape[1], pixels.shape[0], source))
            if with_smooth:
                style_rel = f"style/{name}.png"
                sm = cv2.GaussianBlur(anime_like(img), (5, 5), 0)
                rel = f"smooth/{name}.png"
                data = encode_image(sm, ".png")
                (root / "smooth").mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
                from pipelines.data.manifest import DerivedSource

                style_rec = m.find("style", style_rel)
                m.put("smooth", make_record(rel, data, sm.shape[1], sm.shape[0],
                                            DerivedSource(operation="smooth", source=style_rel,
                                                          source_sha256=style_rec.sha256, params={})))
    return ds


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Dataset:
    return build_tiny_dataset(tmp_path / "dataset")


# ---- short videos whose frames carry their own number (video and extract-frames tests) ----------

W, H = 64, 48


def numbered_frame(k: int, scene: int | None = None) -> np.ndarray:
    """`[48, 64, 3]` RGB: a textured background (seeded by `scene`, default k) and, in the top 8 rows,
    k's 8 low bits as 8x8 white (1) or black (0) blocks."""
    rng = np.random.default_rng(1000 + (k if scene is None else scene))
    coarse = rng.integers(40, 216, size=(6, 8, 3), dtype=np.uint8)
    img = np.kron(coarse, np.ones((8, 8, 1), np.uint8))
    for b in range(8):
        img[:8, b * 8:(b + 1) * 8] = 255 if (k >> b) & 1 else 0
    return img


def read_number(img: np.ndarray) -> int:
    """Inverse of `numbered_frame` on an upright `[48, 64, 3]` image."""
    gray = img.mean(axis=2)
    return sum(1 << b for b in range(8) if gray[2:6, b * 8 + 2:b * 8 + 6].mean() > 128)


def make_video(path: Path, frames, fps: Fraction = Fraction(25), rotation: int = 0, gop: int = 10) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast", "g": str(gop)})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def build_illustration_dataset(root: Path, size: int = 72, names: tuple[str, ...] = SKIMAGE_PHOTOS) -> Dataset:
    """A dataset whose `illustration` set holds flat-shaded versions of scikit-image's photos (Style2paints)."""
    ds = Dataset.open(root, create=True)
    (root / "illustration").mkdir(parents=True, exist_ok=True)
    with ds.transaction() as m:
        for name in names:
            pixels = anime_like(skimage_photo(name, size))
            rel = f"illustration/{name}.png"
            data = encode_image(pixels, ".png")
            (root / rel).write_bytes(data)
            m.put("illustration", make_record(rel, data, pixels.shape[1], pixels.shape[0],
                                              ImportedSource(original=f"/generated/{name}.png")))
    return ds


@pytest.fixture(autouse=True, scope="session")
def random_vgg_fc1_built_once():
    """`build_vgg_fc1("random")` (looked up on `pipelines.models.vgg`) returns a copy of one model built per test
    process: building it (102M fc1 weights drawn, then calibrated) takes about 3.5 s on an AVX2 CPU and every
    colorize call and Style2paints run needs it, a copy 0.3 s. The copy is the same model: the function is
    deterministic, which tests/models/test_style2paints.py checks on the real one (imported before this runs)."""
    import copy

    import pipelines.models.vgg as vgg

    real, built = vgg.build_vgg_fc1, []

    def once(spec, *, log=None):
        if str(spec) != "random":
            return real(spec, log=log)
        if not built:
            built.append(real(spec))
        (log or (lambda message: None))(vgg.RANDOM_FC1_LINE)
        return copy.deepcopy(built[0])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vgg, "build_vgg_fc1", once)
        yield


# Under pytest-xdist (`-n 2 --dist loadgroup`, the README's test command), a module's tests share one worker, so a
# module-scoped fixture that trains or builds a model runs once; these modules' tests are long and their fixture
# cheap beside them, so they are spread over the workers instead (their fixture then runs once per worker).
SPREAD_OVER_WORKERS = {"test_train_e2e.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the tests' ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name not in SPREAD_OVER_WORKERS:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.fixture(scope="session")
def untrained_colorizer(tmp_path_factory) -> Path:
    """A run folder with an untrained (seeded) Style2paints generator that records the random VGG19 fc1."""
    from pipelines.models.style2paints import Style2PaintsGenerator
    import pipelines.models.vgg as vgg
    from pipelines.models.weights import save_generator

    out = tmp_path_factory.mktemp("colorizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, out,
                       meta={"vgg_weights": "random", "vgg_fingerprint": vgg.build_vgg_fc1("random").fingerprint()})
    return out

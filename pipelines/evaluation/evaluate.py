"""`animegan eval`: how good a set of outputs is, in figures published work uses (docs/eval.md).

Outputs are paired with their inputs (`--reference`, one or more files or folders, as `stylize` was given them)
by relative path without the suffix: the layout `stylize` and `colorize` write, whatever `--format` they wrote.
Per pair: PSNR, SSIM, MS-SSIM, edge correlation and colour shift (pipelines.evaluation.metrics). Against a
dataset's style set (`--style`): colour-histogram distance and, with VGG weights, Gram-matrix distance, for the
outputs and for their inputs, so a user sees whether the outputs moved towards the style. With an Inception file:
FID and KID (pipelines.evaluation.fid). Videos (paired the same way with their input videos): the
warping error, how much the stylization flickers (pipelines.evaluation.temporal).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import AnimeganError, InputError
from ..fileio import is_image_path, is_video_path, iter_files, read_image
from ..progress import Reporter
from . import metrics as M

PSNR_CAP = 100.0  # dB given to identical pairs, so that means stay finite (a common convention)
GRAM_SIDE = 256  # images are resized to this short side before their VGG Gram matrix is taken


@dataclass
class EvalOptions:
    references: tuple[Path, ...] = ()  # inputs the outputs were made from (files or folders)
    style: Path | None = None  # a dataset folder; its `style_set` is the target style
    style_set: str = "style"
    vgg_weights: str | None = None  # imagenet | random | PATH: enables the Gram distance
    inception_weights: Path | None = None  # enables FID and KID
    fid_against: Path | None = None  # folder of images, or a dataset (its `style_set`); default: --style
    flow: str = "dis"  # videos: optical flow for the warping error (dis | raft)
    flow_weights: Path | None = None  # videos: torchvision RAFT state dict, with flow="raft"
    max_frames: int | None = None  # videos: measure at most this many frames of each


@dataclass
class EvalResult:
    metrics: dict[str, float] = field(default_factory=dict)  # metric name -> mean over the outputs
    images: list[dict[str, Any]] = field(default_factory=list)  # one row per output
    videos: list[dict[str, Any]] = field(default_factory=list)  # one row per output video
    unpaired: list[str] = field(default_factory=list)  # outputs (images and videos) with no reference
    failed: int = 0  # outputs or references that could not be read (each already warned about)
    protocol: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "count": len(self.images) + len(self.videos), "images": self.images,
                "videos": self.videos,
                "unpaired": self.unpaired, "failed": self.failed, "protocol": self.protocol}


def paired_metrics(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every paired metric of one `[H, W, 3] uint8` pair (same size); MS-SSIM only when large enough."""
    row = {name: fn(reference, output) for name, fn in M.PAIRED_METRICS.items()}
    row["psnr"] = min(row["psnr"], PSNR_CAP)
    ms = M.ms_ssim(reference, output)
    if ms is not None:
        row["ms_ssim"] = ms
    return row


def _key(rel: Path) -> str:
    return rel.with_suffix("").as_posix()


def _files(path: Path, videos: bool = False) -> list[tuple[Path, str]]:
    """(file, pairing key) for an image file or every image under a folder (`videos`: the same for videos)."""
    accept = is_video_path if videos else is_image_path
    return [(f, _key(f.relative_to(root)) if root != f else f.stem) for f, root in iter_files([path], accept)
            if is_video_path(f) == videos]


def _pairs(outs: list[tuple[Path, str]], references: tuple[Path, ...], videos: bool) -> dict[str, Path]:
    """Pairing key -> reference file. One reference file is the input of a single output image, or of every output
    video (versions of one clip); otherwise each reference file and folder contributes its files by relative path
    (a file by its name), the first given winning a key that several hold."""
    if len(references) == 1 and references[0].is_file() and (videos or len(outs) == 1):
        return {k: references[0] for _, k in outs}
    refs: dict[str, Path] = {}
    for ref in references:
        for f, k in _files(ref, videos=videos):
            refs.setdefault(k, f)
    return refs


def _named(references: tuple[Path, ...]) -> str:
    """The references as a warning names them."""
    return str(references[0]) if len(references) == 1 else f"{references[0]} (and {len(references) - 1} more)"


def _read(path: Path, reporter: Reporter) -> np.ndarray | None:
    try:
        return read_image(path)
    except InputError as exc:
        reporter.warn(str(exc))
        return None


def _style_files(dataset: Path, set_name: str) -> list[Path]:
    from ..data.manifest import Dataset

    ds = Dataset.open(dataset)
    records = ds.manifest.records(set_name)
    if not records:
        raise InputError(dataset, f"the dataset has no '{set_name}' images to compare with")
    return [ds.abspath(r.path) for r in records]


def evaluate(outputs: list[Path], options: EvalOptions, reporter: Reporter) -> EvalResult:
    """Measure `outputs` (files or folders) as `options` asks; see the module doc."""
    result = EvalResult()
    extractor = None
    if not options.references and options.style is None and options.fid_against is None:
        # Every figure compares outputs with something; without it the command would only count files.
        raise InputError(outputs[0] if outputs else None, "nothing to compare with: give --reference INPUTS (paired "
                                                          "figures), --style DATASET or --fid-against FOLDER")
    if options.inception_weights is not None:  # fail before the long passes, not after them
        from .fid import load_inception

        if options.fid_against is None and options.style is None:
            raise InputError(options.inception_weights, "FID/KID need a set to compare with: --fid-against FOLDER or --style DATASET")
        extractor = load_inception(options.inception_weights)
    gram = _GramDistance(options.vgg_weights, reporter) if options.style is not None and options.vgg_weights else None
    # Every image is read once: the unpaired figures' statistics are gathered while it is in memory.
    outs, inputs = _SetStats(gram, extractor), _SetStats(gram, None)
    out_files = [f for p in outputs for f in _files(Path(p))]
    out_videos = [f for p in outputs for f in _files(Path(p), videos=True)]
    if not out_files and not out_videos:
        raise InputError(outputs[0] if outputs else None, "no image or video files to evaluate")
    if out_videos:
        _evaluate_videos(out_videos, options, reporter, result)
        if not out_files:
            return result
    refs: dict[str, Path] = {}
    unpaired: list[str] = []
    if options.references:
        refs = _pairs(out_files, options.references, videos=False)
        result.protocol["paired"] = ("outputs and references paired by relative path without suffix; RGB, data range "
                                     "255; references resized to the output's size (area) when sizes differ")

    # ---- paired metrics -------------------------------------------------------------------------
    resized = 0
    reporter.start("eval", "measure outputs", total=len(out_files))
    for f, key in out_files:
        out = _read(f, reporter)
        row: dict[str, Any] = {"output": str(f)}
        ref_img = None
        if out is None:
            result.failed += 1
        elif options.references:
            ref_path = refs.get(key)
            if ref_path is None:
                unpaired.append(str(f))
            else:
                ref_img = _read(ref_path, reporter)
                if ref_img is None:
                    result.failed += 1
                else:
                    inputs.add(ref_img)
                    row["reference"] = str(ref_path)
                    if ref_img.shape != out.shape:
                        ref_img = cv2.resize(ref_img, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_AREA)
                        resized += 1
                    row.update(paired_metrics(ref_img, out))
        if out is not None:
            result.images.append(row)
            outs.add(out)
        reporter.advance("eval")
    reporter.finish("eval")
    if unpaired:
        result.unpaired += unpaired
        reporter.warn(f"{_named(options.references)}: no reference image for {len(unpaired)} of {len(out_files)} "
                      f"output images (first: {unpaired[0]}); they are left out of the paired means")
    if resized:
        reporter.info(f"{resized} reference image{'s' if resized != 1 else ''} resized to the output's size")
    for name in ("psnr", "ssim", "ms_ssim", "edge_corr", "color_shift"):
        values = [r[name] for r in result.images if name in r]
        if values:
            result.metrics[name] = float(np.mean(values))

    # ---- style distances ------------------------------------------------------------------------
    style = None
    if options.style is not None:
        fid_here = extractor is not None and options.fid_against is None  # FID against the same style set
        style = _SetStats(gram, extractor if fid_here else None)
        style.add_all(_style_files(options.style, options.style_set), reporter, "style set")
        result.metrics["style_hist"] = M.histogram_distance(outs.hist(), style.hist())
        if inputs.n:
            result.metrics["input_style_hist"] = M.histogram_distance(inputs.hist(), style.hist())
        result.protocol["style_hist"] = ("Bhattacharyya distance between the mean 8x8x8 RGB histograms of the "
                                         f"outputs and of {options.style}'s '{options.style_set}' set")
        if gram is not None:
            result.metrics["style_gram"] = gram.distance(outs.gram(), style.gram())
            if inputs.n:
                result.metrics["input_style_gram"] = gram.distance(inputs.gram(), style.gram())
            result.protocol["style_gram"] = (f"L1 between mean VGG19 conv4_4 Gram matrices ({options.vgg_weights} weights, "
                                             f"short side {GRAM_SIDE}), relative to the style set's mean |Gram|")

    # ---- FID / KID ------------------------------------------------------------------------------
    if extractor is not None:
        from .fid import fid_kid

        against = options.fid_against or options.style
        if options.fid_against is None:
            real = style  # already measured with the style set
        else:
            real = _SetStats(None, extractor)
            real.add_all(_style_files(against, options.style_set) if (Path(against) / "manifest.json").is_file()
                         else [f for f, _ in _files(Path(against))], reporter, "images to compare with")
        r = fid_kid(real.features(), outs.features())
        result.metrics.update({"fid": r.fid, "kid": r.kid_mean, "kid_std": r.kid_std})
        result.protocol["fid"] = (f"torchmetrics FID/KID over torch-fidelity's Inception-v3 pool3 (2048-d), each image at "
                                  f"its own size (resized to 299 inside the network); {r.real} images of {against} "
                                  f"against {r.fake} outputs; KID subsets of {min(1000, r.real, r.fake)}")
    return result


def _evaluate_videos(videos: list[tuple[Path, str]], options: EvalOptions, reporter: Reporter,
                     result: EvalResult) -> None:
    """Warping error of each output video against its input video (pipelines.evaluation.temporal)."""
    from ..models.flow import make_flow
    from .temporal import video_warping_error

    if not options.references:
        raise InputError(videos[0][0], "a video's flicker is measured against the video it was made from: give "
                                       "--reference INPUT_VIDEO (or a folder of them)")
    flow = make_flow(options.flow, options.flow_weights)
    refs = _pairs(videos, options.references, videos=True)
    unpaired: list[str] = []
    reporter.start("eval-video", "measure videos", total=len(videos))
    for f, key in videos:
        ref = refs.get(key)
        if ref is None:
            unpaired.append(str(f))
        else:
            try:
                e = video_warping_error(f, ref, flow, options.max_frames)
                result.videos.append({"output": str(f), "reference": str(ref), "warp_error": e.output,
                                      "input_warp_error": e.input, "added_warp_error": e.added,
                                      "frame_pairs": e.pairs, "flow_kept": e.kept})
            except InputError as exc:
                reporter.warn(str(exc))
                result.failed += 1
        reporter.advance("eval-video")
    reporter.finish("eval-video")
    if unpaired:
        result.unpaired += unpaired
        reporter.warn(f"{_named(options.references)}: no reference video for {len(unpaired)} of {len(videos)} output "
                      f"videos (first: {unpaired[0]}); give the input video as another --reference")
    for name in ("warp_error", "input_warp_error", "added_warp_error"):
        if result.videos:
            result.metrics[name] = float(np.mean([r[name] for r in result.videos]))
    result.protocol["warp_error"] = (
        f"Lai et al. 2018: flow ({flow.name}) between consecutive input frames (scaled to the output's size), "
        "pixels failing Ruder et al. 2016's forward-backward and motion-boundary tests left out, mean squared RGB "
        "difference in [0, 1] between output frame t and output frame t+1 warped onto t; input_warp_error: the same "
        "for the input video (the floor); added = output - input")


class _SetStats:
    """Running statistics of an image set for the unpaired figures: mean colour histogram, and with
    the networks given, mean VGG Gram matrix and Inception features. Images are added one at a time."""

    def __init__(self, gram: "_GramDistance | None", extractor: Any):
        self.gram_net, self.extractor = gram, extractor
        self.n = 0
        self._hist: np.ndarray | None = None
        self._gram: np.ndarray | None = None
        self._features: list[Any] = []

    def add(self, img: np.ndarray) -> None:
        h = M.color_histogram(img)
        self._hist = h if self._hist is None else self._hist + h
        if self.gram_net is not None:
            g = self.gram_net.gram(img)
            self._gram = g if self._gram is None else self._gram + g
        if self.extractor is not None:
            from .fid import image_features

            self._features.append(image_features(self.extractor, [img]))
        self.n += 1

    def add_all(self, paths: list[Path], reporter: Reporter, what: str) -> None:
        reporter.start(what, what, total=len(paths))
        for img in _iter_readable(paths, reporter):
            self.add(img)
            reporter.advance(what)
        reporter.finish(what)
        if not self.n:
            raise AnimeganError(f"none of the {len(paths)} {what} images could be read")

    def hist(self) -> np.ndarray:
        return self._hist / self.n

    def gram(self) -> np.ndarray:
        return self._gram / self.n

    def features(self):  # [N, D] float64
        import torch

        return torch.cat(self._features) if self._features else torch.zeros(0, 0, dtype=torch.float64)


def _iter_readable(paths: list[Path], reporter: Reporter) -> Iterator[np.ndarray]:
    for p in paths:
        img = _read(p, reporter)
        if img is not None:
            yield img


class _GramDistance:
    """Mean VGG19 conv4_4 Gram matrix of an image set, and a relative L1 distance between two of them."""

    def __init__(self, vgg_weights: str, reporter: Reporter):
        import torch

        from ..models.cpu_speed import accelerate
        from ..models.vgg import build_vgg

        # A fixed seed: with `random` weights the network (and so the figure) is the same every time.
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            self.vgg = build_vgg(vgg_weights, log=reporter.info)
        finally:
            torch.random.set_rng_state(state)
        # NNPACK where it pays off (AVX2 CPUs), as training's and colorize's VGG: 1.05 -> 0.51 s for one image at
        # 256x384 on a 2-core AVX2 EPYC; features within 4e-5 of oneDNN's (docs/benchmarks.md, nineteenth session).
        accelerate(self.vgg)

    def gram(self, img: np.ndarray) -> np.ndarray:
        """The `[512, 512]` float64 Gram matrix of one `[H, W, 3] uint8` image at a GRAM_SIDE short side."""
        import torch

        h, w = img.shape[:2]
        scale = GRAM_SIDE / min(h, w)
        small = cv2.resize(img, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, H, W] in [-1, 1]
            f = self.vgg(x)[0]  # [512, h, w]
            f = f.reshape(f.shape[0], -1)
            return (f @ f.T / f.numel()).double().numpy()  # the training losses' Gram: F^T F / (H*W*C)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        denom = float(np.abs(b).mean())
        return float(np.abs(a - b).mean() / denom) if denom > 0 and math.isfinite(denom) else float("nan")


def format_table(result: EvalResult) -> list[str]:
    """The means as aligned text lines, with what each figure means."""
    explain = {
        "psnr": "dB, higher = closer to the reference",
        "ssim": "0..1, higher = closer structure and contrast (Wang et al.: 11x11 Gaussian window, sigma 1.5)",
        "ms_ssim": "0..1, multi-scale SSIM",
        "edge_corr": "-1..1, higher = the reference's edges kept",
        "color_shift": "CIEDE2000, lower = same colours (>10: a cast)",
        "style_hist": "0..1, lower = palette closer to the style set",
        "input_style_hist": "the same for the inputs",
        "style_gram": "lower = texture statistics closer to the style set",
        "input_style_gram": "the same for the inputs",
        "fid": "lower = closer to the compared set",
        "kid": "lower = closer (x1000 is often quoted)",
        "kid_std": "spread of KID over its subsets",
        "warp_error": "video flicker (warping error), lower = steadier",
        "input_warp_error": "the same for the input video (the floor)",
        "added_warp_error": "flicker the stylization added",
    }
    return [f"{name:<17}{value:>10.{6 if 'warp' in name else 4}f}   {explain.get(name, '')}"
            for name, value in result.metrics.items()]


def require_outputs(result: EvalResult) -> None:
    if not result.images and not result.videos:
        raise AnimeganError("no output could be read; nothing was measured")

"""Training data: the manifest's sets as random crops, drawn so that a resumed run sees the same pixels.

A recipe names the sets it needs as `SetGroup`s. Each group is drawn independently of the other
groups (photos and anime frames are unpaired); the twins of a group (the smooth set for the style
set) are matched to the group's main record by `DerivedSource.source` and cropped and flipped exactly
like it.

Exact resume is the reason for the shape of this module: nothing random depends on worker processes
or on how many batches were drawn before. The order of each group in an epoch is a permutation seeded
by (seed, epoch, group), and the crop and flip of a sample by (seed, epoch, position, group), so
`SampleKey(epoch, position)` alone decides what a sample contains. `BatchPlan` lists the keys from
any (epoch, step) onward, and the DataLoader simply fetches them.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch

from ..errors import DatasetError, InputError
from ..fileio import read_image
from ..data.manifest import Dataset, DerivedSource

# The command that fills each set, for the error a user sees when it is missing.
MAKE_SET_HINT = {
    "photo": "`animegan add-images PHOTOS... --set photo`",
    "style": "`animegan extract-frames FILM` (or `animegan add-images IMAGES... --set style`)",
    "smooth": "`animegan make-smooth`",
    "cartoon": "`animegan add-images IMAGES... --set cartoon`",
    "illustration": "`animegan add-images IMAGES... --set illustration` (anime frames in the style set serve "
                    "too: `animegan train --model style2paints --illustration-set style`)",
    "sketch": "`animegan make-sketch`",
}

# Seed-sequence tags, so the streams of different purposes never coincide.
_ORDER, _AUGMENT, _SYNTH = 1, 2, 3

# What a recipe may run in the loader's workers on each sample after cropping: the cropped images by set
# name (`[S, S, 3] uint8`) and a generator seeded by the sample's key -> the arrays the batch carries
# (`[S, S] uint8` becomes a 1-channel image). Must be picklable (workers are processes).
# A transform with `wants_source = True` also gets each set's whole image (after reading, before cropping) under
# this prefix, to make its own crops (Style2paints' reference from another part of the illustration).
SOURCE_PREFIX = "@source:"
SampleTransform = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]


@dataclass(frozen=True)
class SetGroup:
    """A set drawn on its own, plus twin sets whose records derive from it (same crop, same flip)."""

    main: str
    twins: tuple[str, ...] = ()

    @property
    def sets(self) -> tuple[str, ...]:
        return (self.main, *self.twins)


@dataclass(frozen=True)
class SampleKey:
    """What one sample is: its epoch and its position in that epoch's global order (all ranks)."""

    epoch: int
    position: int


@dataclass
class GroupFiles:
    """Absolute paths per set of a group; `files[set][i]` are the i-th aligned records."""

    group: SetGroup
    files: dict[str, list[Path]]
    missing_twins: dict[str, int]  # main records left out because a twin set lacks their twin

    def __len__(self) -> int:
        return len(self.files[self.group.main])


def load_groups(dataset_root: str | Path, groups: Sequence[SetGroup], holdout: int = 0,
                holdout_set: str = "photo") -> tuple[list[GroupFiles], list[Path]]:
    """Read the manifest and return each group's aligned files and `holdout` fixed images of
    `holdout_set` (the sample grids' inputs) kept out of training.

    Records are sorted by path so that the result does not depend on the order they were added.
    Raises `DatasetError` naming a missing or empty set and the command that makes it.
    """
    ds = Dataset.open(dataset_root)
    manifest = ds.manifest
    ds.require_files([s for g in groups for s in g.sets])
    out: list[GroupFiles] = []
    held: list[Path] = []
    for group in groups:
        main = sorted(manifest.records(group.main), key=lambda r: r.path)
        _require(ds, group.main, len(main))
        files: dict[str, list[Path]] = {group.main: []}
        twin_maps = {}
        for twin in group.twins:
            recs = manifest.records(twin)
            _require(ds, twin, len(recs))
            # Made by a derivation (make-smooth, make-sketch): matched by the record it was made from.
            # Imported (a user's own sketches): matched by the path inside the set, whatever the suffix.
            twin_maps[twin] = {r.source.source: r for r in recs if isinstance(r.source, DerivedSource)}
            twin_maps[twin].update({_rel_stem(r.path): r for r in recs if not isinstance(r.source, DerivedSource)})
            files[twin] = []
        missing: dict[str, int] = {t: 0 for t in group.twins}
        for rec in main:
            twins = {t: twin_maps[t].get(rec.path) or twin_maps[t].get(_rel_stem(rec.path)) for t in group.twins}
            lacking = [t for t, r in twins.items() if r is None]
            for t in lacking:
                missing[t] += 1
            if lacking:
                continue  # a style frame without its smooth twin cannot be used (the pair is the point)
            files[group.main].append(ds.abspath(rec.path))
            for t, r in twins.items():
                files[t].append(ds.abspath(r.path))
        for t, n in missing.items():
            if n and not files[group.main]:
                raise DatasetError(
                    f"{ds.manifest_path}: none of the {len(main)} '{group.main}' images has a '{t}' twin; run {MAKE_SET_HINT.get(t, '`animegan make-smooth`')}"
                )
        if group.main == holdout_set and holdout:
            # Evenly spaced over the sorted list: fixed for a dataset, and spread over its content.
            n = len(files[holdout_set])
            idx = sorted({round(i * (n - 1) / max(1, holdout - 1)) for i in range(holdout)}) if holdout > 1 else [n // 2]
            held = [files[holdout_set][i] for i in idx]
            keep = [i for i in range(n) if i not in set(idx)]
            files = {k: [v[i] for i in keep] for k, v in files.items()}
        out.append(GroupFiles(group, files, {t: n for t, n in missing.items() if n}))
    return out, held


# A set whose typical image is this many times the crop side gets a hint to store it at a training scale.
OVERSIZE_FACTOR = 4


def scale_hints(ds: Dataset, sets: Sequence[str], crop: int) -> list[str]:
    """One line per set whose median short side is over OVERSIZE_FACTOR x `crop`: its crops then cover a few
    percent of each image (another scale than the paper's 256 px frames) and each sample decodes a large file."""
    out = []
    for name in sets:
        sides = sorted(min(r.width, r.height) for r in ds.manifest.records(name))
        if not sides:
            continue
        median = sides[len(sides) // 2]
        if median > OVERSIZE_FACTOR * crop:
            share = (crop / median) ** 2 * 100
            out.append(f"{ds.root}: the '{name}' images are {median} px on the short side (median); {crop} px crops cover "
                       f"about {share:.1g}% of each and every sample decodes the whole file; for a training scale nearer "
                       f"the paper's, import them again with `animegan add-images ... --set {name} --size {2 * crop}` "
                       f"into a new dataset")
    return out


def _rel_stem(path: str) -> str:
    """`illustration/a/b.jpg` -> `a/b`: a record's place inside its set, without the suffix."""
    p = PurePosixPath(path)
    return str(PurePosixPath(*p.parts[1:]).with_suffix("")) if len(p.parts) > 1 else p.stem


def _require(ds: Dataset, set_name: str, n: int) -> None:
    if n == 0:
        hint = MAKE_SET_HINT.get(set_name, f"`animegan add-images IMAGES... --set {set_name}`")
        raise DatasetError(f"{ds.manifest_path}: the '{set_name}' set is missing or empty; make it with {hint}")


def steps_per_epoch(sizes: Sequence[int], global_batch: int) -> int:
    """max(#photos, #style) // batch (FACTS 5), at least one step."""
    return max(1, max(sizes) // global_batch)


def _rng(seed: int, *words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def epoch_order(seed: int, epoch: int, group_index: int, size: int, length: int) -> np.ndarray:
    """Record indices for `length` positions: concatenated permutations of the group, from (seed, epoch, group).

    The smaller set wraps around with a fresh permutation, so each record appears once per pass.
    """
    parts = []
    total = 0
    k = 0
    while total < length:
        parts.append(_rng(seed, _ORDER, epoch, group_index, k).permutation(size))
        total += size
        k += 1
    return np.concatenate(parts)[:length]


def crop_params(seed: int, key: SampleKey, group_index: int, height: int, width: int, size: int) -> tuple[float, int, int, bool]:
    """(scale, top, left, flip) for one sample: images whose short side is under `size` are upscaled first."""
    scale = max(1.0, size / min(height, width))
    h, w = max(size, round(height * scale)), max(size, round(width * scale))
    g = _rng(seed, _AUGMENT, key.epoch, key.position, group_index)
    top = int(g.integers(0, h - size + 1))
    left = int(g.integers(0, w - size + 1))
    flip = bool(g.integers(0, 2))
    return scale, top, left, flip


def crop(rgb: np.ndarray, scale: float, top: int, left: int, flip: bool, size: int) -> np.ndarray:
    """Apply `crop_params` to `[H, W, 3] uint8`; returns `[size, size, 3] uint8`."""
    if scale > 1.0:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_CUBIC)
    out = rgb[top : top + size, left : left + size]
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


class UnreadableSample(Exception):
    """A training image that can no longer be read (deleted, replaced or corrupted while the run goes on).

    It takes one string so that DataLoader re-raises it from a worker process as itself (the worker's message, with
    its traceback, becomes the string); `unreadable_sample` gets the "PATH: problem" line back out of either form."""


def unreadable_sample(exc: BaseException) -> str | None:
    """"PATH: problem" of an `UnreadableSample` raised here or in a loader worker; None for any other exception."""
    if not isinstance(exc, UnreadableSample):
        return None
    text = str(exc)
    marker = f"{UnreadableSample.__name__}: "
    if marker in text:  # re-raised from a worker: the last line of the worker's traceback is the message
        text = text.rsplit(marker, 1)[1]
    return text.strip().splitlines()[0] if text.strip() else None


class CropDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by `SampleKey`: returns `{set: uint8 tensor [3, S, S]}` for every set of every
    group, or what the recipe's `transform` makes of them (`[C, S, S]` uint8).

    uint8 crosses the worker boundary (4x less to copy than float); the loop converts on the device.
    """

    def __init__(self, groups: Sequence[GroupFiles], seed: int, size: int, epoch_length: int,
                 transform: SampleTransform | None = None):
        self.groups = list(groups)
        self.seed = seed
        self.size = size
        self.epoch_length = epoch_length  # positions per epoch, all ranks together
        self.transform = transform
        self._orders: dict[int, list[np.ndarray]] = {}

    def _order(self, epoch: int) -> list[np.ndarray]:
        if epoch not in self._orders:
            self._orders = {epoch: [epoch_order(self.seed, epoch, gi, len(g), self.epoch_length) for gi, g in enumerate(self.groups)]}
        return self._orders[epoch]

    def __len__(self) -> int:
        return self.epoch_length

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        crops = self._crops(key)
        if self.transform is not None:
            crops = self.transform(crops, _rng(self.seed, _SYNTH, key.epoch, key.position))
        return {k: torch.from_numpy(np.ascontiguousarray(v if v.ndim == 3 else v[:, :, None])).permute(2, 0, 1).contiguous()
                for k, v in crops.items()}

    def _crops(self, key: SampleKey) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        orders = self._order(key.epoch)
        for gi, group in enumerate(self.groups):
            index = int(orders[gi][key.position])
            params = None
            main_shape = None
            for set_name in group.group.sets:
                try:
                    rgb = read_image(group.files[set_name][index])
                except InputError as exc:
                    raise UnreadableSample(str(exc)) from None
                if params is None:
                    # The main record decides the crop and the twins follow it pixel for pixel.
                    main_shape = rgb.shape[:2]
                    params = crop_params(self.seed, key, gi, rgb.shape[0], rgb.shape[1], self.size)
                elif rgb.shape[:2] != main_shape:
                    # make-smooth keeps the size; a twin edited by hand is brought back to it.
                    rgb = cv2.resize(rgb, (main_shape[1], main_shape[0]), interpolation=cv2.INTER_AREA)
                out[set_name] = crop(rgb, *params, self.size)  # [S, S, 3] uint8
                if getattr(self.transform, "wants_source", False):
                    out[SOURCE_PREFIX + set_name] = rgb  # [H, W, 3] uint8, the whole image
        return out


@dataclass(frozen=True)
class BatchPlan:
    """The batches of one rank from (start_epoch, start_step) to the end of `epochs`.

    The global order of an epoch is cut into global batches of `batch * world` positions; rank r takes
    positions `[b*B*world + r*B, ... + B)` of global batch b (the DistributedSampler idea, deterministic).
    Iterating yields lists of `SampleKey` for `DataLoader(batch_sampler=...)`.
    """

    epochs: int
    steps_per_epoch: int
    batch: int
    start_epoch: int = 0
    start_step: int = 0
    rank: int = 0
    world: int = 1

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for epoch in range(self.start_epoch, self.epochs):
            first = self.start_step if epoch == self.start_epoch else 0
            for step in range(first, self.steps_per_epoch):
                base = (step * self.world + self.rank) * self.batch
                yield [SampleKey(epoch, base + i) for i in range(self.batch)]

    def __len__(self) -> int:
        return max(0, (self.epochs - self.start_epoch) * self.steps_per_epoch - self.start_step)


def make_loader(dataset: CropDataset, plan: BatchPlan, workers: int, pin_memory: bool = False,
                generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader over `plan`; workers only decode and crop, they hold no random state that matters.

    Pass a `generator`: a DataLoader otherwise draws its workers' base seed from the global torch RNG,
    which would make a resumed run's RNG stream differ from a straight run's.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=plan,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
        collate_fn=_collate,
        generator=generator,
        worker_init_fn=_worker_init,
    )


def _worker_init(worker_id: int) -> None:
    # Ctrl-C in a terminal reaches every process of the group: the training process turns it into a
    # clean stop after the current step (which still needs the workers), so workers ignore it. They
    # still end with the training process (PyTorch's workers watch their parent).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # (OpenCV's thread count is left alone here: `cv2.setNumThreads` in a worker forked from a process whose
    # OpenCV pool already ran hangs the worker; measured on this project's machines.)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def to_model_range(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 `[N, C, H, W]` -> float32 `[N, C, H, W]` in [-1, 1] on `device`."""
    x = batch.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def load_preview(paths: Sequence[Path], size: int, scale: float = 1.0) -> np.ndarray:
    """Held-out photos as a fixed center crop: `[N, size, size, 3] uint8` (the sample grid's inputs), from the
    image scaled so that its short side is `size * scale` (the scale the recipe trains at)."""
    out = []
    for p in paths:
        rgb = read_image(p)
        h, w = rgb.shape[:2]
        s = max(size, round(size * scale)) / min(h, w)
        rgb = cv2.resize(rgb, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        out.append(rgb[top : top + size, left : left + size])
    return np.stack(out)

"""FID and KID between two image sets, computed by torchmetrics over a feature network.

The statistics (means, covariances, the matrix square root of FID; the polynomial-kernel MMD of KID
over random subsets) are torchmetrics' `FrechetInceptionDistance` and `KernelInceptionDistance`,
never re-derived here. The network is the standard one: the TF-Inception-v3 port that pytorch-fid and
torch-fidelity use (`pt_inception-2015-12-05-6726825d.pth`, pool3 features, 2048-d), built by
torch-fidelity from a file the user gives with `--inception-weights`. Nothing is downloaded.

Each image is fed at its own size as `[1, 3, H, W] uint8`; torch-fidelity's network resizes to 299x299
inside, as in torch-fidelity's own FID (so figures compare with torch-fidelity / torchmetrics).
Tests use any small `nn.Module` with the same contract (uint8 images in, `[N, D]` features out).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import AnimeganError, InputError

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_HINT = (f"FID/KID need the standard Inception file {INCEPTION_FILE} (pytorch-fid's release "
                  "'fid_weights', or torch-fidelity's weights-inception-2015-12-05-6726825d.pth)")
KID_SUBSET = 1000  # torchmetrics' and torch-fidelity's default subset size


@dataclass
class FidResult:
    fid: float
    kid_mean: float
    kid_std: float
    real: int  # images in each set
    fake: int


class _Given(nn.Module):
    """Feature "network" for torchmetrics that passes features computed beforehand through unchanged.

    Each image then goes through the (slow) extractor once, for FID and KID both.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim  # read by torchmetrics instead of probing with a dummy image

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def load_inception(path: str | Path) -> nn.Module:
    """The Inception-v3 feature network (pool3, 2048-d) from the standard file; loaded as tensors only."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"no such file; {INCEPTION_HINT}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line for the user
        raise InputError(path, f"not a PyTorch state dict of Inception weights ({type(exc).__name__}); {INCEPTION_HINT}") from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise InputError(path, f"not the Inception-v3 FID weights (no Mixed_7c layers); {INCEPTION_HINT}")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise AnimeganError("FID/KID need the torch-fidelity package for the Inception network: "
                            "pip install torch-fidelity (it needs the torchvision build that matches your torch)") from None
    # torch-fidelity reads its file with full unpickling; hand it a copy holding only the tensors
    # we already loaded safely, so nothing from the user's file is ever executed.
    with tempfile.TemporaryDirectory(prefix="animegan-inception-") as tmp:
        clean = Path(tmp) / "inception.pth"
        torch.save({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, clean)
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(clean))


@torch.no_grad()
def image_features(extractor: nn.Module, images: Iterable[np.ndarray],
                   progress: Callable[[], None] | None = None) -> torch.Tensor:
    """`[N, D]` float64 features of `[H, W, 3] uint8 RGB` images, one image per call, at its own size."""
    extractor = extractor.eval()
    rows = []
    for img in images:
        out = extractor(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None])  # [1, 3, H, W] uint8
        if isinstance(out, (tuple, list)):
            out = out[0]
        rows.append(out.reshape(1, -1).double())
        if progress:
            progress()
    if not rows:
        return torch.zeros(0, 0, dtype=torch.float64)
    return torch.cat(rows)


def fid_kid(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> FidResult:
    """FID and KID between two sets of features (`[N, D]`, from `image_features`)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if min(len(real), len(fake)) < 2:
        raise AnimeganError(f"FID/KID need at least 2 images in each set (got {len(real)} real, {len(fake)} generated)")
    dim = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Given(dim))
    # KID averages the MMD over random subsets; torchmetrics draws them from torch's global RNG.
    with warnings.catch_warnings():  # "will save all extracted features": that is the point here
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Given(dim), subset_size=min(KID_SUBSET, len(real), len(fake)))
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        kid_mean, kid_std = (float(v) for v in kid.compute())
    finally:
        torch.random.set_rng_state(state)
    return FidResult(float(fid.compute()), kid_mean, kid_std, len(real), len(fake))

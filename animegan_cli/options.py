"""Option types shared by several commands."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from pipelines.data import DEFAULT_DATASET


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


MAX_PIXELS_HELP = ("Largest image to decode, in megapixels: a file whose header claims more is refused with one line "
                   "(a decompression bomb, or a scan bigger than expected) and the rest processed. [default: 120]")


def apply_max_pixels(megapixels: float | None) -> None:
    """Make `--max-pixels` the limit of this process and of the workers it starts (via the environment)."""
    if megapixels is not None:
        os.environ["ANIMEGAN_MAX_PIXELS"] = str(int(megapixels * 1_000_000))


def pick_dataset(arg: Optional[Path], opt: Optional[Path]) -> Path:
    """The dataset of a command that takes it both as its argument and as `--dataset` (either works)."""
    if arg is not None and opt is not None and arg != opt:
        raise typer.BadParameter(f"two different datasets given ({arg} and {opt})", param_hint="--dataset")
    return arg or opt or DEFAULT_DATASET

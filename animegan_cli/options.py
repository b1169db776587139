"""Option types shared by several commands."""

from __future__ import annotations

import os
from enum import Enum


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

"""Option types shared by several commands."""

from __future__ import annotations

from enum import Enum


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"

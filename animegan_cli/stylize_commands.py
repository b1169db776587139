"""Commands of this group are registered by `register(app)`; see docs/cli.md."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass

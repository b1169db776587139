"""`animegan`: the Typer application. Each command module declares options and calls one pipeline."""

from __future__ import annotations

import typer

from pipelines import __version__

from . import data_commands, demo_command, eval_commands, frames_commands, stylize_commands, train_command

app = typer.Typer(
    name="animegan",
    help="Anime-style images and video from your own photos and films.\n\n"
    "Typical flow: extract-frames -> make-smooth -> add-images --set photo -> train -> stylize -> eval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"animegan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


for module in (demo_command, frames_commands, data_commands, train_command, stylize_commands, eval_commands):
    module.register(app)


def main() -> None:
    app()

"""`animegan`: the Typer application. Each command module declares options and calls one pipeline."""

from __future__ import annotations

import typer

from pipelines import __version__

from . import colorize_command, data_commands, demo_command, eval_commands, frames_commands, stylize_commands, train_command

def _hide_list_types() -> None:
    """Typer shows a list argument's Python type after its name (`PATHS... <list[Path]>`), which tells a
    user nothing the name and help do not; show the name alone. Guarded: a Typer without this hook
    keeps its own rendering."""
    argument = getattr(getattr(typer, "core", None), "TyperArgument", None)
    original = getattr(argument, "display_type_rich", None)
    if original is None or getattr(original, "_animegan", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        shown = original(self, ctx)
        return None if isinstance(shown, str) and shown.startswith("<list[") else shown

    display_type_rich._animegan = True  # type: ignore[attr-defined]
    argument.display_type_rich = display_type_rich


_hide_list_types()

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


for module in (demo_command, frames_commands, data_commands, train_command, stylize_commands, colorize_command,
               eval_commands):
    module.register(app)


def main() -> None:
    app()

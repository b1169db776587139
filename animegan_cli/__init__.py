"""The `animegan` command line: a thin Typer layer over `pipelines`."""

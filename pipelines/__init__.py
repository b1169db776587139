"""The work behind the `animegan` command: data preparation, models, training and stylizing.

Nothing in this package imports typer or rich: progress and messages leave through a
`pipelines.progress.Reporter`, and failures are raised as `pipelines.errors.AnimeganError`
subclasses whose message is one line that names the file and the problem.
"""

__version__ = "0.1.0"

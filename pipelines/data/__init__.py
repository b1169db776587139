"""Data stage: the dataset manifest and the commands that fill it (imports only the shared helpers)."""

from pathlib import Path

# Here rather than in `manifest`, so that the CLI can show it as a default without importing pydantic and the
# manifest's models (a tenth of a second of every command's start).
DEFAULT_DATASET = Path("dataset")

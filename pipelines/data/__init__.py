"""Data stage: the dataset manifest and the commands that fill it (imports only the shared helpers)."""

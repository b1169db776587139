"""Evaluation: image-quality metrics, FID/KID, and the `eval` command (imports data, models, shared)."""

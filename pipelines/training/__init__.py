"""Training stage: the loop, its configuration, recipes, losses, batches and checkpoints (imports data, models, shared)."""

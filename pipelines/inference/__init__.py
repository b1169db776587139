"""Inference stage: stylize, tiling, video encoding and ONNX export (imports data, models, shared; never training)."""

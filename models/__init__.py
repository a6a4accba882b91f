"""CellLoop's science core: U-Net segmentation, training, tiled inference, instances,
metrics, uncertainty and export. Works on numpy arrays and paths; knows nothing of users,
Flask or Dash.

Python API (torch is imported on first use, not at import time):

    from models import load_model, predict
    model = load_model("model.cellloop")          # or an exported .pt / .onnx
    result = predict(model, "cells.tif")          # or a (C, Y, X) / (Y, X) array
    result.labels, result.count

    from models import count
    count(["a.tif", "b.tif"], "counter.cellloop")   # counting or segmentation model
    # -> [{"image", "count", "low", "high", "n_points", "points": [[x, y], ...]}, ...]
    count("a.tif", "counter.onnx")       # an exported counting model (.pt / .onnx) counts the
    # same; it has no dropout, so no MC samples: low/high are its calibrated interval (card
    # "interval") or the count itself
"""
from __future__ import annotations


def load_model(source, expected_sha256: str | None = None):
    """A `SegmentationModel` from a .cellloop file, bytes, or an exported TorchScript / ONNX
    file (a counting model's file is refused: `count` takes those)."""
    from models.persist import load_model as _load
    return _load(source, expected_sha256)


def predict(model, image, **kwargs):
    """Instances and count for one image (array or path); see models.inference.predict_image."""
    from models.inference import predict_image
    return predict_image(model, image, **kwargs)


def count(images, model, mc_samples: int = 16) -> list[dict]:
    """Counts of `images` (paths or arrays, one or a list) by `model` (a counting or a
    segmentation model, or its file: .cellloop, .pt or .onnx), one record per image; see
    models.counts."""
    from models.counts import count_images
    return count_images(images, model, mc_samples)


def train(*args, **kwargs):
    """Train a model on arrays; see models.training.train_model."""
    from models.training import train_model
    return train_model(*args, **kwargs)

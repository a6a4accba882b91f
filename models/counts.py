"""Counts in one format, whatever the model: a counting model (models.counting) gives its
density's integral, its interval (the 5-95% range of MC-dropout sampled counts, widened to
the interval calibrated on held-out clicks when the model has one; an exported .pt / .onnx
counting model has no dropout: only the calibrated one, else the count) and its peaks; a
segmentation model gives its number of cells (the interval is the count itself) and their
centroids. Used by `models.count`, the CLI's `predict` (counts.json, counts.csv) and the
app.

A record: {"image": name, "count": float, "low": float, "high": float, "n_points": int,
"points": [[x, y], ...]} (x the column, y the row, in pixels)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MC_SAMPLES = 16


def record(name: str, count: float, low: float, high: float, points_yx) -> dict:
    points = np.asarray(points_yx).reshape(-1, 2)
    return {"image": name, "count": round(float(count), 2), "low": round(float(low), 2),
            "high": round(float(high), 2), "n_points": int(len(points)),
            "points": [[int(x), int(y)] for y, x in points]}


def centroids(labels: np.ndarray) -> np.ndarray:
    """(N, 2) (y, x) centroids of the cells of a label image (its first plane)."""
    from scipy import ndimage
    plane = labels if labels.ndim == 2 else labels.reshape(-1, *labels.shape[-2:])[0]
    ids = np.unique(plane)
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros((0, 2), int)
    return np.rint(ndimage.center_of_mass(np.ones_like(plane), plane, ids)).astype(int)


def load_any(source):
    """A counting or a segmentation model from a file (.cellloop, or an exported .pt /
    .onnx: its model card says which kind) or bytes."""
    from models.counting import is_counting_model, load_counter
    if is_counting_model(source):
        return load_counter(source)
    from models.persist import load_model
    return load_model(source)


def count_one(model, image, name: str = "", mc_samples: int = MC_SAMPLES) -> dict:
    """The record of one image (a path, or a (Y, X) / (C, Y, X) array)."""
    from models.counting import CountingModel, count_image
    from models.inference import _as_array, predict_image
    array = _as_array(image)
    if isinstance(model, CountingModel):
        if array.ndim == 4 and array.shape[0] != 1:
            raise ValueError(f"{name or 'image'}: a z-stack ({array.shape[0]} planes); "
                             "counting models count 2-D images.")
        plane = array[0] if array.ndim == 4 else array
        result = count_image(model, plane, mc_samples=mc_samples)
        return record(name, result.count, result.low, result.high, result.points)
    result = predict_image(model, array)
    return record(name, result.count, result.count, result.count, centroids(result.labels))


def count_images(images, model, mc_samples: int = MC_SAMPLES) -> list[dict]:
    """Records for `images`: one path or array, or a list of them; `model`: a model object
    or a model file."""
    if isinstance(model, (str, os.PathLike, bytes)):
        model = load_any(model)
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray)):
        images = [images]
    return [count_one(model, image, Path(image).name if isinstance(image, (str, os.PathLike))
                      else f"image {k}", mc_samples) for k, image in enumerate(images)]

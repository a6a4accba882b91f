"""Prediction with a trained model (`models.model.SegmentationModel`): instances and
counts of one image given as an array or a path. Z-stacks are predicted slice by slice."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from models.model import SegmentationModel
from storage.readers import read_image


@dataclass
class PredictResult:
    labels: np.ndarray                  # (Y, X) or (Z, Y, X) instance labels
    count: int                          # number of instances (summed over planes)
    probabilities: np.ndarray | None = None   # (K, Y, X) for 2-D input, if kept
    per_plane_counts: list = field(default_factory=list)


def _as_array(image) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image).pixels          # (Z, C, Y, X)
    return np.asarray(image)


def predict_image(model: SegmentationModel, image, keep_probabilities: bool = False,
                  tile: int = 512, overlap: int = 64) -> PredictResult:
    """Instances and count. `image`: path, (Y, X), (C, Y, X) or (Z, C, Y, X)."""
    array = _as_array(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 4:
        planes = [predict_image(model, plane, False, tile, overlap) for plane in array]
        return PredictResult(np.stack([p.labels for p in planes]),
                             sum(p.count for p in planes), None,
                             [p.count for p in planes])
    probs = model.probabilities(array, tile=tile, overlap=overlap)
    labels = model.instances(probs)
    count = int(labels.max()) if model.meta.get("kind", "instance") != "semantic" else 0
    return PredictResult(labels, count, probs if keep_probabilities else None, [count])

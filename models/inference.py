"""Prediction with a trained model (`models.model.SegmentationModel`): instances and
counts of one image given as an array or a path. Z-stacks are predicted slice by slice.

A model whose meta names an `input_mapping` (the built-in nuclei model: "nuclei-v1",
`models.builtin_data.to_network_input`) reads every image through it first, so an RGB H&E
or a 16-bit fluorescence image both fit its one input channel (`network_input`); models
without one see the image as given."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from models.builtin_data import INPUT_MAPPING, to_network_input
from models.nucleus_contrast import NUCLEUS_CONTRAST, nucleus_channel
from models.model import ModelInputError, SegmentationModel
from storage.readers import read_image


@dataclass
class PredictResult:
    labels: np.ndarray                  # (Y, X) or (Z, Y, X) instance labels
    count: int                          # number of instances (summed over planes)
    probabilities: np.ndarray | None = None   # (K, Y, X) for 2-D input, if kept
    per_plane_counts: list = field(default_factory=list)


# "nucleus-contrast-v1": one channel with nuclei bright, as the LoG counting baseline reads
# it: for any 3- or 4-channel image whose channels differ, the haematoxylin channel of a
# colour deconvolution (meant for RGB H&E); the built-in mapping for grey and other images.
# A counting model may be trained on it (`CountingParams.input_mapping`).
INPUT_MAPPINGS = {INPUT_MAPPING: to_network_input, NUCLEUS_CONTRAST: nucleus_channel}


def input_mapping(meta: dict | None):
    """The function a model's `meta["input_mapping"]` names (None: no mapping)."""
    name = (meta or {}).get("input_mapping")
    if not name:
        return None
    if name not in INPUT_MAPPINGS:
        raise ModelInputError(f"this model reads images through the input mapping {name!r}, "
                              "which this version of CellLoop does not know")
    return INPUT_MAPPINGS[name]


def network_input(model_or_meta, image):
    """`image` ((C, Y, X) or (Y, X)) as the model reads it: through its input mapping when
    its meta names one, else unchanged. Takes a model or its meta."""
    meta = getattr(model_or_meta, "meta", model_or_meta)
    mapping = input_mapping(meta)
    return image if mapping is None else mapping(np.asarray(image))


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
    probs = model.probabilities(network_input(model, array), tile=tile, overlap=overlap)
    labels = model.instances(probs)
    count = int(labels.max()) if model.meta.get("kind", "instance") != "semantic" else 0
    return PredictResult(labels, count, probs if keep_probabilities else None, [count])

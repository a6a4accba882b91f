"""From class probabilities to cell instances: seeds from confident interiors, watershed over
the foreground, small objects removed and holes filled."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed


def instances_from_probs(probs: np.ndarray, min_size: int = 12,
                         fg_threshold: float = 0.5) -> np.ndarray:
    """(3, Y, X) probabilities (background, interior, boundary) -> (Y, X) instance labels
    (uint16, uint32 above 65535 cells), numbered 1..N.

    Seeds are connected regions where "interior" is the most likely class; the watershed on
    the interior probability grows them over the foreground (interior + boundary). A
    foreground region without any seed (a small cell seen only as boundary) becomes a cell
    of its own rather than being lost."""
    interior = probs[1]
    foreground = (probs[1] + probs[2]) > fg_threshold
    seeds, n_seeds = ndimage.label((probs.argmax(0) == 1) & foreground)
    if n_seeds:
        seeds = remove_small_objects(seeds, max(1, min_size // 4))
    regions, n_regions = ndimage.label(foreground)
    if n_regions == 0:
        return np.zeros(interior.shape, np.uint16)
    seeded = np.zeros(n_regions + 1, bool)
    seeded[np.unique(regions[seeds > 0])] = True
    orphans = ~seeded[regions] & (regions > 0)
    markers = seeds.astype(np.int64)
    markers[orphans] = regions[orphans] + int(seeds.max(initial=0))
    labels = watershed(-interior, markers=markers, mask=foreground | (markers > 0))
    labels = remove_small_objects(labels, min_size)
    filled = ndimage.binary_fill_holes(labels > 0)
    if (filled & (labels == 0)).any():
        labels = watershed(np.zeros_like(interior), markers=labels, mask=filled)
    relabelled, _, _ = _relabel(labels)
    return relabelled


def _relabel(labels: np.ndarray):
    from skimage.segmentation import relabel_sequential
    out, fw, inv = relabel_sequential(labels)
    return out.astype(np.uint16 if out.max(initial=0) <= 65535 else np.uint32), fw, inv

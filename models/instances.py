"""From class probabilities to cell instances: seeds from confident interiors (optionally
split where the interior's shape says two touching cells), watershed over the foreground,
small objects removed and holes filled.

Three numbers steer it; `models.calibration` chooses them per model on validation images:
`fg_threshold` (foreground = interior + boundary probability above it), `min_size` (smaller
objects are dropped) and `split` (0: one seed per connected interior; h > 0: seeds are the
h-maxima of the interior's smoothed distance transform, which splits touching cells that the
network joined by a thin bridge of interior).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima, remove_small_objects
from skimage.segmentation import watershed

SEED_MIN_SIZE = 3            # interior specks smaller than this do not seed a cell


def instances_from_probs(probs: np.ndarray, min_size: int = 12, fg_threshold: float = 0.5,
                         split: float = 0.0) -> np.ndarray:
    """(3, Y, X) probabilities (background, interior, boundary) -> (Y, X) instance labels
    (uint16, uint32 above 65535 cells), numbered 1..N.

    A foreground region without any seed (a small cell seen only as boundary) becomes a cell
    of its own rather than being lost."""
    return finish(segment(probs, fg_threshold, split), min_size)


def segment(probs: np.ndarray, fg_threshold: float = 0.5, split: float = 0.0) -> np.ndarray:
    """Watershed labels before the size filter (int64; not numbered consecutively)."""
    return segment_variants(probs, fg_threshold, (split,))[split]


def segment_variants(probs: np.ndarray, fg_threshold: float, splits) -> dict:
    """`segment` for several `split` values at one threshold, sharing the work they have in
    common (foreground, seeds' core and its distance transform): {split: labels}."""
    interior = probs[1]
    foreground = (probs[1] + probs[2]) > fg_threshold
    core = (probs.argmax(0) == 1) & foreground
    regions, n_regions = ndimage.label(foreground)
    out = {}
    dist = smooth = None
    for split in splits:
        if n_regions == 0:
            out[split] = np.zeros(interior.shape, np.int64)
            continue
        if split > 0:
            if dist is None:
                dist = ndimage.distance_transform_edt(core)
                smooth = ndimage.gaussian_filter(dist, 1.0)
            seeds, _ = ndimage.label(h_maxima(smooth, split).astype(bool) & core)
            elevation = -dist - 3.0 * interior
        else:
            seeds, n_seeds = ndimage.label(core)
            if n_seeds:
                seeds = _drop_small(seeds, SEED_MIN_SIZE)
            elevation = -interior
        out[split] = _flood(seeds, regions, n_regions, foreground, elevation)
    return out


def _flood(seeds, regions, n_regions, foreground, elevation) -> np.ndarray:
    """Watershed from `seeds` over the foreground; a foreground region without a seed
    becomes one cell."""
    seeded = np.zeros(n_regions + 1, bool)
    seeded[np.unique(regions[seeds > 0])] = True
    orphans = ~seeded[regions] & (regions > 0)
    markers = seeds.astype(np.int64)
    markers[orphans] = regions[orphans] + int(seeds.max(initial=0))
    return watershed(elevation, markers=markers, mask=foreground | (markers > 0))


def finish(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects smaller than `min_size` pixels, fill holes, number cells 1..N."""
    if not labels.any():
        return np.zeros(labels.shape, np.uint16)
    labels = _drop_small(labels, max(1, min_size))
    filled = fill_holes(labels > 0)
    if (filled & (labels == 0)).any():
        labels = watershed(np.zeros(labels.shape, np.float32), markers=labels, mask=filled)
    relabelled, _, _ = _relabel(labels)
    return relabelled


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Objects of a label image smaller than `min_size` pixels removed. (scikit-image warns
    "Only one label was provided" when the image holds a single object; for a label image
    that is a normal case, so the warning is not passed on to users.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only one label", category=UserWarning)
        return remove_small_objects(labels, max_size=min_size - 1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with its holes (background not 4-connected to the image border) filled; the
    same result as scipy's binary_fill_holes, by one labelling instead of iterated dilation."""
    background, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    edge = np.zeros(n + 1, bool)
    edge[np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])] = True
    return mask | ~edge[background]


def _relabel(labels: np.ndarray):
    from skimage.segmentation import relabel_sequential
    out, fw, inv = relabel_sequential(labels)
    return out.astype(np.uint16 if out.max(initial=0) <= 65535 else np.uint32), fw, inv

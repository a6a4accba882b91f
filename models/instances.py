"""From class probabilities to cell instances: seeds from confident interiors (optionally
split where the interior's shape says two touching cells), watershed over the foreground,
small objects removed and holes filled.

Three numbers steer it; `models.calibration` chooses them per model on validation images:
`fg_threshold` (foreground = interior + boundary probability above it), `min_size` (smaller
objects are dropped) and `split` (0: one seed per connected interior; h > 0: seeds are the
h-maxima of the interior's smoothed distance transform, which splits touching cells that the
network joined by a thin bridge of interior).

Memory: large images are cut in row bands of whole groups of cells (`models.bands`) and
holes are filled one box at a time, so a 4096 x 4096 image of cells needs about 0.3 GB
beyond its probabilities instead of 1.9 GB, with the same cells (docs/benchmarks.md). One
connected foreground region is processed whole, so a confluent image is not bounded.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.morphology import reconstruction, remove_small_objects
from skimage.segmentation import watershed

from models import bands

SEED_MIN_SIZE = 3            # interior specks smaller than this do not seed a cell
REACH = 4                    # how far the seeds' smoothing looks (Gaussian, sigma 1, 4 sigma)
BAND_PIXELS = 2_000_000      # post-processing works on bands of about this many pixels


def instances_from_probs(probs: np.ndarray, min_size: int = 12, fg_threshold: float = 0.5,
                         split: float = 0.0) -> np.ndarray:
    """(3, Y, X) probabilities (background, interior, boundary) -> (Y, X) instance labels
    (uint16, uint32 above 65535 cells), numbered 1..N.

    A foreground region without any seed (a small cell seen only as boundary) becomes a cell
    of its own rather than being lost."""
    return finish(segment(probs, fg_threshold, split), min_size)


def segment(probs: np.ndarray, fg_threshold: float = 0.5, split: float = 0.0) -> np.ndarray:
    """Watershed labels before the size filter (int32; not numbered consecutively)."""
    return segment_variants(probs, fg_threshold, (split,))[split]


def segment_variants(probs: np.ndarray, fg_threshold: float, splits,
                     band_pixels: int = BAND_PIXELS) -> dict:
    """`segment` for several `split` values at one threshold, sharing the work they have in
    common (foreground, seeds' core and its distance transform): {split: labels}.

    Large images are processed in row bands of whole groups of cells (`models.bands`), so
    the working memory is that of one band (about `band_pixels` pixels, or the largest
    group of touching cells if that is larger). The cells are those of processing the whole
    image at once (tested against it), up to how the watershed settles exact ties."""
    foreground = (probs[1] + probs[2]) > fg_threshold
    out = {split: np.zeros(foreground.shape, np.int32) for split in splits}
    if not foreground.any():
        return out
    group_labels, boxes = bands.groups(foreground, REACH)
    offsets = dict.fromkeys(out, 0)
    for band in bands.bands(boxes, foreground.shape, band_pixels):
        rows = band.rows
        fg = foreground[rows] & bands.member_mask(group_labels, band, len(boxes))
        for split, labels in _segment_crop(probs[:, rows], fg, splits).items():
            cells = labels > 0
            out[split][rows][cells] = labels[cells] + offsets[split]
            offsets[split] += int(labels.max(initial=0))
    return out


def _segment_crop(probs, foreground, splits) -> dict:
    """{split: watershed labels} of one crop."""
    interior = probs[1]
    core = (probs[1] > probs[0]) & (probs[1] >= probs[2]) & foreground   # argmax == 1
    regions, n_regions = ndimage.label(foreground)
    out = {}
    dist = smooth = None
    for split in splits:
        if split > 0:
            if dist is None:
                dist = ndimage.distance_transform_edt(core)
                smooth = ndimage.gaussian_filter(dist, 1.0)
            seeds, _ = ndimage.label(_h_maxima(smooth, split) & core)
            elevation = -dist - 3.0 * interior
        else:
            seeds, n_seeds = ndimage.label(core)
            if n_seeds:
                seeds = _drop_small(seeds, SEED_MIN_SIZE)
            elevation = -interior
        out[split] = _flood(seeds, regions, n_regions, foreground, elevation)
    return out


def _h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """scikit-image's `h_maxima(image, h)`, object by object (8-connected areas above 0),
    each on its own box: far fewer pixels to sort than the whole image (5x faster on DSB).

    The same answer: through the zeros around it an object can receive at most 0 from the
    rest of the image (hence the floor at 0), which only matters where the object is less
    than h deep, and an object less than h deep has no h-maxima in the whole image either
    (a deeper object elsewhere outranks it, or h exceeds the image's range), so it is
    skipped. The one difference: in an image with no zeros at all, scikit-image finds none
    when h exceeds max - min."""
    maxima = np.zeros(image.shape, bool)
    objects, _ = ndimage.label(image > 0, structure=np.ones((3, 3), bool))
    resolution = 2 * np.finfo(image.dtype).resolution
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        box = _grown(box)
        own = objects[box] == index
        values = np.where(own, image[box], 0.0)
        markers = values - h - resolution * np.abs(values)
        if markers.max() < 0:
            continue
        rebuilt = reconstruction(markers, values, method="dilation")
        np.maximum(rebuilt, 0.0, out=rebuilt)
        maxima[box] |= ((values - rebuilt) >= h) & own
    return maxima


def _flood(seeds, regions, n_regions, foreground, elevation) -> np.ndarray:
    """Watershed from `seeds` over the foreground; a foreground region without a seed
    becomes one cell."""
    seeded = np.zeros(n_regions + 1, bool)
    seeded[np.unique(regions[seeds > 0])] = True
    orphans = ~seeded[regions] & (regions > 0)
    markers = seeds.astype(np.int32)
    markers[orphans] = regions[orphans] + int(seeds.max(initial=0))
    return watershed(elevation, markers=markers, mask=foreground | (markers > 0))


def finish(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects smaller than `min_size` pixels, fill holes, number cells 1..N."""
    if not labels.any():
        return np.zeros(labels.shape, np.uint16)
    labels = _drop_small(labels, max(1, min_size))
    _fill_holes_from_cells(labels)
    relabelled, _, _ = _relabel(labels)
    return relabelled


def _fill_holes_from_cells(labels: np.ndarray) -> None:
    """Give each hole (background not 4-connected to the image border) to the cells around
    it, in place: every hole pixel takes the label of its nearest cell pixel. Done on each
    hole's box alone, so its working memory is the hole's, not the image's."""
    background, n = ndimage.label(labels == 0)
    if n == 0:
        return
    edge = np.zeros(n + 1, bool)
    edge[np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])] = True
    for hole, box in enumerate(ndimage.find_objects(background), start=1):
        if box is None or edge[hole]:
            continue
        box = _grown(box)
        cells, inside = labels[box], background[box] == hole
        nearest = ndimage.distance_transform_edt(cells == 0, return_distances=False,
                                                 return_indices=True)
        cells[inside] = cells[tuple(axis[inside] for axis in nearest)]


def _grown(box: tuple) -> tuple:
    """A bounding box (slices) one pixel larger on every side (clipped at 0; numpy clips
    the far end)."""
    return tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Objects of a label image smaller than `min_size` pixels removed. (scikit-image warns
    "Only one label was provided" when the image holds a single object; for a label image
    that is a normal case, so the warning is not passed on to users.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only one label", category=UserWarning)
        return remove_small_objects(labels, max_size=min_size - 1)


def _relabel(labels: np.ndarray):
    from skimage.segmentation import relabel_sequential
    out, fw, inv = relabel_sequential(labels)
    return out.astype(np.uint16 if out.max(initial=0) <= 65535 else np.uint32), fw, inv

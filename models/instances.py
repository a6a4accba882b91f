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
beyond its probabilities instead of 1.9 GB, with the same cells (docs/benchmarks.md). A
group too large for one band (a confluent image: one connected region of touching cells) is
cut in overlapping row windows, each keeping the cells centred in its own rows. Without seed
splitting the windows overlap by more than the tallest area of confident interior; where a
cell is still taller than the overlap, the band is done again with twice the overlap. The
cells came out the same as the whole image's in every test and benchmark case (not proven in
general: a watershed can in principle reach further); memory grows only for very tall cells.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import ndimage
from skimage.morphology import reconstruction, remove_small_objects
from skimage.segmentation import watershed

from models import bands

log = logging.getLogger(__name__)

SEED_MIN_SIZE = 3            # interior specks smaller than this do not seed a cell
REACH = 4                    # how far the seeds' smoothing looks (Gaussian, sigma 1, 4 sigma)
BAND_PIXELS = 2_000_000      # post-processing works on bands of about this many pixels
CELL_RIM = 16                # rows a cell may reach beyond its interior, up and down together


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

    Large images are processed in row bands of whole groups of cells (`models.bands`), a
    group larger than a band in overlapping row windows (`bands.windows`, at least twice as
    tall as their overlap, which is doubled until no cell is taller), so the working memory
    is that of about `band_pixels` pixels, or more for very tall cells. The cells are those of
    processing the whole image at once (tested against it), up to how the watershed
    settles exact ties."""
    foreground = (probs[1] + probs[2]) > fg_threshold
    out = {split: np.zeros(foreground.shape, np.int32) for split in splits}
    if not foreground.any():
        return out
    group_labels, boxes = bands.groups(foreground, REACH)
    offsets = dict.fromkeys(out, 0)
    for band in bands.bands(boxes, foreground.shape, band_pixels):
        member = bands.member_mask(group_labels, band, len(boxes))
        _segment_band(probs, foreground, member, band.rows, band_pixels, out, offsets)
    return out


def _segment_band(probs, foreground, member, rows: slice, band_pixels: int, out: dict,
                  offsets: dict) -> None:
    """Segment one band (`member`: its own pixels) into `out` ({split: labels}), whole or in
    overlapping windows; where a cell crosses a window edge, again with twice the overlap."""
    width, overlap, start_offsets = foreground.shape[1], bands.OVERLAP, dict(offsets)
    if min(out) <= 0 and len(bands.windows(rows, width, band_pixels)) > 1:
        # without seed splitting, a cell is at least as tall as its area of interior
        tallest = _tallest_core(probs, foreground, member, rows) + CELL_RIM
        while overlap < tallest:
            overlap *= 2
    while True:
        plan = bands.windows(rows, width, band_pixels, overlap)
        cut = sum(_segment_window(probs, foreground, member, rows, window, out, offsets)
                  for window in plan)
        if not cut:
            return
        log.info("%d cell(s) taller than %d rows crossed a window edge: rows %d-%d again "
                 "with windows overlapping by %d rows", cut, overlap, rows.start, rows.stop,
                 2 * overlap)
        for labels in out.values():
            labels[rows][member] = 0
        offsets.update(start_offsets)
        overlap *= 2


def _tallest_core(probs, foreground, member, rows: slice) -> int:
    """Rows spanned by the tallest connected area of confident interior in a band: a cell is
    at least that tall, so windows must overlap by more."""
    areas, _ = ndimage.label(_core(probs[:, rows], foreground[rows] & member))
    return max((box[0].stop - box[0].start for box in ndimage.find_objects(areas) if box),
               default=0)


def _segment_window(probs, foreground, member, band_rows: slice, window: bands.Window,
                    out: dict, offsets: dict) -> int:
    """Segment one window of a band (`member`: the band's own pixels) and write the cells it
    owns into `out` ({split: labels}), where no earlier window put a cell; return how many of
    those cells touch an edge where the window cuts the band (they may be incomplete)."""
    rows = window.rows
    fg = foreground[rows] & member[rows.start - band_rows.start:rows.stop - band_rows.start]
    cut = 0
    for split, labels in _segment_crop(probs[:, rows], fg, tuple(out)).items():
        labels, cut_here = _owned(labels, window, band_rows)
        cut = max(cut, cut_here)
        target = out[split][rows]
        cells = (labels > 0) & (target == 0)
        target[cells] = labels[cells] + offsets[split]
        offsets[split] += int(labels.max(initial=0))
    return cut


def _owned(labels: np.ndarray, window: bands.Window, band_rows: slice) -> tuple:
    """(the cells of a window's labels whose bounding box is centred in its owned rows, how
    many of them touch an edge where the window cuts the band)."""
    if window.owned == window.rows:
        return labels, 0
    lo, hi = window.owned.start - window.rows.start, window.owned.stop - window.rows.start
    keep = np.zeros(int(labels.max(initial=0)) + 1, bool)
    cut = 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and lo <= (box[0].start + box[0].stop - 1) / 2 < hi:
            keep[index] = True
            cut += (box[0].start == 0 and window.rows.start > band_rows.start) or \
                (box[0].stop == len(labels) and window.rows.stop < band_rows.stop)
    return np.where(keep[labels], labels, 0), cut


def _segment_crop(probs, foreground, splits) -> dict:
    """{split: watershed labels} of one crop."""
    interior = probs[1]
    core = _core(probs, foreground)
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


def _core(probs, foreground):
    """Confident interior: foreground where interior is the likeliest class (argmax == 1,
    without argmax's int64 array)."""
    return (probs[1] > probs[0]) & (probs[1] >= probs[2]) & foreground


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

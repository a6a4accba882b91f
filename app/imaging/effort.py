"""Annotation effort: what a saved version changed against what its annotator started from
(a model suggestion or the previous version). Pure numpy/scipy, no app imports.

Cells are matched one to one by overlap. Matching rule: a base cell and a new cell are a
candidate pair when their IoU (intersection over union, in pixels) is at least `MATCH_IOU`
(0.5); candidate pairs are taken greedily by IoU, highest first, each cell at most once
(above 0.5 a cell has at most one partner anyway, so greediness only settles exact ties).
A matched pair with IoU >= `KEEP_IOU` (0.9) is *kept* (unchanged, or touched so little it
does not count), below that it is *reshaped*; new cells left unmatched were *added*, base
cells left unmatched were *deleted*. So a cell brushed a little bigger, trimmed, or redrawn
roughly in place counts once (reshaped), and a cell moved off its old place, or cut to less
than half, counts as a deletion and an addition. A matched pair whose class changed is also
counted as *reclassified* (on top of kept/reshaped).

Points (counting mode, [x, y, class]) are matched one to one, nearest first, within
`POINT_TOLERANCE` (3 px): a matched point is kept, the others added or deleted.
"""
from __future__ import annotations

import numpy as np

MATCH_IOU = 0.5
KEEP_IOU = 0.9
POINT_TOLERANCE = 3.0
KEYS = ("added", "deleted", "reshaped", "kept", "reclassified")
CHUNK_PIXELS = 1 << 20          # pixels compared at a time (bounds the memory of a save)


def _plane(labels: np.ndarray | None) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim > 2:                      # (Z, Y, X) stored masks: the first plane
        labels = labels.reshape(-1, *labels.shape[-2:])[0]
    return labels


def compare(base: np.ndarray | None, new: np.ndarray | None,
            base_classes: dict | None = None, new_classes: dict | None = None) -> dict:
    """Counts of cells added, deleted, reshaped, kept (and reclassified) going from the
    label image `base` to `new` (None: no cells). Label 0 is background; label ids need not
    be consecutive. Works on bands of rows (CHUNK_PIXELS at a time), so the memory stays
    bounded on huge images, and counts and sorts only the runs of equal (base, new) label
    pairs along the rows, not the pixels (2048², 1,000 cells: 10 ms, where counting every
    pixel took 43 ms)."""
    return compare_with_areas(base, new, base_classes, new_classes)[0]


def compare_with_areas(base: np.ndarray | None, new: np.ndarray | None,
                       base_classes: dict | None = None, new_classes: dict | None = None,
                       base_areas: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
    """`compare`, and the pixel area of every label of `new` (index = label id), which the
    next comparison against `new` may take as its `base_areas`.

    With `base_areas` (the areas of `base`'s labels, as this function returned them), only
    the rows where the two images differ are compared, widened until they hold every cell
    that changed: a save after a few edits compares a few bands of rows, not the whole
    image (2048², 5,000 cells, one cell added: 1-3 ms instead of 16-25 ms). Cells outside
    those bands are the same pixels under the same id in both images: kept. The result is
    exactly the whole comparison's; where it cannot be sure (a changed cell with pieces
    outside the bands, areas that do not add up), it compares the whole image."""
    base, new = _plane(base), _plane(new)
    if base is None and new is None:
        return dict.fromkeys(KEYS, 0), None
    if base is None:
        base = np.zeros_like(new)
    if new is None:
        new = np.zeros_like(base)
    if base.shape != new.shape:
        raise ValueError(f"Label images differ in shape: {base.shape} vs {new.shape}.")
    for image in (base, new):
        if image.dtype.kind != "u" and (image < 0).any():
            raise ValueError("Label images must not have negative labels.")
    cls_b = {int(k): int(v) for k, v in (base_classes or {}).items()}
    cls_n = {int(k): int(v) for k, v in (new_classes or {}).items()}
    if base_areas is not None and base.ndim == 2:
        fast = _compare_changed_rows(base, new, cls_b, cls_n, np.asarray(base_areas, np.int64))
        if fast is not None:
            return fast
    counts, _area_b, area_n = _compare(base, new, cls_b, cls_n)
    return counts, area_n


def label_areas(labels: np.ndarray) -> np.ndarray:
    """The pixel area of every label of a 2-D label image (index = label id; labels must
    not be negative), counted over its runs along the rows: what `compare_with_areas` takes
    as `base_areas`."""
    flat = np.ascontiguousarray(labels).ravel()
    if not flat.size:
        return np.zeros(1, np.int64)
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    return np.bincount(flat[starts].astype(np.int64), weights=lengths).astype(np.int64)


def _compare(base: np.ndarray, new: np.ndarray, cls_b: dict, cls_n: dict
             ) -> tuple[dict, np.ndarray, np.ndarray]:
    """The comparison of two whole label images; also the areas of their labels."""
    width = int(new.max(initial=0)) + 1
    size_b = int(base.max(initial=0)) + 1
    area_b = np.zeros(size_b, np.int64)
    area_n = np.zeros(width, np.int64)
    found_pairs, found_inter = [], []
    # a band of rows at a time, so a huge image never needs several int64 copies of itself
    rows = max(1, CHUNK_PIXELS // max(1, base.shape[-1]))
    for y in range(0, base.shape[0], rows):
        b = np.ascontiguousarray(base[y:y + rows]).ravel()
        n = np.ascontiguousarray(new[y:y + rows]).ravel()
        if not b.size:
            continue
        # runs of pixels with the same (base, new) label pair, along the rows (a cell is a
        # few runs per row): only the runs are counted and sorted, never every pixel, and
        # the labels are compared in their own (small) dtype
        change = b[1:] != b[:-1]
        change |= n[1:] != n[:-1]
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        lengths = np.diff(np.append(starts, b.size))
        rb, rn = b[starts].astype(np.int64), n[starts].astype(np.int64)
        area_b += np.bincount(rb, weights=lengths, minlength=size_b).astype(np.int64)
        area_n += np.bincount(rn, weights=lengths, minlength=width).astype(np.int64)
        both = (rb > 0) & (rn > 0)                # only overlaps of two cells can pair
        pairs, where = np.unique(rb[both] * width + rn[both], return_inverse=True)
        found_pairs.append(pairs)
        found_inter.append(np.bincount(where.ravel(), weights=lengths[both],
                                       minlength=pairs.size))
    if found_pairs:
        pairs, where = np.unique(np.concatenate(found_pairs), return_inverse=True)
        inter = np.bincount(where.ravel(), weights=np.concatenate(found_inter),
                            minlength=pairs.size)
    else:
        pairs, inter = np.zeros(0, np.int64), np.zeros(0)
    cells_b = np.flatnonzero(area_b[1:]) + 1
    cells_n = np.flatnonzero(area_n[1:]) + 1
    pb, pn = pairs // width, pairs % width
    iou = inter / (area_b[pb] + area_n[pn] - inter)
    good = iou >= MATCH_IOU
    pb, pn, iou = pb[good], pn[good], iou[good]
    order = np.argsort(-iou, kind="stable")
    used_b, used_n = set(), set()
    kept = reshaped = reclassified = 0
    for i in order:
        lb, ln = int(pb[i]), int(pn[i])
        if lb in used_b or ln in used_n:
            continue
        used_b.add(lb)
        used_n.add(ln)
        if iou[i] >= KEEP_IOU:
            kept += 1
        else:
            reshaped += 1
        if cls_b.get(lb, 0) != cls_n.get(ln, 0):
            reclassified += 1
    matched = len(used_b)
    return ({"added": int(cells_n.size - matched), "deleted": int(cells_b.size - matched),
             "reshaped": reshaped, "kept": kept, "reclassified": reclassified}, area_b, area_n)


GROW_ROWS = 8          # a changed row band grows this many rows at a time


def _compare_changed_rows(base: np.ndarray, new: np.ndarray, cls_b: dict, cls_n: dict,
                          base_areas: np.ndarray) -> tuple[dict, np.ndarray] | None:
    """`compare_with_areas` on the bands of changed rows only; None where the whole image
    has to be compared (see there)."""
    height = base.shape[0]
    changed = np.flatnonzero((base != new).any(axis=1))
    width, size_b = int(new.max(initial=0)) + 1, int(base.max(initial=0)) + 1
    if (base_areas.ndim != 1 or base_areas.size != size_b or changed.size > height // 2
            or int(base_areas.sum()) != base.size):
        return None
    size = max(width, size_b)
    in_base = np.bincount(base[changed].ravel(), minlength=size)
    in_new = np.bincount(new[changed].ravel(), minlength=size)
    areas = np.zeros(size, np.int64)
    areas[:size_b] = base_areas
    areas += in_new - in_base                     # new's areas: base's, changed rows swapped
    if (areas < 0).any() or areas[width:].any():
        return None                               # base_areas are not base's
    area_n = areas[:width]
    touched = (in_base > 0) | (in_new > 0)        # labels on a changed row, in either image
    touched[0] = False

    def holds(a: int, b: int) -> bool:            # a changed cell on rows a..b-1
        return bool(touched[base[a:b]].any() or touched[new[a:b]].any())

    bands: list[list[int]] = []                  # [top, bottom), top to bottom, disjoint
    for run in np.split(changed, np.flatnonzero(np.diff(changed) > GROW_ROWS) + 1):
        if not run.size:
            continue
        top, bottom = int(run[0]), int(run[-1]) + 1
        floor = bands[-1][1] if bands else 0      # rows above it are in a band already
        while top > floor and holds(max(floor, top - GROW_ROWS), top):
            top = max(floor, top - GROW_ROWS)
        if bands and top <= bands[-1][1]:
            band = bands[-1]
            band[1] = max(band[1], bottom)
        else:
            band = [top, bottom]
            bands.append(band)
        while band[1] < height and holds(band[1], min(height, band[1] + GROW_ROWS)):
            band[1] = min(height, band[1] + GROW_ROWS)
    rows = np.concatenate([np.arange(a, b) for a, b in bands]) if bands else changed
    counts, band_b, band_n = _compare(base[rows], new[rows], cls_b, cls_n)
    # every changed cell lies wholly in the bands (else, e.g. a cell in two pieces, compare
    # it all)
    t = np.flatnonzero(touched)
    tb, tn = t[t < size_b], t[t < width]
    got_b = np.zeros(size_b, np.int64)
    got_b[:band_b.size] = band_b
    got_n = np.zeros(width, np.int64)
    got_n[:band_n.size] = band_n
    if (got_b[tb] != base_areas[tb]).any() or (got_n[tn] != area_n[tn]).any():
        return None
    # the cells outside the bands: the same pixels under the same id in both, so kept
    outside = (area_n > 0) & (got_n == 0)
    outside[0] = False
    counts["kept"] += int(outside.sum())
    for label in set(cls_b) | set(cls_n):
        if 0 < label < width and outside[label] and cls_b.get(label, 0) != cls_n.get(label, 0):
            counts["reclassified"] += 1
    return counts, area_n


def compare_points(base: list | None, new: list | None,
                   tolerance: float = POINT_TOLERANCE) -> dict:
    """Counts of points added, deleted and kept (moved by at most `tolerance` px) going from
    `base` to `new` ([x, y, class] lists); a kept point whose class changed is reclassified."""
    base, new = list(base or []), list(new or [])
    out = dict.fromkeys(KEYS, 0)
    if not base or not new:
        out["added"], out["deleted"] = len(new), len(base)
        return out
    from scipy.spatial import cKDTree      # (imported here: 0.1 s, only points need it)
    xb = np.asarray([p[:2] for p in base], np.float64)
    xn = np.asarray([p[:2] for p in new], np.float64)
    near = cKDTree(xb).sparse_distance_matrix(cKDTree(xn), tolerance, output_type="ndarray")
    order = np.argsort(near["v"], kind="stable")
    used_b, used_n = set(), set()
    for i in order:
        ib, jn = int(near["i"][i]), int(near["j"][i])
        if ib in used_b or jn in used_n:
            continue
        used_b.add(ib)
        used_n.add(jn)
        cb = int(base[ib][2]) if len(base[ib]) > 2 else 0
        cn = int(new[jn][2]) if len(new[jn]) > 2 else 0
        out["reclassified"] += cb != cn
    out["kept"] = len(used_b)
    out["added"], out["deleted"] = len(new) - len(used_n), len(base) - len(used_b)
    return out


def combine(*counts: dict) -> dict:
    """The sum of several comparisons (cells and points of one version)."""
    return {k: int(sum(c.get(k, 0) for c in counts)) for k in KEYS}

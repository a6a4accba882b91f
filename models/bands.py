"""Row bands of whole objects, so that post-processing a huge image holds only one band's
working arrays at a time.

Each band is a full-width range of rows holding whole groups of foreground: pixels closer
than `reach` (Chebyshev distance, each way) to one another end up in the same group, so an
operation that looks no further than `reach` pixels around an object gives the same answer
on the object's band as on the whole image. Groups are packed into bands of at most
`band_pixels` pixels; a single group larger than that (a confluent image: one connected
region of cells) gets a band of its own, cut in overlapping row windows (`windows`), each
window keeping the cells centred in its own rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MARGIN = 6          # rows of context above and below a band's groups
OVERLAP = 128       # rows shared by neighbouring windows of an oversized band


@dataclass(frozen=True)
class Band:
    rows: slice              # the crop of the image, full width
    groups: np.ndarray       # group ids (into the group label image) it holds


def groups(foreground: np.ndarray, reach: int) -> tuple[np.ndarray, list]:
    """(group label image (int32), bounding slices per group): 8-connected components of
    the foreground dilated by `reach` pixels each way."""
    grown = ndimage.maximum_filter(foreground.view(np.uint8), size=2 * reach + 1)
    labels, _ = ndimage.label(grown, structure=np.ones((3, 3), bool))
    return labels.astype(np.int32, copy=False), ndimage.find_objects(labels)


def bands(boxes: list, shape: tuple[int, int], band_pixels: int) -> list[Band]:
    """Groups (bounding slices in label order, hence by top row) packed greedily into bands
    whose crop (the groups' rows plus MARGIN above and below) spans at most `band_pixels`."""
    max_rows = max(1, band_pixels // max(1, shape[1]))
    out, ids, top, bottom = [], [], 0, 0
    for gid, box in enumerate(boxes, start=1):
        if box is None:
            continue
        start, stop = box[0].start, box[0].stop
        if ids and max(bottom, stop) - top + 2 * MARGIN > max_rows:
            out.append(_band(ids, top, bottom, shape[0]))
            ids = []
        if not ids:
            top, bottom = start, stop
        ids.append(gid)
        bottom = max(bottom, stop)
    if ids:
        out.append(_band(ids, top, bottom, shape[0]))
    return out


def _band(ids: list[int], top: int, bottom: int, height: int) -> Band:
    return Band(slice(max(0, top - MARGIN), min(height, bottom + MARGIN)),
                np.asarray(ids, np.int32))


def member_mask(group_labels: np.ndarray, band: Band, n_groups: int) -> np.ndarray:
    """Pixels of the band's crop that belong to the band's groups."""
    member = np.zeros(n_groups + 1, bool)
    member[band.groups] = True
    return member[group_labels[band.rows]]


@dataclass(frozen=True)
class Window:
    rows: slice              # the crop processed
    owned: slice             # the rows where the centre of a cell it keeps must lie


def windows(rows: slice, width: int, band_pixels: int, overlap: int = OVERLAP) -> list[Window]:
    """A band's rows as one window, or, when the band spans more than `band_pixels`, as
    overlapping windows of about that many pixels (at least 2 x `overlap` rows), each
    owning the rows up to the middle of its overlaps with its neighbours. A cell whose
    centre row lies in a window's owned rows is whole inside that window when it is at
    most `overlap` rows tall."""
    span = rows.stop - rows.start
    height = max(band_pixels // max(1, width), 2 * overlap)
    if span <= height:
        return [Window(rows, rows)]
    count = -(-(span - overlap) // (height - overlap))         # ceil: overlaps >= overlap
    starts = np.linspace(rows.start, rows.stop - height, count).round().astype(int).tolist()
    cuts = [rows.start] + [(nxt + start + height) // 2 for start, nxt in zip(starts, starts[1:])] \
        + [rows.stop]
    return [Window(slice(start, start + height), slice(cuts[k], cuts[k + 1]))
            for k, start in enumerate(starts)]

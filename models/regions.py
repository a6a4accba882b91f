"""Region units: square boxes that cover an image, for active learning by region (the
simulation's `unit = "region"` and a project queue whose loop unit is "region").

A box is (y0, x0, y1, x1) in pixels. No torch here: the web app imports it."""
from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]          # y0, x0, y1, x1
# a box still waits while at least this share of it is outside the annotated region (the
# shifted last row and column of boxes overlap their neighbours: a "half done" rule would
# never serve the strip they alone cover)
OPEN_SHARE = 0.05


def regions_of(shape: tuple[int, int], side: int) -> list[Box]:
    """Square boxes of `side` covering an image of `shape` without overlap where it divides
    evenly; the last row and column are shifted in to stay whole (they may overlap)."""
    h, w = shape

    def starts(n):
        if n <= side:
            return [0]
        out = list(range(0, n - side + 1, side))
        return out if out[-1] == n - side else out + [n - side]
    return [(y, x, min(h, y + side), min(w, x + side)) for y in starts(h) for x in starts(w)]


def open_regions(shape: tuple[int, int], side: int, annotated: np.ndarray | None
                 ) -> list[Box]:
    """The boxes of `regions_of` that still wait for a person: at least OPEN_SHARE of each
    lies outside `annotated` (the annotated-region mask; None: nothing annotated yet)."""
    boxes = regions_of(shape, side)
    if annotated is None:
        return boxes
    done = annotated > 0
    return [b for b in boxes
            if 1.0 - done[b[0]:b[2], b[1]:b[3]].mean() >= OPEN_SHARE]


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """A boolean mask of `shape`, True inside `box`."""
    mask = np.zeros(shape, bool)
    mask[box[0]:box[2], box[1]:box[3]] = True
    return mask

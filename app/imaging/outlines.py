"""Cell outlines as polygons: a label image (Y, X) -> one closed polygon per cell, in
full-resolution pixel coordinates ((x, y) of pixel centres, the same coordinates as the
workspace's shapes). Pure arrays; used by the HTTP API's JSON annotations."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure


def cell_outlines(labels: np.ndarray, tolerance: float = 0.5) -> dict[int, list[list[float]]]:
    """{label: [[x, y], ...]} of every cell of a 2-D label image: the outer contour of its
    largest connected piece, simplified to within `tolerance` pixels (0: not simplified).
    The polygon is closed (its last vertex repeats the first)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (Y, X), got shape {labels.shape}")
    out: dict[int, list[list[float]]] = {}
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        crop = np.pad(labels[box] == index, 1)
        contours = measure.find_contours(crop.astype(np.float32), 0.5)
        if not contours:
            continue
        contour = max(contours, key=len)
        if tolerance > 0:
            contour = measure.approximate_polygon(contour, tolerance)
        r0, c0 = box[0].start, box[1].start
        out[index] = [[round(float(c + c0 - 1 + 0.5), 2), round(float(r + r0 - 1 + 0.5), 2)]
                      for r, c in contour]
    return out


def labels_from_polygons(polygons: list, shape: tuple[int, int]) -> np.ndarray:
    """The (Y, X) instance label image of cells given as polygons in the coordinates
    `cell_outlines` gives ([[x, y], ...], pixel centres at +0.5): cell k (1-based, in order)
    covers the pixels whose centres lie inside its polygon; a later cell covers an earlier
    one where they overlap. uint16, or uint32 beyond 65,535 cells."""
    from skimage import draw

    dtype = np.uint16 if len(polygons) <= 65535 else np.uint32
    labels = np.zeros(shape, dtype)
    for k, polygon in enumerate(polygons, start=1):
        vertices = np.asarray(polygon, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
            raise ValueError(f"cell {k}: a polygon needs at least 3 [x, y] vertices")
        if not np.isfinite(vertices).all():
            raise ValueError(f"cell {k}: the polygon has a vertex that is not a number")
        rr, cc = draw.polygon(vertices[:, 1] - 0.5, vertices[:, 0] - 0.5, shape)
        labels[rr, cc] = k
    return labels

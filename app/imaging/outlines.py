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


# The rasteriser tests every pixel of a polygon's bounding box against each of its edges:
# the work (pixels x vertices) of one request is bounded, or a few kilobytes of polygons that
# each cover the whole image would hold a web worker for hours. An outline of
# `cell_outlines` has tens of vertices and a box of its cell's size, so a real annotation
# needs a few times the image's pixels x its vertices, far below this.
RASTER_WORK_BASE = 10**9
RASTER_WORK_PER_PIXEL = 200


def labels_from_polygons(polygons: list, shape: tuple[int, int]) -> np.ndarray:
    """The (Y, X) instance label image of cells given as polygons in the coordinates
    `cell_outlines` gives ([[x, y], ...], pixel centres at +0.5): cell k (1-based, in order)
    covers the pixels whose centres lie inside its polygon; a later cell covers an earlier
    one where they overlap. uint16, or uint32 beyond 65,535 cells. Raises ValueError for a
    malformed polygon, or when the polygons would take too long to draw (see
    RASTER_WORK_BASE)."""
    from skimage import draw

    height, width = shape
    cells, work = [], 0
    for k, polygon in enumerate(polygons, start=1):
        vertices = np.asarray(polygon, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
            raise ValueError(f"cell {k}: a polygon needs at least 3 [x, y] vertices")
        if not np.isfinite(vertices).all():
            raise ValueError(f"cell {k}: the polygon has a vertex that is not a number")
        (x0, y0), (x1, y1) = vertices.min(axis=0) - 0.5, vertices.max(axis=0) - 0.5
        rows = max(0.0, min(y1, height - 1) - max(y0, 0) + 1)
        cols = max(0.0, min(x1, width - 1) - max(x0, 0) + 1)
        work += rows * cols * len(vertices)
        cells.append(vertices)
    budget = RASTER_WORK_BASE + RASTER_WORK_PER_PIXEL * height * width
    if work > budget:
        raise ValueError(f"the polygons cover too much to draw ({work:.2g} pixel-vertex "
                         f"tests, at most {budget:.2g} for this image): send fewer or "
                         "smaller cells, or upload a label image")
    dtype = np.uint16 if len(cells) <= 65535 else np.uint32
    labels = np.zeros(shape, dtype)
    for k, vertices in enumerate(cells, start=1):
        rr, cc = draw.polygon(vertices[:, 1] - 0.5, vertices[:, 0] - 0.5, shape)
        labels[rr, cc] = k
    return labels

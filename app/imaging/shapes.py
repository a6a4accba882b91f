"""Plotly shapes <-> instance label masks. Pure numpy/scikit-image, no web imports.

Coordinates are plotly data coordinates of the annotation figure, in which the image is laid
out so that pixel (row r, column c) covers the square [c, c+1) x [r, r+1); a pixel belongs to
a shape when its centre (c + 0.5, r + 0.5) lies inside. `scale` maps figure coordinates to
full-resolution pixels when the figure shows a downsampled image (full = figure * scale).

Fill rule: even-odd. A path with several closed subpaths (an outline and an inner loop) has a
hole, and a self-intersecting freehand loop fills the parts enclosed an odd number of times.

Edits (`apply_edits`) run in order and the newer edit wins where shapes overlap: a new cell
paints over older cells, a brush stroke moves pixels to the selected cell, an eraser clears.
A cell that an edit cuts into more disconnected pieces than it had becomes one cell per
piece (a cut across a cell makes two cells, never one label in two places): the largest
piece keeps the id, the others get new ids with the same class, and crumbs of `MIN_PIECE`
pixels or fewer are cleared.

Rectangles and ellipses are given by their bounding box (x0, y0)-(x1, y1): both are drawn
from one corner to the opposite corner, and the ellipse fills its box.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage import draw, measure

MAX_VERTICES = 20_000
_TOKEN = re.compile(r"[MLHVZmlhvz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class ShapeError(ValueError):
    """A shape that cannot be rasterised (unknown type, malformed path, too many vertices)."""


def parse_path(d: str) -> tuple[list[np.ndarray], bool]:
    """SVG path data with M/L/H/V/Z (absolute or relative) -> (subpaths as (N, 2) float x, y
    arrays, closed). `closed` is True when the last subpath ends with Z."""
    if not isinstance(d, str) or not d.strip():
        raise ShapeError("Empty path.")
    if _TOKEN.sub("", d).strip(" ,\t\r\n"):
        raise ShapeError("Path has commands other than M, L, H, V, Z.")
    tokens = _TOKEN.findall(d)
    subpaths: list[list[tuple[float, float]]] = []
    closed = False
    x = y = 0.0
    command = None
    i = 0
    n_vertices = 0

    def number() -> float:
        nonlocal i
        if i >= len(tokens) or tokens[i].isalpha():
            raise ShapeError("Path is missing a coordinate.")
        i += 1
        return float(tokens[i - 1])

    while i < len(tokens):
        if tokens[i].isalpha():
            command = tokens[i]
            i += 1
        elif command is None:
            raise ShapeError("Path must start with M.")
        upper = command.upper()
        relative = command.islower()
        if upper == "Z":
            closed = True
            if subpaths:
                x, y = subpaths[-1][0]
            command = None
            continue
        closed = False
        if upper in "ML":
            nx, ny = number(), number()
            if relative:
                nx, ny = x + nx, y + ny
            x, y = nx, ny
            if upper == "L" and not subpaths:
                raise ShapeError("Path must start with M.")
            if upper == "M":
                subpaths.append([(x, y)])
                command = "l" if relative else "L"   # later pairs after M are line-tos
            else:
                subpaths[-1].append((x, y))
        else:                                        # H or V
            value = number()
            if upper == "H":
                x = x + value if relative else value
            else:
                y = y + value if relative else value
            if not subpaths:
                raise ShapeError("Path must start with M.")
            subpaths[-1].append((x, y))
        n_vertices += 1
        if n_vertices > MAX_VERTICES:
            raise ShapeError(f"Path has more than {MAX_VERTICES} vertices.")
    if not subpaths:
        raise ShapeError("Path has no points.")
    return [np.asarray(s, np.float64) for s in subpaths], closed


def _polygon(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of pixels whose centres lie inside the polygon (x, y vertices)."""
    out = np.zeros(shape, bool)
    if len(vertices) < 3:
        return out
    rr, cc = draw.polygon(vertices[:, 1] - 0.5, vertices[:, 0] - 0.5, shape)
    out[rr, cc] = True
    return out


def _stroke(points: np.ndarray, width: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixels within width/2 of the polyline through `points` (x, y), i.e. a round brush."""
    radius = max(0.5, float(width) / 2)
    pts = points - 0.5                                    # to pixel-centre coordinates
    pad = int(np.ceil(radius)) + 1
    c0 = int(np.floor(pts[:, 0].min())) - pad
    r0 = int(np.floor(pts[:, 1].min())) - pad
    c1 = int(np.ceil(pts[:, 0].max())) + pad + 1
    r1 = int(np.ceil(pts[:, 1].max())) + pad + 1
    out = np.zeros(shape, bool)
    rc0, cc0 = max(r0, 0), max(c0, 0)
    rc1, cc1 = min(r1, shape[0]), min(c1, shape[1])
    if rc0 >= rc1 or cc0 >= cc1:
        return out
    local = np.ones((r1 - r0, c1 - c0), bool)             # True = not on the centre line
    rounded = np.rint(pts).astype(int) - [c0, r0]
    for (ca, ra), (cb, rb) in zip(rounded[:-1], rounded[1:]) if len(rounded) > 1 else [
            (rounded[0], rounded[0])]:
        rr, cc = draw.line(ra, ca, rb, cb)
        local[rr, cc] = False
    near = ndimage.distance_transform_edt(local) <= radius
    out[rc0:rc1, cc0:cc1] = near[rc0 - r0:rc1 - r0, cc0 - c0:cc1 - c0]
    return out


def _number(shape: dict, key: str) -> float:
    try:
        value = float(shape[key])
    except (KeyError, TypeError, ValueError):
        raise ShapeError(f"Shape is missing {key}.") from None
    if not np.isfinite(value):
        raise ShapeError(f"Shape has a bad {key}.")
    return value


def _scaled(shape: dict, scale: float) -> dict:
    if scale == 1:
        return shape
    out = dict(shape)
    for key in ("x0", "x1", "y0", "y1"):
        if key in out:
            out[key] = _number(shape, key) * scale
    if "path" in out:
        subpaths, closed = parse_path(shape["path"])
        out["path"] = "".join("M" + "L".join(f"{x * scale},{y * scale}" for x, y in s)
                              + ("Z" if closed else "") for s in subpaths)
    return out


def shape_area(shape: dict, image_shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """The filled area of a closed shape (path, rect, circle) as a boolean (Y, X) mask."""
    shape = _scaled(shape, scale)
    kind = shape.get("type")
    if kind == "rect":
        x0, x1 = sorted((_number(shape, "x0"), _number(shape, "x1")))
        y0, y1 = sorted((_number(shape, "y0"), _number(shape, "y1")))
        out = np.zeros(image_shape, bool)
        r0, r1 = max(0, int(np.ceil(y0 - 0.5))), min(image_shape[0], int(np.ceil(y1 - 0.5)))
        c0, c1 = max(0, int(np.ceil(x0 - 0.5))), min(image_shape[1], int(np.ceil(x1 - 0.5)))
        out[r0:r1, c0:c1] = True
        return out
    if kind == "circle":
        x0, x1 = sorted((_number(shape, "x0"), _number(shape, "x1")))
        y0, y1 = sorted((_number(shape, "y0"), _number(shape, "y1")))
        out = np.zeros(image_shape, bool)
        rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
        if rx <= 0 or ry <= 0:
            return out
        rr, cc = draw.ellipse((y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5, ry, rx, image_shape)
        out[rr, cc] = True
        return out
    if kind == "path":
        subpaths, _closed = parse_path(shape.get("path", ""))
        out = np.zeros(image_shape, bool)
        for vertices in subpaths:
            out ^= _polygon(vertices, image_shape)           # even-odd across subpaths
        return out
    raise ShapeError(f"Cannot fill a shape of type {kind!r}.")


def stroke_area(shape: dict, width: float, image_shape: tuple[int, int],
                scale: float = 1.0) -> np.ndarray:
    """The pixels a brush of `width` (figure units) covers along an open path or line."""
    shape = _scaled(shape, scale)
    if shape.get("type") == "line":
        points = np.array([[_number(shape, "x0"), _number(shape, "y0")],
                           [_number(shape, "x1"), _number(shape, "y1")]])
    elif shape.get("type") == "path":
        subpaths, _ = parse_path(shape.get("path", ""))
        points = np.concatenate(subpaths)
    else:
        raise ShapeError(f"A brush stroke must be a path or line, not {shape.get('type')!r}.")
    return _stroke(points, width * scale, image_shape)


def is_open_path(shape: dict) -> bool:
    """Plotly's open freehand path (drawopenpath) and lines are brush strokes."""
    if shape.get("type") == "line":
        return True
    if shape.get("type") != "path":
        return False
    return not parse_path(shape.get("path", ""))[1]


# ------------------------------------------------------------------ edits
@dataclass
class Canvas:
    """The state an annotation is edited in: instance labels, per-cell classes (cells not in
    the map have class 0), the annotated region (None = whole image) and counting points."""
    labels: np.ndarray                      # (Y, X) int32 while editing
    classes: dict[int, int] = field(default_factory=dict)
    region: np.ndarray | None = None        # (Y, X) bool
    points: list[list[float]] = field(default_factory=list)   # [x, y, class]

    @classmethod
    def blank(cls, shape: tuple[int, int]) -> "Canvas":
        return cls(np.zeros(shape, np.int32))

    def copy(self) -> "Canvas":
        return Canvas(self.labels.copy(), dict(self.classes),
                      None if self.region is None else self.region.copy(),
                      [list(p) for p in self.points])

    @property
    def next_label(self) -> int:
        return int(self.labels.max(initial=0)) + 1


POINT_RADIUS = 6.0
POINT_SCALE = 150.0        # a point is drawn (app.imaging.render) with radius side / this


UNSURE_POINT_SCALE = 1.5   # a model's unsure point is drawn this much wider (its ring)


def point_pick_radius(shape: tuple[int, ...], scale: float = 1.0,
                      unsure: bool = False) -> float:
    """How near a click must be to a point to remove it (px of a canvas of `shape`, which is
    the image scaled by `scale`): POINT_RADIUS, or the radius the point is drawn with on a
    large image (wider for a model's unsure point, `unsure`), so a click anywhere on the dot
    or its ring takes it away."""
    drawn = max(shape[:2]) / POINT_SCALE * (UNSURE_POINT_SCALE if unsure else 1.0)
    return max(POINT_RADIUS * scale, drawn)
MIN_PIECE = 4              # pixels: smaller pieces left by a cut are cleared, not made cells
_EIGHT = np.ones((3, 3), bool)


def _cells_in(labels: np.ndarray, area: np.ndarray, but: int = 0) -> list[int]:
    found = np.unique(labels[area])
    return [int(v) for v in found if v > 0 and v != but]


def _window(labels: np.ndarray, cells: list[int], near: tuple[slice, slice] | None,
            margin: int = 64) -> tuple[slice, slice] | None:
    """A box around `near` (grown by `margin` px) that holds all of `cells`, or None when a
    cell reaches its edge (then only the whole image is sure to hold it)."""
    if near is None:
        return None
    h, w = labels.shape
    box = (slice(max(0, near[0].start - margin), min(h, near[0].stop + margin)),
           slice(max(0, near[1].start - margin), min(w, near[1].stop + margin)))
    sub = labels[box]
    inner = [edge for edge, inside in ((sub[0], box[0].start > 0), (sub[-1], box[0].stop < h),
                                       (sub[:, 0], box[1].start > 0),
                                       (sub[:, -1], box[1].stop < w)) if inside]
    if inner and np.isin(np.concatenate(inner), cells).any():
        return None
    return box


def _pieces(labels: np.ndarray, cells: list[int],
            near: tuple[slice, slice] | None = None) -> dict[int, tuple]:
    """For each of `cells`: (bounding box, piece map of the box, number of 8-connected
    pieces). `near`: a box the cells are around (an edit's), so only a window around it is
    searched when the cells lie inside it (a whole 2048² image took about 25 ms)."""
    if not cells:
        return {}
    window = _window(labels, cells, near) or (slice(0, labels.shape[0]),
                                              slice(0, labels.shape[1]))
    sub = labels[window]
    boxes = ndimage.find_objects(np.where(np.isin(sub, cells), sub, 0))
    out = {}
    for label in cells:
        box = boxes[label - 1] if label - 1 < len(boxes) else None
        if box is not None:
            box = (slice(box[0].start + window[0].start, box[0].stop + window[0].start),
                   slice(box[1].start + window[1].start, box[1].stop + window[1].start))
            pieces, n = ndimage.label(labels[box] == label, structure=_EIGHT)
            out[label] = (box, pieces, n)
    return out


def split_cut_cells(canvas: Canvas, before: dict[int, int],
                    near: tuple[slice, slice] | None = None) -> list[int]:
    """After an edit: each cell of `before` ({id: pieces it had before the edit}) that now has
    more 8-connected pieces than before becomes one cell per piece. The largest piece keeps
    the id, every other piece gets a new id and the same class, and pieces of `MIN_PIECE`
    pixels or fewer are cleared. Returns the new ids (ascending, deterministic). `near`: the
    edit's box (see `_pieces`)."""
    new_ids: list[int] = []
    next_label = canvas.next_label
    for label, (box, pieces, n) in sorted(_pieces(canvas.labels, list(before), near).items()):
        if n <= before[label]:
            continue
        view = canvas.labels[box]
        sizes = np.bincount(pieces.ravel())[1:]
        for piece in np.argsort(-sizes, kind="stable")[1:] + 1:    # all but the largest
            where = pieces == piece
            if sizes[piece - 1] <= MIN_PIECE:
                view[where] = 0
                continue
            view[where] = next_label
            if canvas.classes.get(label):
                canvas.classes[next_label] = canvas.classes[label]
            new_ids.append(next_label)
            next_label += 1
    return new_ids


def _box_of(area: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(area.any(1)), np.flatnonzero(area.any(0))
    if not rows.size:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _pieces_before(labels: np.ndarray, area: np.ndarray, near: tuple[slice, slice] | None,
                   but: int = 0) -> dict[int, int]:
    """{cell id: number of pieces} of the cells an edit over `area` is about to touch."""
    return {label: n for label, (_b, _p, n) in
            _pieces(labels, _cells_in(labels, area, but), near).items()}


def _area(edit: dict, shape: tuple[int, int], scale: float) -> np.ndarray:
    if edit.get("width") and is_open_path(edit["shape"]):
        return stroke_area(edit["shape"], float(edit["width"]), shape, scale)
    return shape_area(edit["shape"], shape, scale)


def apply_edit(canvas: Canvas, edit: dict, scale: float = 1.0) -> Canvas:
    """Apply one edit in place and return the canvas. Edits (dicts, JSON-safe):

    - {"op": "add", "label": L, "cls": k, "shape": S} new cell L (newer wins on overlap)
    - {"op": "brush", "label": L, "shape": S, "width": w} paint the stroke (or area) into L
    - {"op": "erase", "shape": S, "width": w} clear the stroke (or, without width, the area)
    - {"op": "replace", "label": L, "shape": S} redraw cell L as the closed shape S
    - {"op": "delete", "label": L}; {"op": "class", "label": L, "cls": k}; {"op": "clear"}
    - {"op": "region", "shape": S} add S to the annotated region; {"op": "region_all"}
    - {"op": "point", "x", "y", "cls"} add a counting point; {"op": "unpoint", "x", "y"}
      remove the point nearest to (x, y) within point_pick_radius
    - {"op": "check", "labels": [L, ...]} the user accepted these suggested cells as they
      are (changes no pixel; app.services.cell_review reads it)
    """
    op = edit.get("op")
    labels = canvas.labels
    if op in ("add", "brush", "replace"):
        label = int(edit["label"])
        if label < 1:
            raise ShapeError("Cell ids start at 1.")
        if op == "replace":
            labels[labels == label] = 0
            area = shape_area(edit["shape"], labels.shape, scale)
        else:
            area = _area(edit, labels.shape, scale)
        near = _box_of(area)
        before = _pieces_before(labels, area, near, but=label)
        labels[area] = label
        split_cut_cells(canvas, before, near)
        if op == "add":
            cls = int(edit.get("cls") or 0)
            if cls:
                canvas.classes[label] = cls
            else:
                canvas.classes.pop(label, None)
    elif op == "erase":
        area = _area(edit, labels.shape, scale)
        near = _box_of(area)
        before = _pieces_before(labels, area, near)
        labels[area] = 0
        split_cut_cells(canvas, before, near)
    elif op == "delete":
        labels[labels == int(edit["label"])] = 0
        canvas.classes.pop(int(edit["label"]), None)
    elif op == "class":
        cls = int(edit.get("cls") or 0)
        if cls:
            canvas.classes[int(edit["label"])] = cls
        else:
            canvas.classes.pop(int(edit["label"]), None)
    elif op == "clear":
        labels[:] = 0
        canvas.classes.clear()
        canvas.points.clear()
    elif op == "region":
        area = shape_area(edit["shape"], labels.shape, scale)
        canvas.region = area if canvas.region is None else (canvas.region | area)
    elif op == "region_all":
        canvas.region = None
    elif op == "check":
        pass
    elif op == "point":
        canvas.points.append([float(edit["x"]) * scale, float(edit["y"]) * scale,
                              int(edit.get("cls") or 0)])
    elif op == "unpoint":
        if canvas.points:
            pts = np.asarray([p[:2] for p in canvas.points])
            d = np.hypot(pts[:, 0] - float(edit["x"]) * scale, pts[:, 1] - float(edit["y"]) * scale)
            nearest = int(d.argmin())
            # the widest reach: the page already chose "unpoint" by each point's own reach
            if d[nearest] <= point_pick_radius(canvas.labels.shape, scale, unsure=True):
                canvas.points.pop(nearest)
    else:
        raise ShapeError(f"Unknown edit {op!r}.")
    return canvas


def apply_edits(canvas: Canvas, edits: list[dict], scale: float = 1.0) -> Canvas:
    """Apply edits in order (the canvas is modified in place)."""
    for edit in edits:
        apply_edit(canvas, edit, scale)
    return canvas


def label_values(labels: np.ndarray) -> np.ndarray:
    """The distinct values of a label image, sorted, from its runs of equal values (cells are
    runs along the rows): on a 2048² image 3 ms, where a bincount over every pixel took 12
    ms and skimage's relabel_sequential with np.unique 85 ms."""
    flat = np.ascontiguousarray(labels).ravel()
    if not flat.size:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return np.unique(np.concatenate((flat[:1], flat[starts])))


def renumber(labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Labels numbered 1..N without gaps, in the order of their ids (uint16, uint32 above
    65535 cells), and the map old id -> new id. Below 0 is background."""
    values = label_values(labels)
    ids = values[values > 0].astype(np.int64)
    n = int(ids.size)
    dtype = np.uint16 if n <= 65535 else np.uint32
    if n == 0:
        return np.zeros(labels.shape, dtype), {}
    if int(ids[-1]) == n and int(values[0]) >= 0:      # already 1..N: nothing to renumber
        return labels.astype(dtype), {int(i): int(i) for i in ids}
    low = min(0, int(values[0]))
    table = np.zeros(int(ids[-1]) - low + 1, dtype)
    table[ids - low] = np.arange(1, n + 1, dtype=dtype)
    out = table[labels - low] if low else table[labels]
    return out, {int(i): k for k, i in enumerate(ids.tolist(), start=1)}


def finish(canvas: Canvas) -> tuple[np.ndarray, dict[str, int]]:
    """Labels numbered 1..N without gaps (`renumber`) and the class map keyed by the new ids
    (as strings, for JSON)."""
    out, forward = renumber(canvas.labels)
    classes = {str(forward[int(label)]): int(cls) for label, cls in canvas.classes.items()
               if int(label) in forward and cls}
    return out, classes


def cell_polygon(labels: np.ndarray, label: int, tolerance: float = 1.0) -> str | None:
    """The outline of cell `label` as a closed plotly path (figure coordinates), simplified
    to within `tolerance` pixels; None when the cell does not exist. Only the largest
    connected piece's outer contour is returned."""
    mask = labels == label
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    r0, c0 = rows.min(), cols.min()
    crop = np.pad(mask[r0:rows.max() + 1, c0:cols.max() + 1], 1)
    contours = measure.find_contours(crop.astype(np.float32), 0.5)
    contour = max(contours, key=len)
    contour = measure.approximate_polygon(contour, tolerance)
    # contour is (row, col) in crop pixel-index coordinates; +0.5 moves to pixel centres
    xs = contour[:, 1] + c0 - 1 + 0.5
    ys = contour[:, 0] + r0 - 1 + 0.5
    return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys)) + "Z"

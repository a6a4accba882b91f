"""Point annotations (counting mode) in the files other tools read and write.

In CellLoop a point is `[x, y, cls]`: x the column and y the row in image pixels (0-based,
the centre of pixel (0, 0) is (0, 0)), cls the index of the project's cell class.

Formats:
- CSV with a header naming `x`, `y` and optionally `class` (a class name or index) — one
  row per cell. A CSV with two or three unnamed numeric columns is read as x, y[, class].
- napari's points layer saved as CSV: `index, axis-0, axis-1` (axis-0 is the row, y; axis-1
  the column, x). A 3D layer (`axis-2`) is refused: CellLoop's points are 2D.
- Label Studio KeyPointLabels: `labelstudio_tasks` writes tasks whose results carry x and y
  in percent of the image's width and height, as Label Studio exports them
  (storage.labelstudio reads them back).

Readers give `RawPoint`s (class still a name or index as written); `resolve` checks them
against the image's size and the project's classes, raising PointsError with a message that
names the file and the row."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

MAX_POINTS = 1_000_000
MAX_BYTES = 64 << 20


class PointsError(ValueError):
    """A points file that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class RawPoint:
    x: float
    y: float
    cls: str | int | None = None      # as written: a class name, an index, or absent


def _number(text: str, name: str, row: int, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PointsError(f"{name}: row {row}: {what} {text!r} is not a number.") from None
    if not math.isfinite(value):
        raise PointsError(f"{name}: row {row}: {what} {text!r} is not a finite number.")
    return value


def _class_value(text: str | None) -> str | int | None:
    text = (text or "").strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_BYTES:
        raise PointsError(f"{name}: {len(data) >> 20} MiB is more than a points file may be "
                          f"({MAX_BYTES >> 20} MiB).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PointsError(f"{name}: not a text (UTF-8) CSV file.") from None


def _columns(header: list[str], name: str) -> tuple[int, int, int | None] | None:
    """(x column, y column, class column or None) from a header row, or None when the first
    row is data (no header)."""
    keys = [h.strip().lower() for h in header]
    if "axis-2" in keys:
        raise PointsError(f"{name}: a 3D napari points layer (axis-0, axis-1, axis-2); "
                          "CellLoop's points are 2D (x, y).")
    if "axis-0" in keys and "axis-1" in keys:
        cls = next((keys.index(k) for k in ("class", "label") if k in keys), None)
        return keys.index("axis-1"), keys.index("axis-0"), cls
    if "x" in keys and "y" in keys:
        cls = next((keys.index(k) for k in ("class", "label", "cls") if k in keys), None)
        return keys.index("x"), keys.index("y"), cls
    try:
        [float(k) for k in keys[:2]]
    except ValueError:
        raise PointsError(f"{name}: the header names no x and y columns (found "
                          f"{', '.join(h for h in header if h) or 'nothing'}); write x,y[,class] "
                          "or napari's axis-0,axis-1.") from None
    return None


def read_points_csv(data: bytes, name: str = "points.csv") -> list[RawPoint]:
    """Points from a CSV (x,y[,class] with or without a header, or napari's axis-0,axis-1)."""
    rows = [r for r in csv.reader(io.StringIO(_decode(data, name))) if any(c.strip() for c in r)]
    if not rows:
        return []
    columns = _columns(rows[0], name)
    if columns is None:
        if len(rows[0]) not in (2, 3):
            raise PointsError(f"{name}: without a header, rows must be x,y or x,y,class "
                              f"(row 1 has {len(rows[0])} columns).")
        columns, body, first = (0, 1, 2 if len(rows[0]) == 3 else None), rows, 1
    else:
        body, first = rows[1:], 2
    if len(body) > MAX_POINTS:
        raise PointsError(f"{name}: {len(body):,} points is more than {MAX_POINTS:,}.")
    xi, yi, ci = columns
    out = []
    for row_no, row in enumerate(body, start=first):
        if max(xi, yi) >= len(row):
            raise PointsError(f"{name}: row {row_no} has {len(row)} columns; x and y are "
                              f"columns {xi + 1} and {yi + 1}.")
        out.append(RawPoint(_number(row[xi], name, row_no, "x"),
                            _number(row[yi], name, row_no, "y"),
                            _class_value(row[ci]) if ci is not None and ci < len(row) else None))
    return out


def from_labelstudio(points: Iterable[dict]) -> list[RawPoint]:
    """The points storage.labelstudio.parse_task gives ({"x", "y", "label"} in pixels)."""
    return [RawPoint(float(p["x"]), float(p["y"]), p.get("label") or None) for p in points]


def resolve(points: Sequence[RawPoint], width: int, height: int,
            class_names: Sequence[str], name: str = "points") -> list[list]:
    """`[[x, y, cls], ...]` for an image of `width` x `height` in a project whose classes are
    `class_names`: every point inside the image, every class known (by name, or by index
    0..n-1; none given: the first class)."""
    index = {c.lower(): i for i, c in enumerate(class_names)}
    n_classes = max(1, len(class_names))
    out = []
    for i, p in enumerate(points, start=1):
        # the image covers [-0.5, width - 0.5] in pixel-centre coordinates; tools that count
        # from pixel corners (Label Studio's percentages) reach `width`: points up to half a
        # pixel beyond the last pixel's edge are taken into it
        if not (-0.5 <= p.x <= width and -0.5 <= p.y <= height):
            raise PointsError(f"{name}: point {i} ({p.x:g}, {p.y:g}) is outside the "
                              f"{width}x{height} image.")
        p = RawPoint(p.x if p.x < width - 0.5 else width - 1.0,
                     p.y if p.y < height - 0.5 else height - 1.0, p.cls)
        if p.cls is None:
            cls = 0
        elif isinstance(p.cls, int):
            if not 0 <= p.cls < n_classes:
                raise PointsError(f"{name}: point {i} has class {p.cls}; the project's classes "
                                  f"are 0..{n_classes - 1}.")
            cls = p.cls
        else:
            if p.cls.lower() not in index:
                raise PointsError(f"{name}: point {i} has class {p.cls!r}, which is not one of "
                                  f"the project's ({', '.join(class_names) or 'none'}).")
            cls = index[p.cls.lower()]
        out.append([round(float(p.x), 2), round(float(p.y), 2), cls])
    return out


def _class_name(cls, class_names: Sequence[str]) -> str:
    cls = int(cls or 0)
    return class_names[cls] if 0 <= cls < len(class_names) else str(cls)


def write_points_csv(points: Iterable[Sequence], class_names: Sequence[str]) -> bytes:
    """x,y,class (the class by name) — what `read_points_csv` reads back."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["x", "y", "class"])
    for p in points:
        writer.writerow([f"{float(p[0]):g}", f"{float(p[1]):g}",
                         _class_name(p[2] if len(p) > 2 else 0, class_names)])
    return buf.getvalue().encode()


def write_napari_csv(points: Iterable[Sequence]) -> bytes:
    """napari's points-layer CSV: index, axis-0 (row, y), axis-1 (column, x)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "axis-0", "axis-1"])
    for i, p in enumerate(points):
        writer.writerow([i, f"{float(p[1]):g}", f"{float(p[0]):g}"])
    return buf.getvalue().encode()


def labelstudio_tasks(images: Iterable[tuple[str, int, int, Sequence[Sequence]]],
                      class_names: Sequence[str], from_name: str = "kp",
                      to_name: str = "image") -> list[dict]:
    """Label Studio tasks, one per (file name, width, height, points), each with one
    annotation of KeyPointLabels results (x, y in percent of the image's size)."""
    tasks = []
    for task_id, (file_name, width, height, points) in enumerate(images, start=1):
        results = [{
            "id": f"p{task_id}-{k}", "type": "keypointlabels", "from_name": from_name,
            "to_name": to_name, "original_width": int(width), "original_height": int(height),
            "value": {"x": 100.0 * float(p[0]) / width, "y": 100.0 * float(p[1]) / height,
                      "width": 0.5,
                      "keypointlabels": [_class_name(p[2] if len(p) > 2 else 0, class_names)]},
        } for k, p in enumerate(points)]
        tasks.append({"id": task_id, "data": {to_name: file_name},
                      "annotations": [{"id": task_id, "result": results}]})
    return tasks

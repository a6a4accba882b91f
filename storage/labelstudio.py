"""Label Studio JSON exports: polygons, brush masks (Label Studio's RLE) and keypoints.

Label Studio stores coordinates in percent of the image size, and brush masks as a bit-packed
run-length code of the flattened RGBA image: a 32-bit value count, a 5-bit word size, four
4-bit run-length field widths, then runs, each a flag bit (repeat or literal), a 2-bit width
selector, the run length minus one, and the value(s). Bits are read most significant first.

Exports come from outside, so every field is checked before it is used: a malformed task
raises `LabelStudioError` naming the task and the field, and mask sizes (original width x
height, the RLE's value count) are checked against a pixel limit before any allocation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MAX_PIXELS = 1 << 28
DEFAULT_MAX_BYTES = 512 << 20      # the labels are uint32: 4 bytes a pixel


class LabelStudioError(ValueError):
    """A task of a Label Studio export cannot be used; the message says where and why."""


class _Bits:
    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(bytes(data), np.uint8))
        self.pos = 0

    def skip(self, n: int) -> None:
        if self.pos + n > self.bits.size:
            raise ValueError("brush RLE ends early")
        self.pos += n

    def read(self, n: int) -> int:
        if self.pos + n > self.bits.size:
            raise ValueError("brush RLE ends early")
        value = 0
        for bit in self.bits[self.pos:self.pos + n]:
            value = (value << 1) | int(bit)
        self.pos += n
        return value


def _rle_bytes(rle) -> bytes:
    if not isinstance(rle, list) or not rle:
        raise ValueError("brush 'rle' must be a non-empty list of byte values")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rle):
        raise ValueError("brush 'rle' must hold whole numbers from 0 to 255")
    return bytes(rle)


def decode_brush_rle(rle: list[int], height: int, width: int,
                     max_pixels: int = DEFAULT_MAX_PIXELS, dry_run: bool = False
                     ) -> np.ndarray | None:
    """Boolean (Y, X) mask from a Label Studio brush RLE (ValueError if malformed). The
    declared size is checked before anything is allocated; `dry_run` walks the code to
    validate it and returns None without allocating the mask."""
    if height * width > max_pixels:
        raise ValueError(f"a {width}x{height} mask is more than the limit of {max_pixels:,} "
                         "pixels")
    bits = _Bits(_rle_bytes(rle))
    num = bits.read(32)
    if num != height * width * 4:
        raise ValueError(f"brush RLE holds {num} values, expected {height * width * 4}")
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    # a pixel is set when any of its four RGBA values is non-zero: runs are written straight
    # into the (Y*X) mask, never into a 4x larger RGBA buffer
    out = None if dry_run else np.zeros(height * width, bool)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = min(num, i + 1 + bits.read(widths[bits.read(2)]))
        if repeat:
            value = bits.read(word)
            if out is not None and value:
                out[i // 4:(j - 1) // 4 + 1] = True
        elif out is None:
            bits.skip(word * (j - i))
        else:
            for k in range(i, j):
                if bits.read(word):
                    out[k // 4] = True
        i = j
    return None if out is None else out.reshape(height, width)


def encode_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of a boolean mask (as Label Studio writes: value in RGBA)."""
    values = np.repeat(np.where(np.asarray(mask, bool).ravel(), 255, 0).astype(np.uint8), 4)
    widths = [3, 6, 11, 16]
    bits: list[str] = [format(values.size, "032b"), format(8 - 1, "05b")]
    bits += [format(w - 1, "04b") for w in widths]
    change = np.flatnonzero(np.diff(values.astype(np.int16))) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [values.size]])
    for start, end in zip(starts.tolist(), ends.tolist()):
        value, length = int(values[start]), end - start
        while length > 0:
            n = min(length, 1 << widths[-1])
            sel = next(k for k, w in enumerate(widths) if n - 1 < (1 << w))
            bits += ["1", format(sel, "02b"), format(n - 1, f"0{widths[sel]}b"),
                     format(value, "08b")]
            length -= n
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[i:i + 8], 2) for i in range(0, len(stream), 8)]


@dataclass
class TaskAnnotation:
    image: str                                   # the task's image reference (URL/path)
    labels: np.ndarray | None = None             # (Y, X) instance labels, or None
    points: list[dict] = field(default_factory=list)   # [{"x": px, "y": py, "label": str}]
    class_names: dict[int, str] = field(default_factory=dict)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LabelStudioError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _shape(result: dict, max_pixels: int, max_bytes: int) -> tuple[int, int]:
    dims = []
    for key in ("original_height", "original_width"):
        v = _number(result.get(key), key)
        if not v.is_integer() or v < 1:
            raise LabelStudioError(f"{key} must be a whole number of pixels, not {v!r}")
        dims.append(int(v))
    if dims[0] * dims[1] > max_pixels:
        raise LabelStudioError(f"original size {dims[1]}x{dims[0]} is more than the limit of "
                               f"{max_pixels:,} pixels (MAX_IMAGE_PIXELS)")
    if dims[0] * dims[1] * 4 > max_bytes:
        raise LabelStudioError(f"original size {dims[1]}x{dims[0]} needs a label image of "
                               f"{dims[0] * dims[1] * 4 / 2**20:,.0f} MiB, more than the limit "
                               f"of {max_bytes / 2**20:,.0f} MiB (MAX_IMAGE_BYTES)")
    return dims[0], dims[1]


def _class_name(value: dict, kind: str) -> str | None:
    names = value.get(kind)
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LabelStudioError(f"'{kind}' must be a list of names")
    return names[0] if names else None


def _polygon(value: dict) -> np.ndarray:
    points = value.get("points")
    if not isinstance(points, list) or len(points) < 3 or not all(
            isinstance(p, list) and len(p) == 2 for p in points):
        raise LabelStudioError("polygon 'points' must be a list of at least 3 [x, y] pairs")
    return np.array([[_number(x, "a polygon point"), _number(y, "a polygon point")]
                     for x, y in points], float)


def parse_task(task, max_pixels: int = DEFAULT_MAX_PIXELS, dry_run: bool = False,
               max_bytes: int = DEFAULT_MAX_BYTES) -> TaskAnnotation:
    """A task's latest annotation as instance labels (polygons, brushes) and points; raises
    LabelStudioError for anything malformed. With `dry_run` every field and mask code is
    checked but no mask is drawn (`labels` stays None)."""
    from skimage.draw import polygon as fill_polygon

    if not isinstance(task, dict):
        raise LabelStudioError("a task must be a JSON object")
    data = task.get("data", {})
    if not isinstance(data, dict) or not isinstance(data.get("image", ""), str):
        raise LabelStudioError("'data.image' must be a string")
    anns = task.get("annotations", [])
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise LabelStudioError("'annotations' must be a list of objects")
    item = TaskAnnotation(image=data.get("image", ""))
    anns = [a for a in anns if not a.get("was_cancelled")]
    if not anns:
        return item
    results = anns[-1].get("result", [])
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise LabelStudioError("'result' must be a list of objects")
    shape = None
    for n, result in enumerate(results):
        kind, value = result.get("type"), result.get("value", {})
        if kind not in ("polygonlabels", "brushlabels", "keypointlabels"):
            continue
        try:
            if not isinstance(value, dict):
                raise LabelStudioError("'value' must be an object")
            this = _shape(result, max_pixels, max_bytes)
            if shape is not None and this != shape:
                raise LabelStudioError(f"size {this[1]}x{this[0]} differs from the task's "
                                       f"other results ({shape[1]}x{shape[0]})")
            shape = this
            name = _class_name(value, kind)
            if kind == "keypointlabels":
                h, w = shape
                item.points.append({"x": _number(value.get("x"), "x") * w / 100,
                                    "y": _number(value.get("y"), "y") * h / 100,
                                    "label": name or ""})
                continue
            if kind == "polygonlabels":
                xy = _polygon(value)
                if dry_run:
                    continue
                mask = np.zeros(shape, bool)
                rr, cc = fill_polygon(xy[:, 1] * shape[0] / 100, xy[:, 0] * shape[1] / 100,
                                      shape)
                mask[rr, cc] = True
            else:
                if value.get("format", "rle") != "rle":
                    raise LabelStudioError(f"brush format {value.get('format')!r} is not "
                                           "supported (only 'rle')")
                try:
                    mask = decode_brush_rle(value.get("rle"), *shape, max_pixels, dry_run)
                except ValueError as exc:
                    raise LabelStudioError(str(exc)) from None
                if dry_run:
                    continue
        except LabelStudioError as exc:
            raise LabelStudioError(f"result {n + 1} ({kind}): {exc}") from None
        if item.labels is None:
            item.labels = np.zeros(shape, np.uint32)
        if not mask.any():
            continue
        new_id = int(item.labels.max()) + 1
        item.labels[mask] = new_id
        if name:
            item.class_names[new_id] = name
    return item


def task_label(task, index: int) -> str:
    """How a task is named in messages: its position, id and image."""
    parts = [f"task {index + 1}"]
    if isinstance(task, dict):
        if isinstance(task.get("id"), (int, str)):
            parts.append(f"id {task['id']}")
        data = task.get("data")
        if isinstance(data, dict) and isinstance(data.get("image"), str):
            parts.append(repr(data["image"].rsplit("/", 1)[-1][:100]))
    return " ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


def parse_export(tasks: list[dict], max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> list[TaskAnnotation]:
    """Each task's latest annotation as instance labels and points; LabelStudioError (naming
    the task) for the first malformed one."""
    if not isinstance(tasks, list):
        raise LabelStudioError("expected a list of tasks")
    parsed = []
    for i, task in enumerate(tasks):
        try:
            parsed.append(parse_task(task, max_pixels, max_bytes=max_bytes))
        except LabelStudioError as exc:
            raise LabelStudioError(f"{task_label(task, i)}: {exc}") from None
    return parsed

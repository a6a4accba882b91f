"""Label Studio JSON exports: polygons, brush masks (Label Studio's RLE) and keypoints.

Label Studio stores coordinates in percent of the image size, and brush masks as a bit-packed
run-length code of the flattened RGBA image: a 32-bit value count, a 5-bit word size, four
4-bit run-length field widths, then runs, each a flag bit (repeat or literal), a 2-bit width
selector, the run length minus one, and the value(s). Bits are read most significant first.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class _Bits:
    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(bytes(data), np.uint8))
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > self.bits.size:
            raise ValueError("brush RLE ends early")
        value = 0
        for bit in self.bits[self.pos:self.pos + n]:
            value = (value << 1) | int(bit)
        self.pos += n
        return value


def decode_brush_rle(rle: list[int], height: int, width: int) -> np.ndarray:
    """Boolean (Y, X) mask from a Label Studio brush RLE."""
    bits = _Bits(bytes(rle))
    num = bits.read(32)
    if num != height * width * 4:
        raise ValueError(f"brush RLE holds {num} values, expected {height * width * 4}")
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = min(num, i + 1 + bits.read(widths[bits.read(2)]))
        if repeat:
            out[i:j] = bits.read(word)
        else:
            for k in range(i, j):
                out[k] = bits.read(word)
        i = j
    return out.reshape(height, width, 4).max(axis=2) > 0


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


def _shape(result: dict) -> tuple[int, int]:
    return int(result["original_height"]), int(result["original_width"])


def parse_export(tasks: list[dict]) -> list[TaskAnnotation]:
    """Each task's latest annotation as instance labels (polygons, brushes) and points."""
    from skimage.draw import polygon as fill_polygon

    parsed = []
    for task in tasks:
        anns = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        image = str(task.get("data", {}).get("image", ""))
        item = TaskAnnotation(image=image)
        if not anns:
            parsed.append(item)
            continue
        for result in anns[-1].get("result", []):
            kind, value = result.get("type"), result.get("value", {})
            if kind in ("polygonlabels", "brushlabels"):
                shape = _shape(result)
                if item.labels is None:
                    item.labels = np.zeros(shape, np.uint32)
                if kind == "polygonlabels":
                    xy = np.asarray(value["points"], float)
                    mask = np.zeros(shape, bool)
                    rr, cc = fill_polygon(xy[:, 1] * shape[0] / 100, xy[:, 0] * shape[1] / 100,
                                          shape)
                    mask[rr, cc] = True
                else:
                    mask = decode_brush_rle(value["rle"], *shape)
                if not mask.any():
                    continue
                new_id = int(item.labels.max()) + 1
                item.labels[mask] = new_id
                names = value.get(kind) or []
                if names:
                    item.class_names[new_id] = names[0]
            elif kind == "keypointlabels":
                h, w = _shape(result)
                names = value.get("keypointlabels") or [""]
                item.points.append({"x": float(value["x"]) * w / 100,
                                    "y": float(value["y"]) * h / 100, "label": names[0]})
        parsed.append(item)
    return parsed

"""Write images, masks and tables to files, atomically (temp file, then rename).

Formats: TIFF (images with their Z, C axes in tifffile's metadata; instance masks as plain
2-D uint16/uint32 TIFFs, which napari and Cellpose read), semantic PNG masks (one uint8 class
index per pixel) and counts tables (CSV and JSON).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique per call: two threads of one process may write the same file at once
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def image_tiff_bytes(zcyx: np.ndarray, channel_names: list[str] | None = None) -> bytes:
    """TIFF of a (Z, C, Y, X) image, singleton Z/C dropped, axes recorded in metadata."""
    import tifffile

    axes, array = "ZCYX", zcyx
    if array.shape[1] == 1:          # drop a single channel axis
        axes, array = "ZYX", array[:, 0]
    if array.shape[0] == 1:          # and a single plane
        axes, array = axes[1:], array[0]
    metadata = {"axes": axes}
    if channel_names:
        metadata["Channel"] = {"Name": list(channel_names)}
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, metadata=metadata, compression="zlib")
    return buf.getvalue()


def mask_tiff_bytes(labels: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib")
    return buf.getvalue()


def semantic_png_bytes(labels: np.ndarray, cell_classes: dict | None = None) -> bytes:
    """uint8 PNG: 0 background, k = 1 + class index of the cell covering the pixel."""
    from PIL import Image

    lut = np.ones(int(labels.max(initial=0)) + 1, np.uint8)
    lut[0] = 0
    for label_id, cls in (cell_classes or {}).items():
        if 0 < int(label_id) < lut.size:
            lut[int(label_id)] = min(255, 1 + int(cls))
    buf = io.BytesIO()
    Image.fromarray(lut[labels]).save(buf, "PNG")
    return buf.getvalue()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, json.dumps(obj, indent=1, default=str).encode())


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(path, buf.getvalue().encode())

"""File responses of `/api/v1`: TIFFs of arrays and model files, sent with `send_file` so
the WSGI server streams them in blocks (model files straight from disk), and the bytes of
multipart uploads."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from flask import request, send_file

from app.errors import ValidationError
from storage.writers import image_tiff_bytes, mask_tiff_bytes

TIFF = "image/tiff"


def tiff(data: bytes, filename: str, headers: dict | None = None):
    response = send_file(io.BytesIO(data), mimetype=TIFF, as_attachment=True,
                         download_name=filename, max_age=0)
    for key, value in (headers or {}).items():
        response.headers[key] = str(value)
    return response


def image_tiff(zcyx: np.ndarray, channel_names: list, filename: str):
    return tiff(image_tiff_bytes(zcyx, channel_names), filename)


def labels_tiff(labels: np.ndarray, filename: str, region: np.ndarray | None = None,
                headers: dict | None = None):
    """The label image; with a region, a second page holds the annotated region (0/1)."""
    if region is None:
        return tiff(mask_tiff_bytes(labels), filename, headers)
    import tifffile
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(labels, compression="zlib")
        tw.write(region.astype(np.uint8), compression="zlib")
    return tiff(buf.getvalue(), filename, headers)


def model_file(path: Path):
    return send_file(path, mimetype="application/octet-stream", as_attachment=True,
                     download_name=path.name, max_age=0)


def uploaded(field: str = "files") -> list[tuple[str, bytes]]:
    """(name, bytes) of each file in the multipart field `field`."""
    files = request.files.getlist(field)
    if not files:
        raise ValidationError(f"Send the files as multipart/form-data field {field!r}.")
    return [(f.filename or "", f.read()) for f in files]

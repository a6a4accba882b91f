"""Hostile files for the decompression-bomb tests and bench/bench_bombs.py.

Each builder is cheap: the payloads are zeros, compressed once and repeated (TIFF) or
streamed through the compressor chunk by chunk (zip, PNG), so no full-size array is ever
allocated to make them.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

CHUNK = 16 << 20


def zlib_tiff(side: int = 16384, dtype=np.float32, rows_per_strip: int = 256) -> bytes:
    """A valid zlib-compressed TIFF of zeros, `side` x `side` (16384 float32: 1 GiB decoded,
    about 1 MB on disk)."""
    import io

    import tifffile

    dtype = np.dtype(dtype)
    rows_per_strip = min(rows_per_strip, side)
    strip = zlib.compress(bytes(side * dtype.itemsize * rows_per_strip), 9)
    n_strips = -(-side // rows_per_strip)
    last = side - (n_strips - 1) * rows_per_strip
    strips = [strip] * (n_strips - 1) + [
        zlib.compress(bytes(side * dtype.itemsize * last), 9)]
    buf = io.BytesIO()
    tifffile.imwrite(buf, data=iter(strips), shape=(side, side), dtype=dtype,
                     compression="zlib", rowsperstrip=rows_per_strip, photometric="minisblack")
    return buf.getvalue()


def zeros_zip(path: Path, sizes: dict[str, int], level: int | None = None) -> Path:
    """A zip whose entries (name -> uncompressed bytes) hold zeros, written by streaming."""
    chunk = bytes(CHUNK)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, size in sizes.items():
            with zf.open(name, "w", force_zip64=True) as fh:
                for start in range(0, size, CHUNK):
                    fh.write(chunk[:min(CHUNK, size - start)])
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int, height: int, genuine: bool = True) -> bytes:
    """An 8-bit grey PNG of zeros declaring `width` x `height`. `genuine`: the full zlib
    stream of every row (50000 x 50000: 2.5 GB of zeros in about 2.4 MB, a few seconds to
    make); otherwise only the first rows follow the header (instant, for refusals that must
    happen from the header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = bytes(width + 1)                 # filter byte + pixels
    rows_per_chunk = max(1, CHUNK // len(row))
    parts = []
    todo = height if genuine else min(height, 16)
    while todo > 0:
        n = min(rows_per_chunk, todo)
        parts.append(comp.compress(row * n))
        todo -= n
    parts.append(comp.flush())
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b""))


def npy_header(shape: tuple[int, ...], dtype=np.float32, data: bytes = b"") -> bytes:
    """A .npy header declaring `shape` x `dtype`, followed by `data` (none by default)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + data

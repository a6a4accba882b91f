"""Percentiles of pixel values without sorting them.

`np.percentile` partitions its input: about 3-5 ms per call on a 512² subsample, and the
display controls ask for three of them per channel on every workspace open. Integer images
with a modest value range (8- and 16-bit, the usual microscopy types) read the same order
statistics off a histogram of every value (`np.bincount`, one pass), then interpolate
between them as numpy's default ("linear") method does, so the answer is numpy's. Other
inputs (floats, a value range wider than `MAX_SPAN`) go to `np.percentile`."""
from __future__ import annotations

import numpy as np

MAX_SPAN = 1 << 20        # widest value range counted per value (an 8 MB histogram)


def percentiles(flat: np.ndarray, q) -> np.ndarray:
    """`np.percentile(flat, q)` for a 1-D array (q in percent, scalar or sequence)."""
    flat = np.asarray(flat).ravel()
    qs = np.asarray(q, dtype=np.float64)
    if (flat.size == 0 or flat.dtype.kind not in "iu" or qs.size == 0
            or not np.all((qs >= 0) & (qs <= 100))):
        return np.percentile(flat, q)         # numpy's answer, or numpy's error
    low, high = int(flat.min()), int(flat.max())
    if high - low >= MAX_SPAN or high >= 2 ** 62:
        return np.percentile(flat, q)
    shifted = flat if low == 0 and flat.dtype.kind == "u" else flat.astype(np.int64) - low
    cumulative = np.cumsum(np.bincount(shifted.astype(np.intp, copy=False)))
    at = (flat.size - 1) * (qs / 100.0)           # virtual index into the sorted values
    below = np.floor(at)
    a = np.searchsorted(cumulative, below, side="right").astype(np.float64) + low
    b = np.searchsorted(cumulative, np.minimum(below + 1, flat.size - 1),
                        side="right").astype(np.float64) + low
    t = at - below
    # numpy's _lerp: from the nearer end, so t = 1 gives b exactly
    out = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)
    return out if qs.ndim else out[()]

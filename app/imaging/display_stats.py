"""Per-channel numbers for the display controls: the contrast slider's range, the default
contrast limits and a histogram, all in the image's own units and from a subsample.

Like Fiji's Brightness & Contrast and napari's contrast limits, the slider spans the data,
not the pixel type: a 16-bit image whose values lie in 100..2,000 gets a slider over
about 100..2,000, not 0..65,535. A few saturated pixels do not stretch it: its top is at
most 1.5 times the distance from the minimum to the 99.9th percentile (typing a limit
beyond it widens it). Pure numpy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.imaging.quantiles import percentiles
from app.imaging.render import auto_limits

SAMPLE = 1 << 18          # values looked at per channel
BINS = 64


@dataclass(frozen=True)
class ChannelStats:
    range_min: float      # the slider's ends
    range_max: float
    auto_low: float       # default contrast limits (0.5 and 99.5 percentiles)
    auto_high: float
    integer: bool         # integer pixels: limits and the readout are whole numbers
    counts: list[int]     # histogram over [range_min, range_max]
    edges: list[float]    # len(counts) + 1 bin edges


def sample(values: np.ndarray, size: int = SAMPLE) -> np.ndarray:
    """An evenly strided subsample of the finite values (all of them when few)."""
    flat = np.asarray(values).ravel()
    if flat.size > size:
        flat = flat[:: flat.size // size]
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    return flat


def slider_range(flat: np.ndarray, integer: bool) -> tuple[float, float]:
    """From the data's minimum to the smaller of its maximum and 1.5 times the span up to
    the 99.9th percentile; whole numbers for integer images; never empty."""
    if flat.size == 0:
        return 0.0, 1.0
    low, top = float(flat.min()), float(flat.max())
    p999 = float(percentiles(flat, 99.9))
    high = min(top, p999 + 0.5 * (p999 - low))
    if integer:
        low, high = float(np.floor(low)), float(np.ceil(high))
    if high <= low:
        high = low + 1.0
    return low, high


def histogram(flat: np.ndarray, low: float, high: float, integer: bool,
              bins: int = BINS) -> tuple[list[int], list[float]]:
    """Counts over [low, high]; an integer image with fewer distinct values than `bins`
    gets one bin per value."""
    if integer and high - low + 1 <= bins:
        bins, span = int(high - low + 1), (low - 0.5, high + 0.5)     # a bin per value
    else:
        span = (low, high)
    if flat.dtype.kind == "f" and flat.dtype != np.float64:
        flat = flat.astype(np.float64)      # numpy makes the edges in the values' type
    # equal bins by count and range, not by their edges: numpy then bins in one pass
    # instead of sorting the values (the edges and counts are the same)
    counts, edges = np.histogram(flat, bins=bins, range=span)
    return [int(c) for c in counts], [float(e) for e in edges]


def channel_stats(channel: np.ndarray, plane: np.ndarray | None = None) -> ChannelStats:
    """Stats of one channel (any shape, e.g. Z x Y x X); the default limits come from
    `plane` (the plane on screen) when given, else from the whole channel."""
    integer = np.issubdtype(channel.dtype, np.integer)
    flat = sample(channel)
    low, high = slider_range(flat, integer)
    auto_low, auto_high = auto_limits(channel if plane is None else plane)
    if integer:
        auto_low, auto_high = float(np.floor(auto_low)), float(np.ceil(auto_high))
        auto_high = max(auto_high, auto_low + 1)
    counts, edges = histogram(flat, low, high, integer)
    return ChannelStats(low, high, auto_low, auto_high, integer, counts, edges)

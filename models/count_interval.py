"""A count interval calibrated on held-out clicks (split conformal prediction).

The MC-dropout interval of `models.counting` (5-95% of the sampled counts of the stochastic
output layer) is far too narrow: on the bone-marrow benchmark it held the true count of 2 of
12 test images. So a counting model is also calibrated on clicks it was not trained on (the
project's validation images, or held-out tiles): each held-out unit (a whole image, or a
tile of one, inside its annotated region) gives a relative error
e = (clicks - count) / max(count, 1); the interval of a new count c is
[c (1 + e_low), c (1 + e_high)] with e_low, e_high the conformal order statistics of those
errors for the level (two-sided: LEVEL = 0.9 leaves 5% out on each side). With n units the
k-th smallest error where k = ceil((n + 1)(1 - alpha/2)) gives the finite-sample guarantee
(for units exchangeable with the new one); with too few units (k > n) the largest is used and
the record says the level is nominal only.

Relative errors, because a counting model's error grows with the count (a stain or a focus
difference scales every cell's density alike). A unit is a tile of side `unit_side`, the
smallest side from UNIT_SIDES that still gives MIN_UNITS units with clicks; smaller tiles
have noisier relative errors, so the interval is wider (it errs on the safe side).

    meta = calibrate_interval(model, images, points, regions)   # {"low", "high", ...}
    model.meta["interval"] = meta
    low, high = calibrated_bounds(model.meta, count)              # None when uncalibrated
"""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.9
MIN_UNITS = 19                  # units wanted before the tiles get smaller (19: the fewest
                                # for which a 90% two-sided interval is exact)
UNIT_SIDES = (None, 512, 256)   # None: the whole image (its annotated region)
MIN_ANNOTATED = 0.5             # share of a tile that must be annotated to be a unit


def _units(shape: tuple[int, int], region: np.ndarray | None, side: int | None):
    """Boolean masks of the units of one image: its annotated region, or its tiles of
    `side` px (inside the region, each at least MIN_ANNOTATED annotated)."""
    full = np.ones(shape, bool) if region is None else np.asarray(region, bool)
    if side is None:
        if full.any():
            yield full
        return
    for y in range(0, shape[0], side):
        for x in range(0, shape[1], side):
            tile = np.zeros(shape, bool)
            tile[y:y + side, x:x + side] = True
            inside = tile & full
            if inside.sum() >= MIN_ANNOTATED * tile.sum():
                yield inside


def _clicks_in(points: np.ndarray, mask: np.ndarray) -> int:
    if not len(points):
        return 0
    yx = np.rint(np.asarray(points, float)).astype(int)
    yx[:, 0] = yx[:, 0].clip(0, mask.shape[0] - 1)
    yx[:, 1] = yx[:, 1].clip(0, mask.shape[1] - 1)
    return int(mask[yx[:, 0], yx[:, 1]].sum())


def _rank(n: int, q: float) -> int:
    """The 1-based conformal rank for quantile q of n scores (may exceed n)."""
    return math.ceil(round((n + 1) * q, 9))      # rounded: 0.95 is not exact in binary


def interval_from_errors(errors, level: float = LEVEL) -> dict:
    """e_low, e_high and what they rest on, from relative errors (clicks - count) / count."""
    e = np.sort(np.asarray(errors, float))
    n = int(e.size)
    if n == 0:
        raise ValueError("no held-out units to calibrate the interval on")
    tail = (1.0 - level) / 2
    k_high = _rank(n, 1 - tail)
    k_low = n + 1 - k_high                  # the mirror rank from the bottom
    exact = k_high <= n
    high = float(e[min(k_high, n) - 1])
    low = float(e[max(k_low, 1) - 1])
    return {"method": "split conformal, relative error (clicks - count) / count",
            "level": level, "low": round(min(low, 0.0), 4), "high": round(max(high, 0.0), 4),
            "units": n, "guaranteed": exact}


def calibrate_interval(model, images: list, points: list, regions: list | None = None,
                       level: float = LEVEL) -> dict | None:
    """The calibrated interval of `model` (a `models.counting.CountingModel`) from held-out
    images with their clicks ((N, 2) y, x) and annotated regions (None: whole image); None
    when they hold no click at all."""
    regions = regions if regions is not None else [None] * len(images)
    factor = model.count_factor
    found = None
    if getattr(model, "target", "density") == "centres":       # count = the peaks found
        results = [model.count(image, mc_samples=0, keep_density=True) for image in images]
        densities, found = [r.density for r in results], [r.points for r in results]
    else:
        densities = [model.density(image) for image in images]     # dropout off
    for side in UNIT_SIDES:
        errors = []
        for k, (density, pts, region) in enumerate(zip(densities, points, regions)):
            for mask in _units(density.shape, region, side):
                clicks = _clicks_in(np.asarray(pts).reshape(-1, 2), mask)
                count = float(_clicks_in(found[k], mask)) if found is not None else \
                    factor * float(density[mask].sum())
                if clicks or count >= 1:
                    errors.append((clicks - count) / max(count, 1.0))
        if len(errors) >= MIN_UNITS or side == UNIT_SIDES[-1]:
            break
    if not errors:
        return None
    return {**interval_from_errors(errors, level), "unit_side": side}


def calibrated_bounds(meta: dict, count: float) -> tuple[float, float] | None:
    """(low, high) for `count` under the model's calibrated interval, None without one."""
    cal = meta.get("interval")
    if not cal:
        return None
    return (max(0.0, count * (1 + float(cal["low"]))), max(0.0, count * (1 + float(cal["high"]))))

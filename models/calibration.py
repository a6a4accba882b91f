"""Post-processing calibration: choose the foreground threshold, the seed splitting and the
smallest cell size that turn a model's class probabilities into instances, by instance F1 on
annotated images.

A network's probabilities are not calibrated the same way from one training run to the
next (a run that predicts boundaries a little thick wants a higher foreground threshold),
whether touching cells need splitting depends on the data and on how well the network has
learnt boundaries, and the smallest real cell depends on the data. These numbers are
therefore chosen per model and stored with the model in `meta["postprocess"]`, so the web
app, the CLI, exported model cards and the Python API all use the same ones.

`models.training` chooses them on the validation images *and* the fully annotated training
images (validation first, up to a pixel budget). Training images are predicted a little
more confidently than unseen ones, but a validation split alone is too small: on DSB 2018
the 36 validation images preferred little seed splitting (h 3) while 120 other training
images, like the held-out test images, preferred h 0.5-1 by 2-3 F1 points.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.instances import finish, segment_variants
from models.metrics import score

FG_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
SPLITS = (0.0, 0.5, 1.0, 2.0, 3.0)
MIN_SIZES = (4, 8, 12, 20, 30, 50)
MIN_CELLS = 20               # fewer annotated cells than this: keep the defaults


def size_candidates(labels: list[np.ndarray], default: int) -> list[int]:
    """Smallest-cell sizes to try: the fixed grid below the 5th percentile of the annotated
    cells' areas (so typical cells are never removed), plus the configured default."""
    areas = []
    for lab in labels:
        counts = np.bincount(np.asarray(lab, np.int64).ravel())[1:]
        areas.append(counts[counts > 0])
    areas = np.concatenate(areas) if areas else np.zeros(0)
    limit = float(np.percentile(areas, 5)) if areas.size else float(default)
    return sorted({default, *(s for s in MIN_SIZES if s < limit)})


def calibrate(probabilities: Iterable[np.ndarray], labels: list[np.ndarray],
              default_min_size: int = 12, default_fg: float = 0.5,
              train_labels: list[np.ndarray] | None = None,
              max_pixels: int | None = None) -> dict:
    """The (fg_threshold, split, min_size) with the best mean instance F1@0.5 over the
    given annotated images; ties keep the values nearer the defaults (no split), and with
    fewer than MIN_CELLS cells the defaults are kept. `probabilities`: (3, Y, X) per image,
    any iterable (a generator computes them as they are needed); `labels`: their instance
    labels; `train_labels` (optional) widen the cell-size statistics. With `max_pixels`,
    images are taken in order while their pixels fit in it (at least one), which bounds the
    cost (about 60,000 pixels/s on a 2-core CPU) and keeps the choice reproducible.
    Returns {"fg_threshold", "split", "min_size", "f1", "default_f1", "n_images",
    "n_cells"}."""
    default = (default_fg, 0.0, default_min_size)
    sizes = size_candidates(list(labels) + list(train_labels or []), default_min_size)
    thresholds = sorted({default_fg, *FG_THRESHOLDS})
    grid = [(fg, split, size) for fg in thresholds for split in SPLITS for size in sizes]
    totals = dict.fromkeys(grid, 0.0)
    n_images = n_cells = pixels = 0
    probabilities = iter(probabilities)
    for lab in labels:
        pixels += np.asarray(lab).size
        if n_images and max_pixels is not None and pixels > max_pixels:
            break
        probs = next(probabilities)        # computed only for the images used
        for fg in thresholds:
            for split, seg in segment_variants(probs, fg, SPLITS).items():
                for size in sizes:
                    totals[(fg, split, size)] += score(lab, finish(seg, size)).f1
        n_images += 1
        n_cells += len(np.unique(lab)) - int((np.asarray(lab) == 0).any())
    if n_cells < MIN_CELLS:      # too little evidence to move away from the defaults
        return {"fg_threshold": default_fg, "split": 0.0, "min_size": default_min_size,
                "n_images": n_images, "n_cells": n_cells,
                "skipped": f"only {n_cells} annotated cells to choose on (needs {MIN_CELLS})"}
    results = {k: v / n_images for k, v in totals.items()}
    best = max(results, key=lambda k: (round(results[k], 6), -abs(k[0] - default_fg), -k[1],
                                       -abs(k[2] - default_min_size)))
    return {"fg_threshold": float(best[0]), "split": float(best[1]), "min_size": int(best[2]),
            "f1": round(results[best], 4), "default_f1": round(results[default], 4),
            "n_images": n_images, "n_cells": n_cells}

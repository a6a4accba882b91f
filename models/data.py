"""Training data: normalisation, 3-class targets from instance labels, patch sampling from
annotated regions, and augmentation. All numpy; shapes in docstrings.

Classes: 0 background, 1 cell interior, 2 cell boundary; IGNORE marks pixels outside the
annotated region (the loss skips them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

IGNORE = 255
DEFAULT_PERCENTILES = (1.0, 99.8)


def normalise(image: np.ndarray, low: float = DEFAULT_PERCENTILES[0],
              high: float = DEFAULT_PERCENTILES[1]) -> np.ndarray:
    """Per-channel percentile normalisation of a (C, Y, X) image to about 0..1 (float32).
    The same function serves training, inference and display."""
    image = np.asarray(image, np.float32)
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        flat = image[c].ravel()
        sample = flat[:: max(1, flat.size // (1 << 18))]
        lo, hi = np.percentile(sample, [low, high])
        out[c] = (image[c] - lo) / max(float(hi - lo), 1e-6)
    return out


def targets_from_labels(labels: np.ndarray, region: np.ndarray | None = None,
                        touch_width: int = 0) -> np.ndarray:
    """(Y, X) uint8 class map: interior 1, boundary 2 (inner boundary of each cell, so touching
    cells are separated), background 0, IGNORE outside `region` (bool, True = annotated).

    `touch_width` > 0 widens the boundary where cells touch: every cell pixel with another
    cell within that many pixels (a (2w+1)-square) becomes boundary, so the network learns a
    gap between touching nuclei that seeds can not bridge."""
    target = np.zeros(labels.shape, np.uint8)
    target[labels > 0] = 1
    target[find_boundaries(labels, mode="inner") & (labels > 0)] = 2
    if touch_width > 0:
        target[touching(labels, touch_width)] = 2
    if region is not None:
        target[~region.astype(bool)] = IGNORE
    return target


def touching(labels: np.ndarray, width: int) -> np.ndarray:
    """Cell pixels with a different cell within `width` pixels (square neighbourhood)."""
    size = 2 * width + 1
    labels = np.asarray(labels)
    high = ndimage.maximum_filter(labels, size=size)
    above = np.int64(labels.max(initial=0)) + 1       # stands for background in the minimum
    low = ndimage.minimum_filter(np.where(labels > 0, labels.astype(np.int64), above), size=size)
    return (labels > 0) & ((high > labels) | (low < labels))


def semantic_targets(mask: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Class map for semantic-only projects (e.g. EM membranes): the mask's values are the
    classes already."""
    target = mask.astype(np.uint8)
    if region is not None:
        target[~region.astype(bool)] = IGNORE
    return target


@dataclass
class Sample:
    image: np.ndarray      # (C, Y, X) float32, normalised
    target: np.ndarray     # (Y, X) uint8 classes or IGNORE


class PatchSampler:
    """Random patches from annotated pixels; `fg_fraction` of them centred on a cell.

    An image is drawn with probability proportional to (its annotated pixels) ** `power`:
    1 makes every annotated pixel equally likely (large images dominate), 0 every image
    (as a per-image metric counts them), 0.5 lies between."""

    def __init__(self, samples: list[Sample], patch: int, rng: np.random.Generator,
                 fg_fraction: float = 0.6, power: float = 1.0):
        self.samples, self.patch, self.rng, self.fg_fraction = samples, patch, rng, fg_fraction
        self.valid = [np.flatnonzero(s.target.ravel() != IGNORE) for s in samples]
        self.fg = [np.flatnonzero((s.target.ravel() == 1) | (s.target.ravel() == 2))
                   for s in samples]
        counts = np.array([len(v) for v in self.valid], np.float64)
        if counts.sum() == 0:
            raise ValueError("No annotated pixels to train on.")
        weights = np.where(counts > 0, counts ** power, 0.0)
        self.weights = weights / weights.sum()

    def _crop(self, sample: Sample, cy: int, cx: int) -> tuple[np.ndarray, np.ndarray]:
        p, half = self.patch, self.patch // 2
        c, h, w = sample.image.shape
        img = np.zeros((c, p, p), np.float32)
        tgt = np.full((p, p), IGNORE, np.uint8)
        y0, x0 = cy - half, cx - half
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(h, y0 + p), min(w, x0 + p)
        img[:, ys - y0:ye - y0, xs - x0:xe - x0] = sample.image[:, ys:ye, xs:xe]
        tgt[ys - y0:ye - y0, xs - x0:xe - x0] = sample.target[ys:ye, xs:xe]
        return img, tgt

    def batch(self, n: int, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, P, P) float32 images and (N, P, P) int64 targets."""
        images, targets = [], []
        for _ in range(n):
            k = int(self.rng.choice(len(self.samples), p=self.weights))
            pool = self.fg[k] if len(self.fg[k]) and self.rng.random() < self.fg_fraction \
                else self.valid[k]
            flat = int(pool[self.rng.integers(len(pool))])
            w = self.samples[k].target.shape[1]
            img, tgt = self._crop(self.samples[k], flat // w, flat % w)
            if augment:
                img, tgt = augment_pair(img, tgt, self.rng)
            images.append(img)
            targets.append(tgt)
        return np.stack(images), np.stack(targets).astype(np.int64)


def augment_pair(image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
    """Flips, 90-degree rotations, intensity scale/shift and gamma."""
    k = int(rng.integers(4))
    image, target = np.rot90(image, k, axes=(1, 2)), np.rot90(target, k)
    if rng.random() < 0.5:
        image, target = image[:, :, ::-1], target[:, ::-1]
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.5:
        gamma = rng.uniform(0.7, 1.4)
        image = np.sign(image) * np.abs(image) ** gamma
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(target)

"""Point annotations as training targets, and points back out of a predicted density.
All numpy; used by `models.counting`.

- `as_points`: (N, 2) float (y, x) pixel coordinates from any list-like of pairs.
- `density_map`: the regression target, one Gaussian of mass 1 per point (sigma in pixels),
  so the integral over a region is the number of cells in it. The image border reflects, so
  a cell clicked at the edge still adds exactly 1 to the whole image's integral.
- `centre_map`: the other target, a heat-map with a peak of height 1 at each point (the
  cells are then counted as its peaks, not as its integral).
- `find_peaks`: points as local maxima of a density above a threshold;
  `strongest_peaks`: the k highest of them.
- `augment_stack`: flips, 90-degree rotations and intensity jitter of an image patch together
  with its target planes (density, annotated-region mask).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max


def as_points(points) -> np.ndarray:
    """(N, 2) float64 (y, x); an empty input gives shape (0, 2)."""
    arr = np.asarray(points if points is not None else [], np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) (y, x) coordinates, got shape {arr.shape}")
    return arr


def peak_height(sigma: float) -> float:
    """The value at the centre of one isolated Gaussian of mass 1."""
    return 1.0 / (2.0 * np.pi * sigma * sigma)


def density_map(points, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """(Y, X) float32: a Gaussian of mass 1 (std `sigma` px) at each (y, x) point; points
    outside the image are dropped, the border reflects (the sum is the number of points)."""
    pts = as_points(points)
    h, w = shape
    impulses = np.zeros((h, w), np.float64)
    if len(pts):
        rc = np.floor(pts + 0.5).astype(np.int64)
        inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
        np.add.at(impulses, (rc[inside, 0], rc[inside, 1]), 1.0)
    if sigma <= 0:
        return impulses.astype(np.float32)
    return ndimage.gaussian_filter(impulses, sigma, mode="reflect", truncate=4.0
                                   ).astype(np.float32)


def centre_map(points, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """(Y, X) float32 centre heat-map: exp(-d^2 / 2 sigma^2), d the distance (px) to the
    nearest (y, x) point, so every cell is a peak of height 1 however close its neighbours
    (where a density's Gaussians add up); points outside the image are dropped; no point: 0."""
    pts = as_points(points)
    h, w = shape
    heat = np.zeros((h, w), np.float32)
    if not len(pts):
        return heat
    rc = np.floor(pts + 0.5).astype(np.int64)
    rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)]
    if not len(rc):
        return heat
    background = np.ones((h, w), bool)
    background[rc[:, 0], rc[:, 1]] = False
    d = ndimage.distance_transform_edt(background)
    return np.exp(-(d * d) / (2.0 * max(sigma, 1e-6) ** 2)).astype(np.float32)


def find_peaks(density: np.ndarray, threshold: float, min_distance: int,
               region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a (Y, X) density above `threshold` (absolute, in density units), at
    least `min_distance` px apart (ties: one kept). Returns (N, 2) int (y, x) and their
    values (N,). `region` (bool) keeps only the peaks inside it."""
    density = np.asarray(density, np.float32)
    coords = peak_local_max(density, min_distance=max(1, int(min_distance)),
                            threshold_abs=float(threshold), exclude_border=False)
    coords = coords.reshape(-1, 2)
    if region is not None and len(coords):
        coords = coords[np.asarray(region, bool)[coords[:, 0], coords[:, 1]]]
    return coords.astype(np.int64), density[coords[:, 0], coords[:, 1]]


def strongest_peaks(density: np.ndarray, k: int, floor: float, min_distance: int,
                    region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `k` highest local maxima of a (Y, X) density above `floor` (as `find_peaks`),
    highest first: points read out to agree with a count rather than with a fixed height."""
    coords, values = find_peaks(density, floor, min_distance, region)
    order = np.argsort(-values, kind="stable")[:max(0, int(k))]
    return coords[order], values[order]


def augment_stack(image: np.ndarray, planes: np.ndarray, rng: np.random.Generator,
                  colour: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(C, P, P) image and (K, P, P) target planes turned and flipped alike; the image's
    intensity scaled, shifted and gamma-corrected (the targets are not). `colour` > 0 also
    scales each channel by its own 1 +- colour and shifts it by +- colour / 2 (stain and
    scanner variation of a colour image; with 0 the random stream is as before)."""
    k = int(rng.integers(4))
    image, planes = np.rot90(image, k, axes=(1, 2)), np.rot90(planes, k, axes=(1, 2))
    if rng.random() < 0.5:
        image, planes = image[:, :, ::-1], planes[:, :, ::-1]
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    if colour > 0 and image.shape[0] > 1:
        c = image.shape[0]
        image = image * rng.uniform(1 - colour, 1 + colour, (c, 1, 1)) + \
            rng.uniform(-colour / 2, colour / 2, (c, 1, 1))
    if rng.random() < 0.5:
        image = np.sign(image) * np.abs(image) ** rng.uniform(0.7, 1.4)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(planes, np.float32)


def crop(array: np.ndarray, cy: int, cx: int, size: int, fill: float = 0.0) -> np.ndarray:
    """A (..., size, size) window of a (..., Y, X) array centred at (cy, cx), padded with
    `fill` where it leaves the array."""
    h, w = array.shape[-2:]
    out = np.full(array.shape[:-2] + (size, size), fill, array.dtype)
    y0, x0 = cy - size // 2, cx - size // 2
    ys, xs, ye, xe = max(0, y0), max(0, x0), min(h, y0 + size), min(w, x0 + size)
    if ye > ys and xe > xs:
        out[..., ys - y0:ye - y0, xs - x0:xe - x0] = array[..., ys:ye, xs:xe]
    return out

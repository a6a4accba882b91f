"""Classical baselines for the accuracy benchmark: Otsu + distance-transform watershed, and
scikit-image's trainable random-forest segmentation on multiscale features."""
from __future__ import annotations

from functools import partial

import numpy as np
from scipy import ndimage
from skimage.feature import multiscale_basic_features, peak_local_max
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

from models.data import normalise, targets_from_labels
from models.instances import instances_from_probs


def otsu_watershed(image: np.ndarray, min_distance: int = 4, min_size: int = 12) -> np.ndarray:
    img = normalise(image)[0]
    fg = img > threshold_otsu(img)
    fg = remove_small_objects(fg, max_size=min_size - 1)
    dist = ndimage.distance_transform_edt(fg)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=ndimage.label(fg)[0],
                           exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg)


features = partial(multiscale_basic_features, intensity=True, edges=True, texture=True,
                   sigma_min=1, sigma_max=16)


def train_random_forest(images, labels, pixels_per_image: int = 3000, seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for img, lab in zip(images, labels):
        f = features(normalise(img)[0])
        t = targets_from_labels(lab)
        idx = rng.choice(t.size, min(pixels_per_image, t.size), replace=False)
        xs.append(f.reshape(-1, f.shape[-1])[idx])
        ys.append(t.ravel()[idx])
    clf = RandomForestClassifier(n_estimators=60, max_depth=14, n_jobs=-1, random_state=seed)
    clf.fit(np.concatenate(xs), np.concatenate(ys))
    return clf


def random_forest_probs(clf, image: np.ndarray) -> np.ndarray:
    """(3, Y, X) class probabilities (background, interior, boundary)."""
    f = features(normalise(image)[0])
    probs = clf.predict_proba(f.reshape(-1, f.shape[-1])).T.reshape((3,) + f.shape[:2])
    return probs.astype(np.float32)


def random_forest_instances(clf, image: np.ndarray, **postprocess) -> np.ndarray:
    """Instances with the U-Net's post-processing (`postprocess`: min_size, fg_threshold,
    split as chosen by models.calibration)."""
    return instances_from_probs(random_forest_probs(clf, image), **postprocess)


def whole_image_segment(probs: np.ndarray, fg_threshold: float, split: float) -> np.ndarray:
    """CellLoop's post-processing before the size filter, done on the whole image at once
    with scikit-image's `h_maxima` and one watershed: the reference that the banded
    `models.instances.segment` is measured and tested against."""
    from skimage.morphology import h_maxima

    from models.instances import SEED_MIN_SIZE, _drop_small, _flood
    foreground = (probs[1] + probs[2]) > fg_threshold
    core = (probs.argmax(0) == 1) & foreground
    regions, n_regions = ndimage.label(foreground)
    if split > 0:
        dist = ndimage.distance_transform_edt(core)
        seeds, _ = ndimage.label(h_maxima(ndimage.gaussian_filter(dist, 1.0), split)
                                 .astype(bool) & core)
        elevation = -dist - 3.0 * probs[1]
    else:
        seeds = _drop_small(ndimage.label(core)[0], SEED_MIN_SIZE)
        elevation = -probs[1]
    return _flood(seeds, regions, n_regions, foreground, elevation)


def same_cut(a: np.ndarray, b: np.ndarray) -> bool:
    """The two label images cut the same cells, numbering aside."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return bool(((a == 0) == (b == 0)).all()) and pairs.shape[1] == len(np.unique(a)) == \
        len(np.unique(b))

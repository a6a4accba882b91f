"""The data rules of the built-in nuclei model: its four groups, its fixed split, and how an
image of any of the modalities labs image nuclei in becomes the network's one input channel.

Groups are defined from `dsb2018/index.json` and the labels:
- "fluorescence-small" / "fluorescence-large": fluorescence images whose median nucleus area
  is below / at least LARGE_NUCLEUS_AREA pixels (the areas are bimodal: a quarter of the
  images below 122 px, the large ones around 1,700-1,900 px, almost none in between);
- "histology": H&E colour images (`modality == "histology_color"`);
- "brightfield": brightfield images (nuclei darker than the background).
Split, fixed by rule: per group, ids sorted, the first 80% train, the rest test; every
benchmark of the built-in model scores on the test ids.

Input mapping (`to_network_input`), the same in training, prediction and fine-tuning:
1. one channel: used as is; several equal channels (grey stored as RGB): the first;
   colour (RGB, e.g. H&E): luminance 0.299 R + 0.587 G + 0.114 B;
2. a bright background (the median is nearer the 99th percentile than the 1st: brightfield,
   H&E) is inverted, so nuclei are always brighter than the background, as in fluorescence;
3. the model's own percentile normalisation follows (models.data.normalise).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GROUPS = ("fluorescence-small", "fluorescence-large", "histology", "brightfield")
LARGE_NUCLEUS_AREA = 500          # px: median nucleus area from which an image is "large"
TRAIN_FRACTION = 0.8
INPUT_MAPPING = "nuclei-v1"       # the name the model's meta records for this mapping


def median_nucleus_area(labels: np.ndarray) -> float:
    counts = np.bincount(np.asarray(labels).ravel())[1:]
    counts = counts[counts > 0]
    return float(np.median(counts)) if counts.size else 0.0


def group_of(entry: dict, labels: np.ndarray | None = None) -> str | None:
    """The group of one `index.json` entry (fluorescence needs its labels); None when the
    modality is not one of the four."""
    modality = entry.get("modality")
    if modality == "histology_color":
        return "histology"
    if modality == "brightfield":
        return "brightfield"
    if modality == "fluorescence":
        if labels is None:
            raise ValueError("fluorescence images are grouped by their nucleus size: "
                             "give the labels")
        large = median_nucleus_area(labels) >= LARGE_NUCLEUS_AREA
        return "fluorescence-large" if large else "fluorescence-small"
    return None


def read_labels(data_dir: Path, image_id: str) -> np.ndarray:
    import tifffile
    return tifffile.imread(Path(data_dir) / "labels" / f"{image_id}.tif")


def groups(data_dir: str | Path) -> dict[str, list[str]]:
    """{group: sorted ids} for the DSB 2018 folder `data_dir` (with index.json)."""
    data_dir = Path(data_dir)
    index_path = data_dir / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} not found: the built-in model is trained and "
                                "scored on ../shared/data/dsb2018")
    out: dict[str, list[str]] = {g: [] for g in GROUPS}
    for entry in json.loads(index_path.read_text()):
        labels = read_labels(data_dir, entry["id"]) if entry["modality"] == "fluorescence" \
            else None
        group = group_of(entry, labels)
        if group is not None:
            out[group].append(entry["id"])
    return {g: sorted(ids) for g, ids in out.items()}


def split(data_dir: str | Path) -> dict[str, tuple[list[str], list[str]]]:
    """{group: (train ids, test ids)}: per group, ids sorted, the first 80% train."""
    out = {}
    for group, ids in groups(data_dir).items():
        n_train = int(round(len(ids) * TRAIN_FRACTION))
        out[group] = (ids[:n_train], ids[n_train:])
    return out


def to_network_input(image: np.ndarray) -> np.ndarray:
    """A (C, Y, X) image of any modality as the (1, Y, X) float32 channel the built-in
    model reads (see the module docstring)."""
    img = as_channels(image).astype(np.float32, copy=False)
    grey = grey_of(img, same_channels(img))
    invert, lo, hi = bright_background(grey[::4, ::4])
    if invert:                                  # bright background: nuclei are dark
        grey = hi + lo - grey
    return grey[None].astype(np.float32)


def as_channels(image: np.ndarray) -> np.ndarray:
    """A (Y, X) or (C, Y, X) image as (C, Y, X) in its own dtype, an alpha channel dropped."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"expected a (C, Y, X) image, got shape {img.shape}")
    return img[:3] if img.shape[0] == 4 else img


def same_channels(img: np.ndarray) -> bool:
    """Whether a float32 (C, Y, X) image is one channel, or grey stored as several."""
    return img.shape[0] == 1 or bool(np.allclose(img[0], img[1:], atol=1e-3))


def grey_of(img: np.ndarray, same: bool) -> np.ndarray:
    """(Y, X) grey of a float32 (C, Y, X) image: the first channel when the channels are the
    same, the luminance of colour, else the channels' mean. Per pixel, so a strip of an
    image gives that strip of its grey."""
    if same:
        return img[0]
    if img.shape[0] >= 3:
        return 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    return img.mean(axis=0)


def bright_background(sample: np.ndarray) -> tuple[bool, float, float]:
    """Whether a grey image (given as a subsample of its pixels) has a bright background
    (its median nearer the 99th percentile than the 1st), and that 1st and 99th percentile;
    such an image is inverted as hi + lo - grey."""
    lo, mid, hi = np.percentile(sample, (1, 50, 99))
    return bool(hi > lo and (mid - lo) > (hi - mid)), lo, hi

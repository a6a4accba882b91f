"""The DSB 2018 fluorescence benchmark set from ../shared/data/dsb2018, with its fixed split:
ids sorted, the first 80% train, the last 20% test. Fails clearly when the data is missing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

from storage.readers import read_image

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dsb2018"


def require_data() -> Path:
    if not (DATA / "index.json").exists():
        raise SystemExit(f"DSB 2018 data not found at {DATA} (expected ../shared/data/dsb2018 "
                         "beside the checkout); this benchmark needs it.")
    return DATA


def fluorescence_split(train_fraction: float = 0.8) -> tuple[list[str], list[str]]:
    index = json.loads((require_data() / "index.json").read_text())
    ids = sorted(d["id"] for d in index if d["modality"] == "fluorescence")
    n_train = int(round(len(ids) * train_fraction))
    return ids[:n_train], ids[n_train:]


def load(ids: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images as (1, Y, X) arrays (grey stored as RGBA -> 1 channel) and uint16 labels."""
    images, labels = [], []
    for i in ids:
        pixels = read_image(DATA / "images" / f"{i}.png").pixels[0]
        if pixels.shape[0] != 1:          # a few "fluorescence" images are colour: use mean
            pixels = pixels.mean(axis=0, keepdims=True).astype(np.float32)
        images.append(pixels)
        labels.append(tifffile.imread(DATA / "labels" / f"{i}.tif").astype(np.uint16))
    return images, labels

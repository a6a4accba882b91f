"""The HDF5 dataset layout: a file of samples, each an image and one or more label images.

    /                    attrs: format="cellloop-samples", version=1, n_samples
    /samples/000000      group, attrs: name (str), n_labels (int)
        image            (Z, C, Y, X) in the image's dtype, gzip-compressed
        label_0 ...      (Y, X) uint16/uint32 instance labels (0 = background)

Reading also accepts files without the root attributes if they follow the group layout.
Shapes and sizes are checked before any dataset is read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import h5py
import numpy as np

from storage.readers import DEFAULT_MAX_PIXELS, ImageReadError, _check_dtype, _check_size

FORMAT = "cellloop-samples"


@dataclass
class Sample:
    name: str
    image: np.ndarray                        # (Z, C, Y, X)
    labels: list[np.ndarray] = field(default_factory=list)   # each (Y, X)


def write_samples(path: str | os.PathLike, samples: list[Sample]) -> None:
    """Write samples to `path` atomically (temp file, then rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = 1
            f.attrs["n_samples"] = len(samples)
            group = f.create_group("samples")
            for i, s in enumerate(samples):
                g = group.create_group(f"{i:06d}")
                g.attrs["name"] = s.name
                g.attrs["n_labels"] = len(s.labels)
                g.create_dataset("image", data=s.image, compression="gzip", compression_opts=4,
                                 chunks=True)
                for k, lab in enumerate(s.labels):
                    g.create_dataset(f"label_{k}", data=lab, compression="gzip",
                                     compression_opts=4, chunks=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_samples(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                 file_name: str | None = None) -> Iterator[Sample]:
    """Yield samples one at a time (memory stays flat in the number of samples)."""
    name = file_name or os.path.basename(str(path))
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ImageReadError(f"{name}: not a readable HDF5 file ({exc}).") from None
    with f:
        if "samples" not in f or not isinstance(f["samples"], h5py.Group):
            raise ImageReadError(f"{name}: no /samples group; see the HDF5 layout in the docs.")
        for key in sorted(f["samples"].keys()):
            g = f["samples"][key]
            label = f"{name}:/samples/{key}"
            if "image" not in g:
                raise ImageReadError(f"{label}: no 'image' dataset.")
            ds = g["image"]
            _check_dtype(label, ds.dtype)
            _check_size(label, ds.shape, max_pixels)
            image = ds[()]
            if image.ndim == 2:
                image = image[None, None]
            elif image.ndim == 3:
                image = image[:, None] if image.shape[0] > 8 else image[None]
            if image.ndim != 4:
                raise ImageReadError(f"{label}: image must have 2-4 dimensions.")
            n = int(g.attrs.get("n_labels", sum(k.startswith("label_") for k in g.keys())))
            labels = []
            for k in range(n):
                if f"label_{k}" not in g:
                    raise ImageReadError(f"{label}: n_labels={n} but label_{k} is missing.")
                lab = g[f"label_{k}"]
                if tuple(lab.shape) != tuple(image.shape[-2:]):
                    raise ImageReadError(f"{label}: label_{k} is {tuple(lab.shape)}, the image "
                                         f"is {tuple(image.shape[-2:])}.")
                arr = lab[()]
                if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
                    raise ImageReadError(f"{label}: label_{k} must hold non-negative integers.")
                labels.append(arr.astype(np.uint16 if arr.max(initial=0) <= 65535 else np.uint32))
            raw = g.attrs.get("name", key)
            yield Sample(raw.decode() if isinstance(raw, bytes) else str(raw), image, labels)

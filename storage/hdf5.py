"""The HDF5 dataset layout: a file of samples, each an image and one or more label images.

    /                    attrs: format="cellloop-samples", version=1, n_samples
    /samples/000000      group, attrs: name (str), n_labels (int)
        image            (Z, C, Y, X) in the image's dtype, gzip-compressed
        label_0 ...      (Y, X) uint16/uint32 instance labels (0 = background)

Reading also accepts files without the root attributes if they follow the group layout.
The whole file's layout, attributes, shapes and declared sizes are checked before any
dataset is read (`list_samples`); images with NaN or infinite values are refused.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import h5py
import numpy as np

from storage.readers import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageReadError, _check_dtype,
                             _check_size)
from storage.writers import atomic_path

FORMAT = "cellloop-samples"


@dataclass
class Sample:
    name: str
    image: np.ndarray                        # (Z, C, Y, X)
    labels: list[np.ndarray] = field(default_factory=list)   # each (Y, X)


def write_samples(path: str | os.PathLike, samples: list[Sample]) -> None:
    """Write samples to `path` atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
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


@dataclass(frozen=True)
class SampleInfo:
    """One sample as its headers describe it (nothing read yet)."""
    key: str                 # the group name under /samples
    name: str
    shape: tuple[int, ...]   # the image dataset's shape as stored (2-4 dimensions)
    n_labels: int


def _open(path, name: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{name}: not a readable HDF5 file ({exc}).") from None


def _n_labels(label: str, g: h5py.Group) -> int:
    """The n_labels attribute as an int (whole numbers, also written as text or float)."""
    if "n_labels" not in g.attrs:
        return sum(k.startswith("label_") for k in g.keys())
    raw = g.attrs["n_labels"]
    value = raw.item() if isinstance(raw, np.ndarray) and raw.size == 1 else raw
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    n = None
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        n = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        n = int(value)
    if n is None or not 0 <= n <= 1000:
        raise ImageReadError(f"{label}: the n_labels attribute must be a whole number from 0 "
                             f"to 1000, not {raw!r}.")
    return n


def _sample_name(key: str, g: h5py.Group) -> str:
    raw = g.attrs.get("name", key)
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.item()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    name = str(raw).strip()[:255]
    return name or key


def list_samples(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES, file_name: str | None = None
                 ) -> list[SampleInfo]:
    """Check the whole file's layout, attributes, shapes, dtypes and declared sizes, reading
    no pixel data; raise ImageReadError (naming the file and sample) at the first problem."""
    name = file_name or os.path.basename(str(path))
    with _open(path, name) as f:
        if "samples" not in f or not isinstance(f["samples"], h5py.Group):
            raise ImageReadError(f"{name}: no /samples group; see the HDF5 layout in the docs.")
        infos = []
        for key in sorted(f["samples"].keys()):
            g = f["samples"][key]
            label = f"{name}:/samples/{key}"
            if not isinstance(g, h5py.Group):
                raise ImageReadError(f"{label}: not a group; see the HDF5 layout in the docs.")
            ds = g.get("image")
            if not isinstance(ds, h5py.Dataset):
                raise ImageReadError(f"{label}: no 'image' dataset.")
            dtype = _check_dtype(label, ds.dtype)
            if not 2 <= len(ds.shape) <= 4:
                raise ImageReadError(f"{label}: image must have 2-4 dimensions, not "
                                     f"{len(ds.shape)}.")
            _check_size(label, ds.shape, max_pixels, dtype.itemsize, max_bytes)
            n = _n_labels(label, g)
            for k in range(n):
                lab = g.get(f"label_{k}")
                if not isinstance(lab, h5py.Dataset):
                    raise ImageReadError(f"{label}: n_labels={n} but label_{k} is missing.")
                if tuple(lab.shape) != tuple(ds.shape[-2:]):
                    raise ImageReadError(f"{label}: label_{k} is {tuple(lab.shape)}, the image "
                                         f"is {tuple(ds.shape[-2:])}.")
                if lab.dtype.kind not in "iub":
                    raise ImageReadError(f"{label}: label_{k} must hold non-negative integers, "
                                         f"not {lab.dtype}.")
            infos.append(SampleInfo(key, _sample_name(key, g), tuple(ds.shape), n))
        return infos


def load_image(path: str | os.PathLike, info: SampleInfo, file_name: str | None = None
               ) -> np.ndarray:
    """The (Z, C, Y, X) image of a listed sample; refuses NaN/inf values."""
    from storage.readers import _finish

    label = f"{file_name or os.path.basename(str(path))}:/samples/{info.key}"
    try:
        with _open(path, label) as f:
            image = f["samples"][info.key]["image"][()]
    except ImageReadError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ImageReadError(f"{label}: cannot read the image ({exc}).") from None
    if image.ndim == 2:
        image = image[None, None]
    elif image.ndim == 3:
        image = image[:, None] if image.shape[0] > 8 else image[None]
    return _finish(label, image, "ZCYX").pixels


def load_labels(path: str | os.PathLike, info: SampleInfo, k: int = 0,
                file_name: str | None = None) -> np.ndarray:
    """Label image `k` of a listed sample as uint16/uint32."""
    label = f"{file_name or os.path.basename(str(path))}:/samples/{info.key}/label_{k}"
    try:
        with _open(path, label) as f:
            arr = f["samples"][info.key][f"label_{k}"][()]
    except ImageReadError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ImageReadError(f"{label}: cannot read the labels ({exc}).") from None
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise ImageReadError(f"{label}: labels must hold non-negative integers.")
    if arr.size and arr.min() < 0:
        raise ImageReadError(f"{label}: labels must hold non-negative integers.")
    top = int(arr.max(initial=0))
    if top > np.iinfo(np.uint32).max:
        raise ImageReadError(f"{label}: label values above 2^32 are not supported.")
    return arr.astype(np.uint16 if top <= 65535 else np.uint32)


def read_samples(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                 file_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
                 ) -> Iterator[Sample]:
    """Yield samples one at a time (memory stays flat in the number of samples), after the
    whole file's layout has been checked (`list_samples`)."""
    for info in list_samples(path, max_pixels, max_bytes, file_name):
        yield Sample(info.name, load_image(path, info, file_name),
                     [load_labels(path, info, k, file_name) for k in range(info.n_labels)])

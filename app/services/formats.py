"""Which files CellLoop takes in, and how a label image finds its image: one place for the
accepted suffixes (the upload zone, the refusal messages) and the file-stem rules shared by
the CLI's --masks, zips with a labels/ folder and the browser's mask upload.

A label image belongs to the image with the same stem: for `cell_01.tif` the label image
`cell_01`, `cell_01_masks`, `cell_01_mask`, `cell_01_labels`, `cell_01_label` or
`cell_01_cp_masks` (any accepted image suffix)."""
from __future__ import annotations

import posixpath
import re

# Pixels: readable one file at a time. Containers: hold many images (a zip of any of the
# image types, with masks in a labels/ or masks/ folder; HDF5 sample files).
IMAGE_FILE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".png", ".jpg", ".jpeg",
                       ".npy")
CONTAINER_SUFFIXES = (".h5", ".hdf5", ".zip")
ACCEPTED_SUFFIXES = IMAGE_FILE_SUFFIXES + CONTAINER_SUFFIXES
MASK_UPLOAD_SUFFIXES = IMAGE_FILE_SUFFIXES + (".zip",)    # label images, or zips of them
MASK_SUFFIXES = ("", "_masks", "_mask", "_labels", "_label", "_cp_masks")
MASK_FOLDERS = ("masks", "labels", "mask", "label")
STEM_RE = re.compile(r"(\.ome)?\.[^.]+$", re.I)


def accepted_text(suffixes: tuple[str, ...] = ACCEPTED_SUFFIXES) -> str:
    """"a, b or c": every accepted suffix, for messages and the upload zones."""
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1]


def unsupported(name: str, suffixes: tuple[str, ...] = ACCEPTED_SUFFIXES) -> str:
    """The refusal of a file whose type CellLoop does not read."""
    return f"{name}: not a supported image type; CellLoop takes {accepted_text(suffixes)}."


def is_accepted(name: str, suffixes: tuple[str, ...] = ACCEPTED_SUFFIXES) -> bool:
    lower = posixpath.basename(name).lower()
    return lower.endswith(suffixes) and not lower.startswith(".")


def is_image_file(name: str) -> bool:
    """A single image (not a container), by its suffix."""
    lower = posixpath.basename(name).lower()
    return lower.endswith(IMAGE_FILE_SUFFIXES) and not lower.startswith(".")


def stem(name: str) -> str:
    """`plate/a.ome.tif` -> `a`."""
    return STEM_RE.sub("", posixpath.basename(name))


def mask_suffix(name: str) -> str:
    """The mask suffix the file's stem ends with ("_masks", ...), or "" when it has none."""
    s = stem(name)
    return next((x for x in sorted(MASK_SUFFIXES, key=len, reverse=True)
                 if x and s.endswith(x) and len(s) > len(x)), "")


def image_stem_of_mask(name: str) -> str:
    """The stem of the image a label image belongs to: `a_masks.tif` -> `a`, `a.tif` -> `a`."""
    s, suffix = stem(name), mask_suffix(name)
    return s[: -len(suffix)] if suffix else s

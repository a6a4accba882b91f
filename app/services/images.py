"""Importing images (and optional ground-truth label images) into a project.

Each file is validated before anything is stored (sizes from its header before it is
decoded: MAX_IMAGE_PIXELS, MAX_IMAGE_BYTES); a bad file gets a result that names it and
says why, and the rest of the batch still imports. Pixels are stored once (content
addressed) and a file already in the project is reported as a duplicate.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.permissions import Actor, require
from app.tables import Annotation, Image, Project
from storage.blobstore import BlobStore, array_sha256, put_array, sha256_bytes
from storage.readers import (DEFAULT_MAX_BYTES, ImageData, ImageReadError, read_image_bytes,
                             read_labels_bytes)
from storage.render import downsample, downsample_factor

PREVIEW_SIDE = 2048  # images larger than this also get a downsampled preview blob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    name: str
    status: str           # imported / duplicate / rejected
    message: str = ""
    image_id: int | None = None
    n_cells: int | None = None


@dataclass(frozen=True)
class ImportFile:
    """One image to import. Either `read` gives the file's bytes, or `load` gives an already
    decoded image (HDF5 samples). Ground truth comes as label-file bytes (`read_labels`) or as
    an array (`load_labels`); `points` are counting-mode cell centres."""
    name: str
    read: Callable[[], bytes] | None = None
    read_labels: Callable[[], bytes] | None = None
    labels_name: str = ""
    load: Callable[[], ImageData] | None = None
    load_labels: Callable[[], np.ndarray] | None = None
    points: tuple = ()


def count_labels(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels (instances) in a label image."""
    return int(np.count_nonzero(np.bincount(labels.ravel())[1:])) if labels.size else 0


def _labels_for(item: ImportFile, img: ImageData, max_pixels: int,
                max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray | None:
    if item.read_labels is None and item.load_labels is None:
        return None
    if img.pixels.shape[0] != 1:
        raise ImageReadError(f"{item.labels_name or item.name}: label images for z-stacks are "
                             "not supported yet.")
    shape = img.pixels.shape[2:]
    if item.read_labels is not None:
        return read_labels_bytes(item.labels_name or item.name, item.read_labels(), shape,
                                 max_pixels, max_bytes)
    labels = np.asarray(item.load_labels())
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ImageReadError(f"{item.labels_name or item.name}: labels must be non-negative "
                             "integers.")
    labels = labels.astype(np.uint16 if labels.max(initial=0) <= 65535 else np.uint32)
    if tuple(labels.shape) != tuple(shape):
        raise ImageReadError(f"{item.labels_name or item.name}: the labels are "
                             f"{labels.shape[0]}x{labels.shape[1]} but the image is "
                             f"{shape[0]}x{shape[1]}.")
    return labels


def _preview(store: BlobStore, zcyx: np.ndarray) -> str | None:
    """A downsampled copy for displaying large images quickly (a two-level pyramid)."""
    factor = downsample_factor(zcyx.shape[2:], PREVIEW_SIDE)
    if factor <= 1:
        return None
    small = downsample(zcyx, factor)
    if np.issubdtype(zcyx.dtype, np.integer):
        small = np.round(small).astype(zcyx.dtype)
    return put_array(store, small)


def _fit_channels(project: Project, n_channels: int, names: list[str], name: str,
                  has_images: bool) -> None:
    if len(project.channels) == n_channels:
        return
    if has_images:
        raise ImageReadError(
            f"{name}: has {n_channels} channel(s) but the project's images have "
            f"{len(project.channels)} ({', '.join(c['name'] for c in project.channels)}).")
    # The first image decides the channel layout of an empty project.
    palette = ["#ffffff", "#00ff00", "#ff00ff", "#00ffff", "#ffff00", "#ff0000", "#0000ff"]
    if n_channels == 3 and names == ["red", "green", "blue"]:
        palette = ["#ff0000", "#00ff00", "#0000ff"]
    project.channels = [{"name": names[i] if i < len(names) else f"channel {i + 1}",
                         "color": palette[i % len(palette)]} for i in range(n_channels)]


def _named(name: str, exc: Exception) -> str:
    """The error's message, starting with the file's name."""
    message = str(exc)
    return message if message.startswith(name) else f"{name}: {message}"


def import_one(session: Session, actor: Actor, store: BlobStore, project: Project,
               item: ImportFile, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES
               ) -> ImportResult:
    """Import one file into `project` (permission already checked by the caller).

    Nothing is stored unless the image and its labels are both valid; the caller commits
    or rolls back."""
    try:
        data = item.read() if item.read is not None else None
    except OSError as exc:
        return ImportResult(item.name, "rejected", f"{item.name}: cannot read ({exc}).")
    except ValueError as exc:  # e.g. a zip entry that inflates beyond its declared size
        return ImportResult(item.name, "rejected", _named(item.name, exc))
    try:
        img = item.load() if data is None else None
        sha = sha256_bytes(data) if data is not None else array_sha256(img.pixels)
        existing = session.scalar(select(Image.id).where(Image.project_id == project.id,
                                                         Image.sha256 == sha,
                                                         Image.deleted_at.is_(None)))
        if existing is not None:
            return ImportResult(item.name, "duplicate", "already in the project", existing)
        if img is None:
            img = read_image_bytes(item.name, data, max_pixels, max_bytes)
        labels = _labels_for(item, img, max_pixels, max_bytes)
        has_images = session.scalar(select(Image.id).where(
            Image.project_id == project.id).limit(1)) is not None
        _fit_channels(project, img.pixels.shape[1], img.channel_names, item.name, has_images)
    except ImageReadError as exc:
        return ImportResult(item.name, "rejected", str(exc))
    except OSError as exc:
        return ImportResult(item.name, "rejected", f"{item.labels_name}: cannot read ({exc}).")
    except ValueError as exc:  # a source's loader refusing its data (e.g. a damaged zip mask)
        log.warning("import of %s refused: %s", item.name, exc, exc_info=True)
        return ImportResult(item.name, "rejected", _named(item.labels_name or item.name, exc))
    image = Image(project_id=project.id, name=item.name, blob_key=put_array(store, img.pixels),
                  sha256=sha, shape=list(img.pixels.shape), dtype=str(img.pixels.dtype),
                  axes="ZCYX", channel_names=[c["name"] for c in project.channels],
                  status="new", uploaded_by_id=actor.id,
                  preview_blob_key=_preview(store, img.pixels))
    session.add(image)
    session.flush()
    n_cells = None
    if labels is not None or item.points:
        n_cells = count_labels(labels) if labels is not None else len(item.points)
        session.add(Annotation(
            image_id=image.id, version=1, author_id=actor.id, n_cells=n_cells,
            label_blob_key=put_array(store, labels) if labels is not None else None,
            points=list(item.points), source="imported", review_state="accepted"))
        image.status = "annotated"
    return ImportResult(item.name, "imported", "", image.id, n_cells)


def import_files(session: Session, actor: Actor, store: BlobStore, project_id: int,
                 items: Iterable[ImportFile | str], max_pixels: int,
                 progress: Callable[[int, ImportResult], None] | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> list[ImportResult]:
    """Import many files, committing after each one.

    A file is all-or-nothing; a bad file does not stop the batch; files imported before a
    crash or a cancel stay imported. A string item is a refused input (from a source): it
    becomes a "rejected" result. `progress(i, result)` runs after each commit, so it may
    write to the database itself (SQLite allows one writer at a time)."""
    project = require(session, actor, project_id, "import")
    results = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            results.append(ImportResult(item.split(":", 1)[0], "rejected", item))
            if progress is not None:
                progress(i, results[-1])
            continue
        try:
            result = import_one(session, actor, store, project, item, max_pixels, max_bytes)
        except Exception:
            session.rollback()
            raise
        if result.status == "imported":
            session.commit()
        else:
            session.rollback()
        results.append(result)
        if progress is not None:
            progress(i, result)
    n = sum(r.status == "imported" for r in results)
    log.info("%s imported %d of %d files into project %s", actor.username, n, len(results),
             project_id)
    return results

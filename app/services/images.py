"""Importing images (and optional ground-truth label images) into a project.

Each file is validated before anything is stored; a bad file gets a result that names it
and says why, and the rest of the batch still imports. Pixels are stored once (content
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
from storage.blobstore import BlobStore, put_array, sha256_bytes
from storage.readers import ImageReadError, read_image_bytes, read_labels_bytes

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
    """One file to import: its name, a way to get its bytes, and optional label bytes."""
    name: str
    read: Callable[[], bytes]
    read_labels: Callable[[], bytes] | None = None
    labels_name: str = ""


def count_labels(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels (instances) in a label image."""
    return int(np.count_nonzero(np.bincount(labels.ravel())[1:])) if labels.size else 0


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


def import_one(session: Session, actor: Actor, store: BlobStore, project: Project,
               item: ImportFile, max_pixels: int) -> ImportResult:
    """Import one file into `project` (permission already checked by the caller)."""
    try:
        data = item.read()
    except OSError as exc:
        return ImportResult(item.name, "rejected", f"{item.name}: cannot read ({exc}).")
    sha = sha256_bytes(data)
    existing = session.scalar(select(Image.id).where(Image.project_id == project.id,
                                                     Image.sha256 == sha))
    if existing is not None:
        return ImportResult(item.name, "duplicate", "already in the project", existing)
    try:
        img = read_image_bytes(item.name, data, max_pixels)
        labels = None
        if item.read_labels is not None:
            if img.pixels.shape[0] != 1:
                raise ImageReadError(f"{item.labels_name}: label images for z-stacks are not "
                                     "supported yet.")
            labels = read_labels_bytes(item.labels_name or item.name, item.read_labels(),
                                       img.pixels.shape[2:], max_pixels)
        has_images = session.scalar(select(Image.id).where(
            Image.project_id == project.id).limit(1)) is not None
        _fit_channels(project, img.pixels.shape[1], img.channel_names, item.name, has_images)
    except ImageReadError as exc:
        return ImportResult(item.name, "rejected", str(exc))
    except OSError as exc:
        return ImportResult(item.name, "rejected", f"{item.labels_name}: cannot read ({exc}).")
    image = Image(project_id=project.id, name=item.name, blob_key=put_array(store, img.pixels),
                  sha256=sha, shape=list(img.pixels.shape), dtype=str(img.pixels.dtype),
                  axes="ZCYX", channel_names=[c["name"] for c in project.channels],
                  status="new", uploaded_by_id=actor.id)
    session.add(image)
    session.flush()
    n_cells = None
    if labels is not None:
        n_cells = count_labels(labels)
        session.add(Annotation(image_id=image.id, version=1, author_id=actor.id,
                               label_blob_key=put_array(store, labels), n_cells=n_cells,
                               source="imported", review_state="accepted"))
        image.status = "annotated"
    return ImportResult(item.name, "imported", "", image.id, n_cells)


def import_files(session: Session, actor: Actor, store: BlobStore, project_id: int,
                 items: Iterable[ImportFile], max_pixels: int,
                 progress: Callable[[int, ImportResult], None] | None = None
                 ) -> list[ImportResult]:
    """Import many files, committing after each one.

    A file is all-or-nothing; a bad file does not stop the batch; files imported before a
    crash or a cancel stay imported. `progress(i, result)` runs after each commit, so it may
    write to the database itself (SQLite allows one writer at a time)."""
    project = require(session, actor, project_id, "import")
    results = []
    for i, item in enumerate(items, 1):
        try:
            result = import_one(session, actor, store, project, item, max_pixels)
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

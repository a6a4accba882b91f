"""Importing images (and optional ground-truth label images) into a project.

Each file is validated before anything is stored (sizes from its header before it is
decoded: MAX_IMAGE_PIXELS, MAX_IMAGE_BYTES); a bad file gets a result that names it and
says why, and the rest of the batch still imports. Pixels are stored once (content
addressed) and a file already in the project is reported as a duplicate.

A file whose pixels belong to an image deleted from the project (deletion is soft) brings
that image back with its annotation history when an owner uploads it (`restored`); for
anyone else, and for callers that ask not to restore (the demo), it is a duplicate "of a
deleted image", named with the date it was deleted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.permissions import Actor, Role, require, role_of
from app.services.formats import is_image_file, unsupported
from app.services import queries
from app.states import ImageStatus, ReviewState
from app.tables import Annotation, Image, Project, Score
from storage.blobstore import BlobStore, array_sha256, put_array, sha256_bytes
from storage.points import PointsError, RawPoint, from_labelstudio, read_points_csv, resolve
from storage.readers import (DEFAULT_MAX_BYTES, ImageData, ImageReadError, read_image_bytes,
                             read_labels_bytes)
from app.imaging.render import downsample, downsample_factor
from app.imaging.shapes import label_values

PREVIEW_SIDE = 2048  # images larger than this also get a downsampled preview blob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    name: str
    status: str           # imported / duplicate / rejected
    message: str = ""
    image_id: int | None = None
    n_cells: int | None = None
    restored: bool = False    # "imported": a deleted image brought back, history and all

    @property
    def new_unannotated(self) -> bool:
        """A new image without labels (what the queue ranks and the model predicts ahead)."""
        return self.status == "imported" and self.n_cells is None and not self.restored


@dataclass(frozen=True)
class ImportFile:
    """One image to import. Either `read` gives the file's bytes, or `load` gives an already
    decoded image (HDF5 samples). Ground truth comes as label-file bytes (`read_labels`) or as
    an array (`load_labels`); counting-mode cell centres come as a points file
    (`read_points`: CSV, see storage.points) or as parsed points (`points`: Label Studio's
    {"x", "y", "label"} dicts or storage.points.RawPoint)."""
    name: str
    read: Callable[[], bytes] | None = None
    read_labels: Callable[[], bytes] | None = None
    labels_name: str = ""
    load: Callable[[], ImageData] | None = None
    load_labels: Callable[[], np.ndarray] | None = None
    points: tuple = ()
    read_points: Callable[[], bytes] | None = None
    points_name: str = ""


def count_labels(labels: np.ndarray) -> int:
    """Number of distinct labels above 0 (instances) in a label image."""
    return int(np.count_nonzero(label_values(labels) > 0))


def _labels_for(item: ImportFile, zcyx_shape: tuple, max_pixels: int,
                max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray | None:
    """The item's label image, checked against an image of shape (Z, C, Y, X)."""
    if item.read_labels is None and item.load_labels is None:
        return None
    if zcyx_shape[0] != 1:
        raise ImageReadError(f"{item.labels_name or item.name}: label images for z-stacks are "
                             "not supported yet.")
    shape = tuple(zcyx_shape[2:])
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


def _points_for(item: ImportFile, project: Project, zcyx_shape: tuple) -> list[list]:
    """The item's points as `[[x, y, cls], ...]`, checked against the image's size and the
    project's classes (PointsError names the file and the point)."""
    if item.read_points is not None:
        raw = read_points_csv(item.read_points(), item.points_name)
    else:
        raw = [p if isinstance(p, RawPoint) else from_labelstudio([p])[0] if isinstance(p, dict)
               else RawPoint(*p) for p in item.points]
    if not raw:
        return []
    return resolve(raw, int(zcyx_shape[-1]), int(zcyx_shape[-2]),
                   [c["name"] for c in project.classes or []],
                   item.points_name or item.labels_name or item.name)


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


def add_imported_annotation(session: Session, actor: Actor, store: BlobStore, image: Image,
                            labels: np.ndarray | None, points=()) -> Annotation:
    """Append an "imported" version (accepted ground truth) to the image's history; an
    excluded image stays excluded. The caller commits."""
    latest = queries.newest_annotation(session, image.id)
    version = queries.next_version(session, image.id)
    ann = Annotation(
        image_id=image.id, version=version, parent_id=latest.id if latest else None,
        author_id=actor.id,
        n_cells=count_labels(labels) if labels is not None else len(points),
        label_blob_key=put_array(store, labels) if labels is not None else None,
        points=list(points), source="imported", review_state=ReviewState.accepted)
    session.add(ann)
    if image.status != ImageStatus.excluded:
        image.status = ImageStatus.annotated
    # a whole annotation: no region of the image is queued any more (region_queue.forget;
    # written here, since region_queue builds on the drafts, which build on this module)
    session.execute(delete(Score).where(Score.image_id == image.id, Score.region.is_not(None)))
    session.flush()
    return ann


def _deleted_duplicate(session: Session, actor: Actor, store: BlobStore, image: Image,
                       item: ImportFile, restore: bool, max_pixels: int, max_bytes: int
                       ) -> ImportResult:
    """The upload of a deleted image's pixels: restore it, or say it was deleted."""
    when = f"{image.deleted_at:%Y-%m-%d %H:%M} UTC"
    if not restore:
        return ImportResult(item.name, "duplicate",
                            f"a duplicate of the deleted image {image.name!r} (deleted on "
                            f"{when}); ask a project owner to restore it: an owner's upload "
                            "of the same file brings it back with its annotations.", image.id)
    versions = session.scalar(select(func.count(Annotation.id)).where(
        Annotation.image_id == image.id)) or 0
    labels, points = None, []
    if not versions:
        try:
            if item.read_labels is not None or item.load_labels is not None:
                labels = _labels_for(item, tuple(image.shape), max_pixels, max_bytes)
            project = session.get(Project, image.project_id)
            points = _points_for(item, project, tuple(image.shape))
        except (ImageReadError, OSError, ValueError) as exc:
            return ImportResult(item.name, "rejected", _named(
                item.labels_name or item.points_name or item.name, exc))
    image.deleted_at = None
    n_cells = None
    if labels is not None or points:
        n_cells = add_imported_annotation(session, actor, store, image, labels, points).n_cells
    history = (f"with its annotation history ({versions} version{'s' * (versions != 1)})"
               if versions else "with the labels uploaded now" if labels is not None or points
               else "(it had no annotations)")
    log.info("%s restored deleted image %s (%s)", actor.username, image.id, image.name)
    return ImportResult(item.name, "imported",
                        f"restored: the image {image.name!r}, deleted on {when}, is back "
                        f"{history}.", image.id, n_cells, restored=True)


def import_one(session: Session, actor: Actor, store: BlobStore, project: Project,
               item: ImportFile, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES,
               restore: bool = False) -> ImportResult:
    """Import one file into `project` (permission already checked by the caller).

    Nothing is stored unless the image and its labels are both valid; the caller commits
    or rolls back. `restore`: bring back a deleted image with the same pixels."""
    if item.load is None and not is_image_file(item.name):
        return ImportResult(item.name, "rejected", unsupported(item.name))
    try:
        data = item.read() if item.read is not None else None
    except OSError as exc:
        return ImportResult(item.name, "rejected", f"{item.name}: cannot read ({exc}).")
    except ValueError as exc:  # e.g. a zip entry that inflates beyond its declared size
        return ImportResult(item.name, "rejected", _named(item.name, exc))
    try:
        img = item.load() if data is None else None
        sha = sha256_bytes(data) if data is not None else array_sha256(img.pixels)
        # (project, sha256) is unique: a deleted image still holds its pixels' hash
        same = session.scalar(select(Image).where(Image.project_id == project.id,
                                                  Image.sha256 == sha))
        if same is not None and same.deleted_at is None:
            return ImportResult(item.name, "duplicate",
                                f"already in the project as {same.name!r}", same.id)
        if same is not None:
            return _deleted_duplicate(session, actor, store, same, item, restore, max_pixels,
                                      max_bytes)
        if img is None:
            img = read_image_bytes(item.name, data, max_pixels, max_bytes)
        labels = _labels_for(item, img.pixels.shape, max_pixels, max_bytes)
        points = _points_for(item, project, img.pixels.shape)
        has_images = session.scalar(select(Image.id).where(
            Image.project_id == project.id).limit(1)) is not None
        _fit_channels(project, img.pixels.shape[1], img.channel_names, item.name, has_images)
    except (ImageReadError, PointsError) as exc:
        return ImportResult(item.name, "rejected", str(exc))
    except OSError as exc:
        return ImportResult(item.name, "rejected", f"{item.labels_name or item.points_name}: "
                                                   f"cannot read ({exc}).")
    except ValueError as exc:  # a source's loader refusing its data (e.g. a damaged zip mask)
        log.warning("import of %s refused: %s", item.name, exc, exc_info=True)
        return ImportResult(item.name, "rejected", _named(item.labels_name or item.name, exc))
    image = Image(project_id=project.id, name=item.name, blob_key=put_array(store, img.pixels),
                  sha256=sha, shape=list(img.pixels.shape), dtype=str(img.pixels.dtype),
                  axes="ZCYX", channel_names=[c["name"] for c in project.channels],
                  status=ImageStatus.new, uploaded_by_id=actor.id,
                  preview_blob_key=_preview(store, img.pixels))
    session.add(image)
    session.flush()
    n_cells = None
    if labels is not None or points:
        n_cells = add_imported_annotation(session, actor, store, image, labels,
                                          points).n_cells
    return ImportResult(item.name, "imported", "", image.id, n_cells)


def commit_each(session: Session, items: Iterable[ImportFile | str],
                work: Callable[[ImportFile], ImportResult], kept: str,
                progress: Callable[[int, ImportResult], None] | None = None
                ) -> list[ImportResult]:
    """`work(item)` for each item in its own transaction: committed when the result's status
    is `kept`, rolled back otherwise (and on an error, which stops the batch). A string item
    is an input refused earlier (by a source) and becomes a "rejected" result.
    `progress(i, result)` runs after each commit."""
    results = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            result = ImportResult(item.split(":", 1)[0], "rejected", item)
        else:
            try:
                result = work(item)
            except Exception:
                session.rollback()
                raise
            if result.status == kept:
                session.commit()
            else:
                session.rollback()
        results.append(result)
        if progress is not None:
            progress(i, result)
    return results


def import_files(session: Session, actor: Actor, store: BlobStore, project_id: int,
                 items: Iterable[ImportFile | str], max_pixels: int,
                 progress: Callable[[int, ImportResult], None] | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, restore_deleted: bool = True
                 ) -> list[ImportResult]:
    """Import many files, committing after each one.

    `restore_deleted`: a file whose pixels belong to a deleted image restores it when the
    actor is an owner of the project (or a site admin); otherwise it is reported as a
    duplicate of that deleted image.

    A file is all-or-nothing; a bad file does not stop the batch; files imported before a
    crash or a cancel stay imported. A string item is a refused input (from a source): it
    becomes a "rejected" result. `progress(i, result)` runs after each commit, so it may
    write to the database itself (SQLite allows one writer at a time)."""
    project = require(session, actor, project_id, "import")
    restore = restore_deleted and role_of(session, actor, project_id) >= Role.owner

    def one(item: ImportFile) -> ImportResult:
        try:
            return import_one(session, actor, store, project, item, max_pixels, max_bytes,
                              restore)
        except IntegrityError:   # the same pixels stored by another upload meanwhile
            session.rollback()
            return ImportResult(item.name, "duplicate", "uploaded at the same moment by "
                                "another import; it is in the project once.")

    results = commit_each(session, items, one, "imported", progress)
    n = sum(r.status == "imported" for r in results)
    log.info("%s imported %d of %d files into project %s", actor.username, n, len(results),
             project_id)
    return results

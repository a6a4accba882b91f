"""Attaching label images (masks) to images already in a project, matched by file stem as
the CLI's --masks matches them (`app.services.formats`): `cell_01_masks.tif` goes with the
image `cell_01.tif` (or `.png`, ...), wherever in the project's folders that image was named.

Each label image becomes a new "imported" annotation version of its image (accepted ground
truth; history is kept). An image that already has an annotation keeps it unless `replace`
is asked for. A label image that matches no image, or several, or whose size differs from
its image, is reported by name; nothing of it is stored."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.permissions import Actor, require
from app.services.formats import (MASK_UPLOAD_SUFFIXES, image_stem_of_mask, is_image_file,
                                  stem, unsupported)
from app.services.imports import (ImportFile, ImportResult, add_imported_annotation,
                                 commit_each)
from app.services import queries
from app.tables import Image
from storage.blobstore import BlobStore, get_array
from storage.readers import DEFAULT_MAX_BYTES, ImageReadError, read_labels_bytes

log = logging.getLogger(__name__)
STATUSES = ("attached", "skipped", "rejected")


def _images_by_stem(session: Session, project_id: int) -> dict[str, list[tuple[int, str]]]:
    index: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for image_id, name in session.execute(select(Image.id, Image.name).where(
            *queries.live_images(project_id)).order_by(Image.id)):
        index[stem(name)].append((image_id, name))
    return index


def match_image(index: dict[str, list[tuple[int, str]]], mask_name: str
                ) -> tuple[int, str] | str:
    """(image id, image name) for a label image, or why there is none."""
    exact, key = stem(mask_name), image_stem_of_mask(mask_name)
    found = index.get(exact) or index.get(key) or []
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(repr(n) for _, n in found[:5])
        return (f"{mask_name}: matches {len(found)} images ({names}); give each label image "
                "the name of exactly one image.")
    return (f"{mask_name}: no image named {key!r} (for example {key}.tif or {key}.png) in "
            "this project; upload the image first, or rename the label image after it.")


def attach_one(session: Session, actor: Actor, store: BlobStore, project_id: int,
               item: ImportFile, index: dict, replace: bool, max_pixels: int,
               max_bytes: int = DEFAULT_MAX_BYTES) -> ImportResult:
    """Attach one label image (permission checked by the caller; the caller commits)."""
    if not is_image_file(item.name):
        return ImportResult(item.name, "rejected", unsupported(item.name, MASK_UPLOAD_SUFFIXES))
    match = match_image(index, item.name)
    if isinstance(match, str):
        return ImportResult(item.name, "rejected", match)
    image = session.get(Image, match[0])
    latest = queries.newest_annotation(session, image.id)
    if latest is not None and not replace:
        return ImportResult(item.name, "skipped",
                            f"{image.name!r} already has an annotation (version "
                            f"{latest.version}); tick 'Replace existing annotations' to add "
                            "this one as a new version.", image.id)
    z, _c, h, w = image.shape
    if z != 1:
        return ImportResult(item.name, "rejected", f"{item.name}: {image.name!r} is a z-stack; "
                            "label images for z-stacks are not supported yet.", image.id)
    try:
        labels = read_labels_bytes(item.name, item.read(), (h, w), max_pixels, max_bytes)
    except ImageReadError as exc:
        message = str(exc)
        return ImportResult(item.name, "rejected", f"{message} (image {image.name!r})", image.id)
    except (OSError, ValueError) as exc:
        return ImportResult(item.name, "rejected", f"{item.name}: cannot read it ({exc}).")
    if (latest is not None and latest.label_blob_key
            and np.array_equal(get_array(store, latest.label_blob_key), labels)):
        return ImportResult(item.name, "skipped", f"the same as version {latest.version} of "
                            f"{image.name!r}; nothing to add.", image.id, latest.n_cells)
    ann = add_imported_annotation(session, actor, store, image, labels)
    return ImportResult(item.name, "attached", f"version {ann.version} of {image.name!r}",
                        image.id, ann.n_cells)


def attach_masks(session: Session, actor: Actor, store: BlobStore, project_id: int,
                 items: Iterable[ImportFile | str], max_pixels: int,
                 max_bytes: int = DEFAULT_MAX_BYTES, replace: bool = False,
                 progress: Callable[[int, ImportResult], None] | None = None
                 ) -> list[ImportResult]:
    """Attach label images to the project's images, committing after each one; a string
    item is a refused input (from a source) and becomes a "rejected" result."""
    require(session, actor, project_id, "import")
    if replace:
        # Replacing appends an accepted version over someone's work: a reviewer's decision.
        require(session, actor, project_id, "review")
    index = _images_by_stem(session, project_id)
    results = commit_each(
        session, items, lambda item: attach_one(session, actor, store, project_id, item, index,
                                                replace, max_pixels, max_bytes),
        "attached", progress)
    log.info("%s attached %d of %d label images in project %s", actor.username,
             sum(r.status == "attached" for r in results), len(results), project_id)
    return results

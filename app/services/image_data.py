"""The arrays behind an image, for programs rather than screens (the HTTP API, `app.api_v1`):
its pixels, any saved annotation version as arrays, the active model's cached prediction,
and a label image (or polygons) attached to one image by id.

Each function checks the actor's role through the same services the pages use
(`gallery.image_for`, `masks.attach_one`, `prediction.prediction_for_display`); nothing
here decides a permission or a validation rule of its own."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Config
from app.errors import NotFound, ValidationError
from app.imaging.outlines import labels_from_polygons
from app.permissions import Actor, require
from app.services import masks, model_versions, prediction, queries
from app.services.formats import image_stem_of_mask, stem
from app.services.gallery import image_for
from app.services.imports import ImportFile, ImportResult, count_labels
from app.tables import Annotation
from storage.blobstore import BlobStore, get_array
from storage.writers import mask_tiff_bytes


@dataclass(frozen=True)
class Pixels:
    image_id: int
    name: str
    channel_names: list
    zcyx: np.ndarray          # (Z, C, Y, X), the stored dtype


@dataclass(frozen=True)
class AnnotationArrays:
    image_id: int
    version: int
    width: int
    height: int
    labels: np.ndarray | None     # (Y, X) instance labels; None for a points-only version
    region: np.ndarray | None     # (Y, X) bool: the part annotated; None: the whole image
    points: list                  # [[x, y, class], ...] in counting mode
    cell_classes: dict            # {"<label>": class index} for cells not of the first class
    n_cells: int
    source: str
    review_state: str


@dataclass(frozen=True)
class PredictedLabels:
    image_id: int
    model_version_id: int
    n_cells: int
    labels: np.ndarray            # (Y, X)


def pixels(session: Session, actor: Actor, store: BlobStore, image_id: int) -> Pixels:
    """The full-resolution pixels of an image (viewers and above)."""
    image = image_for(session, actor, image_id, "view")
    return Pixels(image.id, image.name, list(image.channel_names or []),
                  get_array(store, image.blob_key))


def annotation(session: Session, actor: Actor, store: BlobStore, image_id: int,
               version: int | None = None) -> AnnotationArrays:
    """A saved annotation version of an image as arrays (the newest when `version` is None)."""
    image = image_for(session, actor, image_id, "view")
    if version is None:
        ann = queries.newest_annotation(session, image.id)
    else:
        ann = session.scalar(select(Annotation).where(Annotation.image_id == image.id,
                                                      Annotation.version == version))
    if ann is None:
        raise NotFound("This image has no annotation yet." if version is None
                       else f"This image has no annotation version {version}.")
    _z, _c, height, width = image.shape
    labels = get_array(store, ann.label_blob_key) if ann.label_blob_key else None
    if labels is not None and labels.ndim == 3:
        labels = labels[0]
    region = get_array(store, ann.region_blob_key) > 0 if ann.region_blob_key else None
    return AnnotationArrays(image.id, ann.version, int(width), int(height), labels, region,
                            [list(p) for p in ann.points or []], dict(ann.cell_classes or {}),
                            int(ann.n_cells or 0), ann.source, ann.review_state)


def attach_labels(session: Session, actor: Actor, store: BlobStore, config: Config,
                  image_id: int, filename: str, data: bytes,
                  replace: bool = False) -> ImportResult:
    """Attach a label image (TIFF/PNG/NPY of instance labels, the image's size) to one image
    as a new "imported" version, as 'Label images (masks)' on the images page does, but
    matched by id rather than file name: annotators and above; replacing an existing
    annotation needs a reviewer. The caller commits (status "attached") or rolls back."""
    image = image_for(session, actor, image_id, "import")
    if replace:
        require(session, actor, image.project_id, "review")
    name = filename if stem(filename) else f"{image.name}.tif"
    index = {key: [(image.id, image.name)] for key in (stem(name), image_stem_of_mask(name))}
    return masks.attach_one(session, actor, store, image.project_id,
                            ImportFile(name, read=lambda: data), index, replace,
                            config.max_image_pixels, config.max_image_bytes)


def attach_polygons(session: Session, actor: Actor, store: BlobStore, config: Config,
                    image_id: int, polygons: list, replace: bool = False) -> ImportResult:
    """`attach_labels` of cells given as polygons ([[x, y], ...] each, full-resolution pixel
    coordinates as `app.imaging.outlines.cell_outlines` gives them), rasterised to a label
    image of the image's size and then checked and stored exactly like an uploaded one."""
    image = image_for(session, actor, image_id, "import")
    _z, _c, height, width = image.shape
    try:
        labels = labels_from_polygons(polygons, (int(height), int(width)))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    return attach_labels(session, actor, store, config, image_id, f"{image.name}.polygons.tif",
                         mask_tiff_bytes(labels), replace)


def predicted(session: Session, actor: Actor, config: Config, image_id: int,
              model_version_id: int | None = None) -> PredictedLabels:
    """The prediction of an image by a model of its project (the active one by default), as
    computed by a prediction job (read from the cache; never runs the model here)."""
    image = image_for(session, actor, image_id, "view")
    mv = model_versions.version_or_active(session, actor, model_version_id, image.project_id)
    labels = prediction.prediction_for_display(session, actor, config, image_id, mv.id)
    return PredictedLabels(image_id, mv.id, count_labels(labels), labels)

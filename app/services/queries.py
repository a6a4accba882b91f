"""Questions about images and annotations that many services ask, written once.

- a *live* image is one that was not deleted;
- a *usable* annotation is one with a label image (point-only annotations count cells but
  cannot be trained on);
- the *newest* annotation of an image is its highest version.

The functions return SQLAlchemy clauses and subqueries for callers to build on; nothing here
runs a query by itself except `newest_annotation` and `next_version`.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.states import ImageStatus
from app.tables import Annotation, Image


def live_images(project_id: int | None = None) -> list:
    """WHERE clauses: images not deleted (of one project, when given)."""
    where = [Image.deleted_at.is_(None)]
    if project_id is not None:
        where.append(Image.project_id == project_id)
    return where


def included_images(project_id: int | None = None) -> list:
    """WHERE clauses: live images that were not excluded (what training and exports use)."""
    return [*live_images(project_id), Image.status != ImageStatus.excluded]


def usable_annotation():
    """WHERE clause: an annotation with a label image (trainable)."""
    return Annotation.label_blob_key.is_not(None)


def newest_versions(usable_only: bool = False):
    """Subquery (image_id, version): the newest annotation version of every annotated image;
    with `usable_only`, the newest one that has a label image."""
    query = select(Annotation.image_id, func.max(Annotation.version).label("version"))
    if usable_only:
        query = query.where(usable_annotation())
    return query.group_by(Annotation.image_id).subquery()


def newest_annotations(usable_only: bool = False):
    """A select of Annotation rows: the newest one per image (see `newest_versions`); join
    Image on `Annotation.image_id` to filter by project."""
    newest = newest_versions(usable_only)
    return select(Annotation).join(newest, (newest.c.image_id == Annotation.image_id)
                                   & (newest.c.version == Annotation.version))


def newest_annotation(session: Session, image_id: int) -> Annotation | None:
    """The newest annotation of one image, or None."""
    return session.scalar(select(Annotation).where(Annotation.image_id == image_id)
                          .order_by(Annotation.version.desc()).limit(1))


def next_version(session: Session, image_id: int) -> int:
    """The version number the next annotation of `image_id` gets."""
    return int(session.scalar(select(func.max(Annotation.version))
                              .where(Annotation.image_id == image_id)) or 0) + 1


def annotated_image_ids():
    """A select of the ids of images with at least one annotation."""
    return select(Annotation.image_id).distinct()

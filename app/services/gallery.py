"""Browsing a project's images: paged, sorted, filtered lists; one image's details; marking
images excluded; deleting (soft) and purging them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.errors import NotFound, ValidationError
from app.permissions import Actor, require
from app.services import queries
from app.states import ImageStatus, ReviewState
from app.tables import Annotation, Draft, Image, ModelVersion, Project, Score, User, utcnow

SORTS = {"name": Image.name, "created": Image.id, "status": Image.status}
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class ImageRow:
    id: int
    name: str
    status: str
    width: int
    height: int
    n_planes: int
    n_channels: int
    dtype: str
    annotator: str
    n_cells: int | None
    score: float | None
    created_at: dt.datetime


@dataclass(frozen=True)
class ImagePage:
    items: list[ImageRow]
    total: int
    page: int
    per_page: int

    @property
    def n_pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class ImageDetail:
    id: int
    project_id: int
    name: str
    status: str
    shape: list
    dtype: str
    channels: list          # [{"name", "color"}] from the project
    quality_note: str
    annotation_version: int | None
    n_cells: int | None
    label_blob_key: str | None
    blob_key: str
    preview_blob_key: str | None
    n_points: int = 0               # of the newest annotation (a counting image's clicks)


def list_images(session: Session, actor: Actor, project_id: int, page: int = 1,
                per_page: int = 50, sort: str = "created", descending: bool = False,
                status: str | None = None) -> ImagePage:
    """One page of the project's images with their latest annotation and their score under
    the project's active model (the highest, if several strategies scored it)."""
    require(session, actor, project_id, "view")
    if sort not in SORTS and sort not in ("score", "annotator", "cells"):
        raise ValidationError(f"Cannot sort by {sort!r}.")
    if status and status not in tuple(ImageStatus):
        raise ValidationError(f"Unknown status {status!r}.")
    per_page = max(1, min(int(per_page), MAX_PER_PAGE))
    where = queries.live_images(project_id)
    if status:
        where.append(Image.status == status)
    total = session.scalar(select(func.count()).select_from(Image).where(*where))
    latest = queries.newest_versions()
    ann = aliased(Annotation)
    active = select(ModelVersion.id).where(ModelVersion.project_id == project_id,
                                           ModelVersion.is_active.is_(True))
    score = (select(Score.image_id, func.max(Score.value).label("value"))
             .where(Score.model_version_id.in_(active))
             .group_by(Score.image_id).subquery())
    columns = {**SORTS, "score": score.c.value, "annotator": User.username, "cells": ann.n_cells}
    order = columns[sort].desc() if descending else columns[sort].asc()
    page = max(1, int(page))
    query = (select(Image, User.username, ann.n_cells, score.c.value)
             .where(*where)
             .outerjoin(latest, latest.c.image_id == Image.id)
             .outerjoin(ann, (ann.image_id == Image.id) & (ann.version == latest.c.version))
             .outerjoin(User, User.id == ann.author_id)
             .outerjoin(score, score.c.image_id == Image.id)
             .order_by(order, Image.id).limit(per_page).offset((page - 1) * per_page))
    items = []
    for image, annotator, n_cells, value in session.execute(query):
        z, c, h, w = image.shape
        items.append(ImageRow(image.id, image.name, image.status, w, h, z, c, image.dtype,
                              annotator or "", n_cells, value, image.created_at))
    return ImagePage(items, total, page, per_page)


def image_for(session: Session, actor: Actor, image_id, action: str) -> Image:
    """The live image, if the actor may do `action` in its project. A non-member hears
    "No such image." as for an id that does not exist, so image ids cannot be probed."""
    image = session.get(Image, image_id) if isinstance(image_id, int) else None
    if image is None or image.deleted_at is not None:
        raise NotFound("No such image.")
    try:
        require(session, actor, image.project_id, action)
    except NotFound:
        raise NotFound("No such image.") from None
    return image


def get_image(session: Session, actor: Actor, image_id: int) -> ImageDetail:
    image = image_for(session, actor, image_id, "view")
    ann = queries.newest_annotation(session, image.id)
    project = session.get(Project, image.project_id)  # channel colours live on the project
    return ImageDetail(image.id, image.project_id, image.name, image.status, list(image.shape),
                       image.dtype, list(project.channels), image.quality_note,
                       ann.version if ann else None, ann.n_cells if ann else None,
                       ann.label_blob_key if ann else None, image.blob_key,
                       image.preview_blob_key, len(ann.points or []) if ann else 0)


def status_from_history(session: Session, image_id: int) -> str:
    """The status an image has from its newest saved version: reviewed (accepted), annotated
    (submitted), in_progress (returned to its author, or a draft exists), new (nothing)."""
    newest = queries.newest_annotation(session, image_id)
    if newest is not None:
        if newest.source == "imported":      # ground truth brought in: "annotated", as at import
            return ImageStatus.annotated
        return status_after_review(newest.review_state)
    has_draft = session.scalar(select(Draft.id).where(Draft.image_id == image_id).limit(1))
    return ImageStatus.in_progress if has_draft else ImageStatus.new


def status_after_review(review_state: str) -> ImageStatus:
    """An image's status given the review state of its newest version."""
    return {ReviewState.accepted: ImageStatus.reviewed,
            ReviewState.returned: ImageStatus.in_progress}.get(review_state, ImageStatus.annotated)


def set_excluded(session: Session, actor: Actor, image_id: int, excluded: bool,
                 note: str = "") -> ImageDetail:
    """Mark an image as excluded (bad quality), with a note; or include it again."""
    image = image_for(session, actor, image_id, "annotate")
    if excluded:
        image.status, image.quality_note = ImageStatus.excluded, (note or "").strip()[:2000]
    else:
        image.status, image.quality_note = status_from_history(session, image.id), ""
    session.flush()
    return get_image(session, actor, image_id)


def delete_images(session: Session, actor: Actor, project_id: int, image_ids: list[int]) -> int:
    """Hide images (owners only). Their annotation history stays in exports until purged."""
    require(session, actor, project_id, "manage")
    images = session.scalars(select(Image).where(Image.project_id == project_id,
                                                 Image.id.in_(list(image_ids)),
                                                 *queries.live_images())).all()
    for image in images:
        image.deleted_at = utcnow()
    session.flush()
    return len(images)


def purge_deleted(session: Session, actor: Actor, project_id: int) -> int:
    """Remove deleted images and their annotation history for good (owners only).
    Blobs stay in the content-addressed store (another image may share them)."""
    require(session, actor, project_id, "manage")
    images = session.scalars(select(Image).where(Image.project_id == project_id,
                                                 Image.deleted_at.is_not(None))).all()
    for image in images:
        session.delete(image)
    session.flush()
    return len(images)

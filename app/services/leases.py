"""The annotation queue and image leases: which image an annotator gets next, and the stamp
(who, until when) that keeps two annotators off the same image.

A lease is taken with one conditional UPDATE (free, expired or already ours), so two web
workers handing out images at the same moment cannot both win. Order of the queue:
1. images a reviewer sent back to them (oldest saved first), before anything else,
2. the image the annotator already holds (they come back to it),
3. unannotated images ranked by the active model's scores under the project's strategy:
   the images a batch strategy picked first (`Score.rank` ascending), then by score (highest
   first), then new images before started ones, oldest first. When the project queues
   regions (`region_queue`), a partly annotated image waits too while scoring found one of
   its regions still open; the score is its best region's.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.config import Config
from app.errors import Conflict, NotFound
from app.permissions import Actor, require
from app.services import queries
from app.services.project_settings import ProjectSettings
from app.states import QUEUE_STATUSES, ImageStatus, ReviewState
from app.tables import Annotation, Image, ModelVersion, Project, Score, User, utcnow


@dataclass(frozen=True)
class Lease:
    user_id: int | None
    username: str | None
    expires_at: dt.datetime | None

    def held_by_other(self, actor: Actor, now: dt.datetime | None = None) -> bool:
        now = now or utcnow()
        return (self.user_id is not None and self.user_id != actor.id
                and self.expires_at is not None and self.expires_at > now)


def lease_of(session: Session, image: Image) -> Lease:
    if image.assigned_to_id is None:
        return Lease(None, None, None)
    user = session.get(User, image.assigned_to_id)
    return Lease(image.assigned_to_id, user.username if user else None, image.lease_expires_at)


def _free_or_ours(actor: Actor, now: dt.datetime):
    return or_(Image.assigned_to_id.is_(None), Image.lease_expires_at.is_(None),
               Image.lease_expires_at <= now, Image.assigned_to_id == actor.id)


def try_lease(session: Session, actor: Actor, config: Config, image: Image,
              always: bool = False) -> bool:
    """Take or renew the lease on `image` for `actor`; False when someone else holds it.

    A lease of the actor's with more than half its length left is kept as it is, without a
    write (unless `always`): edits and opens then take no write lock for it, which on SQLite
    is one lock for every writer of every web worker. A save writes it always: its
    conditional UPDATE is what keeps a save out when someone else took the image."""
    if actor.id is None:
        return False
    now = utcnow()
    length = dt.timedelta(minutes=config.lease_minutes)
    if (not always and image.assigned_to_id == actor.id and image.lease_expires_at is not None
            and image.lease_expires_at - now > length / 2):
        return True
    until = now + length
    result = session.execute(
        update(Image).where(Image.id == image.id, _free_or_ours(actor, now))
        .values(assigned_to_id=actor.id, lease_expires_at=until)
        .execution_options(synchronize_session=False))
    session.refresh(image, ["assigned_to_id", "lease_expires_at"])
    return result.rowcount == 1


def check(session: Session, actor: Actor, config: Config, image: Image) -> None:
    """Refuse (Conflict) when someone else holds a live lease on `image`, without writing:
    for callers that do slow work before they `renew` (no write lock held meanwhile)."""
    now = utcnow()
    held = (image.assigned_to_id is not None and image.assigned_to_id != actor.id
            and image.lease_expires_at is not None and image.lease_expires_at > now)
    if held:
        lease = lease_of(session, image)
        raise Conflict(f"{lease.username} is annotating this image now (until "
                       f"{lease.expires_at:%H:%M} UTC).")


def renew(session: Session, actor: Actor, config: Config, image_id: int,
          always: bool = False) -> Lease:
    """Keep the lease while the annotator works (called on edits, and `always` by the page's
    timer and by a save)."""
    image = session.get(Image, image_id)
    if image is None or image.deleted_at is not None:
        raise NotFound("No such image.")
    require(session, actor, image.project_id, "annotate")
    if not try_lease(session, actor, config, image, always):
        lease = lease_of(session, image)
        raise Conflict(f"{lease.username} is annotating this image now (until "
                       f"{lease.expires_at:%H:%M} UTC).")
    return lease_of(session, image)


def release(session: Session, actor: Actor, image_id: int) -> None:
    """Give the image back to the queue (skip, next, or done)."""
    session.execute(update(Image).where(Image.id == image_id, Image.assigned_to_id == actor.id)
                    .values(assigned_to_id=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False))


def returned_to(actor: Actor):
    """Newest annotations (one per image) that a reviewer sent back to `actor`: a select of
    Annotation rows, for the queue and the "returned to me" lists."""
    return queries.newest_annotations().where(Annotation.review_state == ReviewState.returned,
                                              Annotation.author_id == actor.id)


def _ranked(session: Session, project_id: int):
    """Queue-eligible images by the active model's scores under the project's strategy:
    picked by rank first (1 = first), then by value (highest first), then new before
    started, oldest first."""
    loop = ProjectSettings.of(session.get(Project, project_id)).loop
    active = select(ModelVersion.id).where(ModelVersion.project_id == project_id,
                                           ModelVersion.is_active.is_(True))
    score = (select(Score.image_id, func.max(Score.value).label("value"),
                    func.min(Score.rank).label("rank"),
                    func.count(Score.region).label("regions"))
             .where(Score.model_version_id.in_(active), Score.strategy == loop.strategy)
             .group_by(Score.image_id).subquery())
    waiting = Image.status.in_(QUEUE_STATUSES)
    if loop.unit == "region":
        # a partly annotated image waits while scoring found a region of it still open
        waiting = or_(waiting, (score.c.regions > 0) & (Image.status != ImageStatus.excluded))
    return (select(Image).outerjoin(score, score.c.image_id == Image.id)
            .where(*queries.live_images(project_id), waiting)
            .order_by(score.c.rank.is_(None), score.c.rank, score.c.value.is_(None),
                      score.c.value.desc(), (Image.status != ImageStatus.new), Image.id)
            .add_columns(score.c.value))


def ranked_pool(session: Session, project_id: int, limit: int = 50) -> list:
    """[(Image, score or None)] in queue order (ignores leases)."""
    return [(row[0], row[1]) for row in session.execute(
        _ranked(session, project_id).limit(limit)).all()]


def candidates(session: Session, actor: Actor, project_id: int, skip=(), limit: int = 20
               ) -> list[int]:
    """Image ids in queue order that `actor` could lease now (read-only, takes nothing)."""
    now = utcnow()
    base = [*queries.live_images(project_id), Image.status != ImageStatus.excluded,
            _free_or_ours(actor, now)]
    if skip:
        base.append(Image.id.notin_([int(s) for s in skip]))
    held = session.scalars(select(Image.id).where(
        *base, Image.assigned_to_id == actor.id, Image.lease_expires_at > now,
        Image.status.in_(QUEUE_STATUSES)).order_by(Image.id)).all()
    back = returned_to(actor).subquery()
    returned = session.scalars(select(Image.id).join(back, back.c.image_id == Image.id)
                               .where(*base).order_by(back.c.created_at, Image.id)).all()
    ranked = [image.id for image in session.scalars(
        _ranked(session, project_id).where(*base).limit(limit)).all()]
    seen: dict[int, None] = {}
    # returned work first: an image held from an earlier visit must not hide it
    for image_id in [*returned, *held, *ranked]:
        seen.setdefault(image_id, None)
    return list(seen)[:limit]


def next_image(session: Session, actor: Actor, config: Config, project_id: int,
               skip=(), release_id: int | None = None) -> int:
    """Lease and return the next image for `actor` (after giving back `release_id`)."""
    require(session, actor, project_id, "annotate")
    skip = {int(s) for s in skip} | ({int(release_id)} if release_id is not None else set())
    ids = candidates(session, actor, project_id, skip)
    # the reads come first, the writes (release, lease) last: a write transaction (on SQLite
    # the one write lock) lasts no longer than the writes
    if release_id is not None:
        release(session, actor, int(release_id))
    for attempt in range(5):
        if attempt:
            ids = candidates(session, actor, project_id, skip)
        if not ids:
            break
        for image_id in ids:
            image = session.get(Image, image_id)
            if try_lease(session, actor, config, image):
                return image_id
    raise NotFound("No images are waiting to be annotated in this project.")


def peek_next(session: Session, actor: Actor, project_id: int) -> int | None:
    """The image `next_image` would most likely hand out, without leasing it."""
    require(session, actor, project_id, "view")
    ids = candidates(session, actor, project_id, limit=1)
    return ids[0] if ids else None

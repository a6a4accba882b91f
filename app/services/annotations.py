"""Annotations: opening an image to annotate, saving a draft as a new version (append-only,
with a conflict check), marking an image empty, and the review flow (accept, or send back
with a comment).

A save never overwrites: every save is a new Annotation row whose parent is the version the
draft was started from. If someone saved a newer version meanwhile, the save is refused with
a Conflict unless the user asks to save theirs on top (`force`)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Config
from app.db import lock_row
from app.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.permissions import Actor, Role, require, role_of
from app.services import drafts, leases, projects, region_queue, save_prep
from app.services.gallery import image_for
from app.services import queries
from app.states import ImageStatus, ReviewState
from app.tables import Annotation, Draft, Image, Project, User
from app.imaging import effort as effort_counts
from app.imaging.shapes import finish, renumber
from storage import array_cache
from storage.blobstore import BlobStore, get_array, put_array


@dataclass(frozen=True)
class Version:
    id: int
    version: int
    author: str | None
    created_at: dt.datetime
    source: str
    n_cells: int
    n_points: int
    review_state: str
    review_comment: str
    reviewer: str | None
    effort: dict | None = None          # see Annotation.effort; None for imported versions


OPEN_PREPARE_DELAY = 2.0         # s after opening: the page's image and overlay load first


@dataclass(frozen=True)
class Workspace:
    image_id: int
    project_id: int
    project_name: str
    name: str
    status: str
    width: int
    height: int
    z_count: int
    channels: list
    classes: list
    counting: bool                      # the project counts points rather than outlines
    role: str
    can_edit: bool
    can_review: bool
    read_only_reason: str | None
    lease_holder: str | None
    lease_expires_at: dt.datetime | None
    latest: Version | None
    draft_rev: int | None
    draft_base_version: int | None
    draft_stale: bool                   # someone saved a newer version after the draft began
    draft_source: str | None
    can_undo: bool
    can_redo: bool
    quality_note: str
    n_cells: int | None                 # None: not known without replaying the draft
    n_points: int | None
    dtype: str = "uint8"
    focus: list | None = None           # [y0, x0, y1, x1]: the region the queue serves


def _user_name(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    return user.username if user else None


def _version(session: Session, ann: Annotation | None) -> Version | None:
    if ann is None:
        return None
    return Version(ann.id, ann.version, _user_name(session, ann.author_id), ann.created_at,
                   ann.source if ann.source != "model-corrected" or not ann.source_model_version_id
                   else f"corrected from model #{ann.source_model_version_id}",
                   ann.n_cells or 0, len(ann.points or []), ann.review_state, ann.review_comment,
                   _user_name(session, ann.reviewer_id), ann.effort)


def open_workspace(session: Session, actor: Actor, config: Config, image_id: int,
                   store: BlobStore | None = None, queued: bool = False) -> Workspace:
    """Open an image to annotate: take the lease when the actor may edit and nobody else
    holds it; otherwise the workspace is read-only and says why. `queued`: the annotation
    queue handed the image out; when the project queues regions, the workspace then names
    the region to annotate (`focus`) and the draft's annotated region takes it in
    (`region_queue.widen`, needs `store`). Opened any other way (a reviewer checking, a
    link), nothing is added to the draft."""
    image = image_for(session, actor, image_id, "view")
    project = session.get(Project, image.project_id)
    role = role_of(session, actor, project.id)
    may_edit = role >= Role.annotator
    reason = None
    if not may_edit:
        reason = "You can look at this project's images but not change them (viewer)."
    elif image.status == ImageStatus.excluded:
        reason = "This image is excluded; include it again to annotate it."
        may_edit = False
    elif not leases.try_lease(session, actor, config, image):
        lease = leases.lease_of(session, image)
        reason = (f"{lease.username} is annotating this image (until "
                  f"{lease.expires_at:%H:%M} UTC).")
        may_edit = False
    # an untouched draft follows versions others saved since it began
    draft = drafts.ensure_draft(session, actor, image) if may_edit else None
    focus = (region_queue.focus(session, image)
             if queued and draft is not None and store is not None else None)
    if draft is not None:
        if focus is not None:                     # the region queued: the one to annotate
            region_queue.widen(session, actor, config, store, draft, image, focus)
        drafts.note_opened(session, draft)        # opening counts for the active time
        if store is not None:     # the first save compares against it (prepared once the
            save_prep.prepare_later(store, drafts.start_of(session, draft).label_key,
                                    OPEN_PREPARE_DELAY)    # page's overlay has loaded)
    latest = queries.newest_annotation(session, image.id)
    base = session.get(Annotation, draft.base_annotation_id) if draft and \
        draft.base_annotation_id else None
    lease = leases.lease_of(session, image)
    z_count, _c, height, width = image.shape
    return Workspace(
        image.id, project.id, project.name, image.name, image.status, int(width), int(height),
        int(z_count), list(project.channels), list(project.classes or []),
        (project.settings or {}).get("annotation_mode") == "points", role.name,
        may_edit, role >= Role.reviewer, reason, lease.username, lease.expires_at,
        _version(session, latest), draft.rev if draft else None, base.version if base else None,
        bool(draft and latest and draft.base_annotation_id != latest.id),
        draft.source if draft else None, bool(draft and draft.edits),
        bool(draft and draft.undone), image.quality_note, *_counts(draft, latest), image.dtype,
        focus)



def _counts(draft: Draft | None, latest: Annotation | None) -> tuple[int | None, int | None]:
    """Cells and points on screen when the page opens (the draft's count is shown after the
    first edit; an untouched draft equals its base)."""
    if draft is not None and draft.source == "manual" and not draft.edits and latest is not None:
        return latest.n_cells or 0, len(latest.points or [])
    if latest is None and draft is not None and not draft.edits:
        return 0, 0
    return None, None


def save(session: Session, actor: Actor, config: Config, store: BlobStore, image_id: int,
         force: bool = False, empty: bool = False) -> Version:
    """Save the actor's draft as a new version (submitted for review).

    Refused with Conflict when another version was saved after the draft began, unless
    `force` (then it is saved on top, as the newest version; nothing is overwritten).
    `empty` saves "no cells in this image" (clears the draft first). The draft is kept with
    its edits (`drafts.checkpoint`), so the annotator can still undo after saving."""
    image = image_for(session, actor, image_id, "annotate")
    leases.check(session, actor, config, image)   # refuse early, write the lease at the end
    draft = drafts.ensure_draft(session, actor, image)
    latest = queries.newest_annotation(session, image.id)
    if latest is not None and draft.base_annotation_id != latest.id and not force:
        raise Conflict(f"This image changed since you opened it: version {latest.version} "
                       f"was saved by {_user_name(session, latest.author_id)} at "
                       f"{latest.created_at:%H:%M} UTC. Reload to see it, or save yours as "
                       "a new version.")
    if empty:
        drafts.record_edit(session, actor, config, store, image.id, {"op": "clear"})
    canvas = drafts.canvas_for(config, store, draft, image)
    labels, classes = finish(canvas)
    region_key = None
    if canvas.region is not None:
        if not canvas.region.any():
            raise ValidationError("The annotated region is empty; draw it again or mark the "
                                  "whole image.")
        region_key = put_array(store, canvas.region.astype(np.uint8))
    n_cells = int(labels.max(initial=0))          # finish() numbers the cells 1..N
    # points without outlines (counting): no mask, so training does not read it as "no cells".
    # The mask is compressed and written (fsync) in a thread while the effort is counted.
    writing = (None if canvas.points and not n_cells
               else save_prep.InThread(put_array, store, labels))
    points = [list(p) for p in canvas.points]
    now = drafts.clock()                          # the save is an activity event
    activity = drafts.activity_after(draft, now)
    # an untouched draft shows the newest version itself: no new version, nothing to count
    unchanged = (not empty and latest is not None and draft.base_annotation_id == latest.id
                 and drafts.untouched(draft))
    try:
        effort, areas = (None, None) if unchanged else _effort(
            session, store, draft, labels, classes, points, activity["seconds"])
    finally:
        label_key = None if writing is None else writing.result()
    _remember(label_key, labels, areas)
    # The slow part (replaying the draft, compressing and writing blobs) is done; only now is
    # the lease written, so the write transaction lasts no longer than the inserts below.
    # Two saves of this image (two web workers, two hosts) go one after the other from here:
    # the image row is locked (PostgreSQL; SQLite's write lock does the same), and the newest
    # version is read again under the lock, so the version numbers and the conflict check
    # hold (a version saved meanwhile with the same content is this save, done twice; any
    # other is a Conflict, or the parent when `force`).
    lock_row(session, Image, image.id)
    # always written, even when fresh (on SQLite this write takes the lock)
    leases.renew(session, actor, config, image.id, always=True)
    newest = queries.newest_annotation(session, image.id)
    raced = newest is not None and (latest is None or newest.id != latest.id)
    if raced:
        latest = newest
    if latest is not None and _same_content(store, latest, None if label_key is None else labels,
                                            canvas.region, points, classes):
        # Nothing changed against the newest version (a repeated or concurrent save of the
        # same draft, or "Save & next" on an untouched image): no new version. A version sent
        # back and saved again unchanged goes back to review (the annotator says it is right).
        if latest.review_state == ReviewState.returned:
            latest.review_state, image.status = ReviewState.submitted, ImageStatus.annotated
        draft.activity = activity                 # no new version: the time keeps counting
        drafts.checkpoint(session, config, draft, latest, canvas)
        return _version(session, latest)
    if raced and not force:
        raise Conflict(f"This image changed since you opened it: version {latest.version} "
                       f"was saved by {_user_name(session, latest.author_id)} at "
                       f"{latest.created_at:%H:%M} UTC. Reload to see it, or save yours "
                       "as a new version.")
    if effort is None:                            # (an untouched draft that still differs)
        effort, areas = _effort(session, store, draft, labels, classes, points,
                                activity["seconds"])
        _remember(label_key, labels, areas)
    source, model_version_id = drafts.source_of(session, draft)
    ann = Annotation(
        image_id=image.id, version=queries.next_version(session, image.id),
        parent_id=latest.id if latest else None, author_id=actor.id,
        label_blob_key=label_key, region_blob_key=region_key,
        points=points, cell_classes=classes, n_cells=n_cells,
        source=source, source_model_version_id=model_version_id, review_state=ReviewState.submitted,
        effort=effort)
    session.add(ann)
    image.status = ImageStatus.annotated
    region_queue.forget(session, image.id)        # its queued region is done (region mode)
    session.flush()
    # The draft row changes only in checkpoint, whose flush turns a concurrent save of the
    # same draft (its revision moved on) into a Conflict rather than an error.
    draft.activity = {"last": now, "seconds": 0.0}   # the next version counts from here
    drafts.checkpoint(session, config, draft, ann, canvas)   # the edits stay undoable
    return _version(session, ann)


@dataclass(frozen=True)
class Saved:
    """A save from the workspace: the version, and what the page shows of the draft after."""
    version: Version
    can_undo: bool
    can_redo: bool
    redraw: bool            # the draft's overlay changed (saved empty, or its history folded)


def save_in_workspace(session: Session, actor: Actor, config: Config, store: BlobStore,
                      image_id: int, force: bool = False, empty: bool = False) -> Saved:
    """`save`, and the draft's undo/redo state after it. A save keeps the draft's edits
    (`drafts.checkpoint`), so its overlay looks the same and the page need not load it
    again, unless the save cleared the draft (`empty`) or folded a long history into the
    version (then a suggestion's colours for unchecked cells are gone too, and the page's
    redo list with the draft's)."""
    before = drafts.find_draft(session, actor, image_id)
    had_edits = bool(before is not None and before.edits)
    version = save(session, actor, config, store, image_id, force=force, empty=empty)
    draft = drafts.find_draft(session, actor, image_id)
    edits = bool(draft is not None and draft.edits)
    # a draft without edits (all undone) is folded too, and its redo list goes with it
    return Saved(version, edits, bool(draft is not None and draft.undone),
                 empty or not (had_edits and edits))


def _remember(label_key: str | None, labels: np.ndarray, areas: np.ndarray | None) -> None:
    """Keep the mask just written (and its cells' areas) in memory: the next save of this
    image compares against it."""
    if label_key is None:
        return
    array_cache.labels.remember(label_key, labels)
    if areas is not None:
        array_cache.areas.remember(label_key, areas)


def _effort(session: Session, store: BlobStore, draft: Draft, labels: np.ndarray,
            classes: dict, points: list, active_seconds: float
            ) -> tuple[dict, np.ndarray | None]:
    """What this save changes against what the annotator started from (the suggestion or
    the version the draft builds on; `app.imaging.effort` has the matching rule). With the
    start's cell areas in memory (the previous save of this image left them), only the rows
    that changed are compared. Also answers the new mask's cell areas."""
    start = drafts.start_of(session, draft)
    base = array_cache.labels.get(store, start.label_key) if start.label_key else None
    base_areas = None
    if base is not None:
        base_areas = array_cache.areas.peek(start.label_key) if base.ndim == 2 else None
        base = base if base.ndim == 2 else base.reshape(-1, *base.shape[-2:])[0]
        if base.shape != labels.shape:        # not comparable: counted as from empty
            base, base_areas = None, None
    cells, areas = effort_counts.compare_with_areas(base, labels, start.classes, classes,
                                                    base_areas)
    counts = effort_counts.combine(cells, effort_counts.compare_points(start.points, points))
    return {**counts, "corrections": counts["added"] + counts["deleted"] + counts["reshaped"],
            "active_seconds": round(float(active_seconds), 1), "base": start.kind,
            "base_model_version_id": start.model_version_id}, areas


def _same_content(store: BlobStore, ann: Annotation, labels: np.ndarray | None,
                  region: np.ndarray | None, points: list, classes: dict) -> bool:
    """Whether a save would store the same cells, classes, region and points as `ann`.
    Compared as arrays, not blob keys: keys of versions saved by an older release (plain
    .npy blobs) differ from today's, and imported masks may number their cells with gaps
    (`finish` renumbers 1..N), so equal content can have different keys."""
    if [list(p) for p in (ann.points or [])] != points:
        return False
    if (ann.region_blob_key is None) != (region is None):
        return False
    if region is not None and not np.array_equal(get_array(store, ann.region_blob_key) > 0,
                                                 region > 0):
        return False
    if (ann.label_blob_key is None) != (labels is None):
        return False
    if labels is None:
        return True
    if int(labels.max(initial=0)) != (ann.n_cells or 0):   # finish() numbers cells 1..N
        return False                                        # (most saves stop here, unread)
    stored = array_cache.labels.get(store, ann.label_blob_key)
    if stored.shape != labels.shape:
        return False
    relabelled, forward = renumber(stored)
    if not np.array_equal(relabelled, labels):
        return False
    stored_classes = {str(forward[int(key)]): int(cls)
                      for key, cls in (ann.cell_classes or {}).items()
                      if int(key) in forward and cls}
    return stored_classes == {str(k): int(v) for k, v in (classes or {}).items() if v}


def history(session: Session, actor: Actor, image_id: int) -> list[Version]:
    """Every saved version of an image, newest first."""
    image = image_for(session, actor, image_id, "view")
    rows = session.scalars(select(Annotation).where(Annotation.image_id == image.id)
                           .order_by(Annotation.version.desc())).all()
    return [_version(session, a) for a in rows]


def review(session: Session, actor: Actor, image_id: int, accept: bool,
           comment: str = "", enqueue=None) -> Version:
    """Accept the newest version, or send it back to its author with a comment. With
    `enqueue`, an acceptance that completes the project's "retrain after K" count starts
    a training job (which rescores the pool when it ends)."""
    image = image_for(session, actor, image_id, "review")
    latest = queries.newest_annotation(session, image.id)
    if latest is None:
        raise NotFound("This image has no annotation to review.")
    if accept and latest.author_id == actor.id and not actor.is_admin:
        project = session.get(Project, image.project_id)
        if not projects.allows_self_review(project):
            raise PermissionDenied("You saved this version yourself; another reviewer must "
                                   "accept it (owners can allow self-review in the project "
                                   "settings).")
    comment = (comment or "").strip()[:2000]
    if not accept and not comment:
        raise ValidationError("Say what needs to change when sending an annotation back.")
    latest.review_state = ReviewState.accepted if accept else ReviewState.returned
    latest.review_comment = comment
    latest.reviewer_id = actor.id
    image.status = ImageStatus.reviewed if accept else ImageStatus.in_progress
    if not accept or image.assigned_to_id == actor.id:
        # sent back: free for its author, first in their queue; accepted: the reviewer's
        # lease from opening it in the workspace would only keep others out
        image.assigned_to_id, image.lease_expires_at = None, None
    session.flush()
    if accept and enqueue is not None:
        from app.services.learning_loop import on_annotation_accepted
        on_annotation_accepted(session, actor, image.project_id, enqueue)
    return _version(session, latest)


@dataclass(frozen=True)
class ReviewItem:
    image_id: int
    name: str
    version: int
    author: str | None
    created_at: dt.datetime
    n_cells: int
    review_state: str
    review_comment: str = ""
    reviewer: str | None = None
    author_id: int | None = None
    n_points: int = 0


REVIEW_STATES = tuple(ReviewState)


def _item(session: Session, img: Image, ann: Annotation) -> ReviewItem:
    return ReviewItem(img.id, img.name, ann.version, _user_name(session, ann.author_id),
                      ann.created_at, ann.n_cells or 0, ann.review_state,
                      ann.review_comment or "", _user_name(session, ann.reviewer_id),
                      ann.author_id, len(ann.points or []))


def review_list(session: Session, actor: Actor, project_id: int,
                state: str = ReviewState.submitted, limit: int = 200) -> list[ReviewItem]:
    """Images whose newest version is in `state` (submitted, returned, accepted): waiting
    for review oldest first (first come, first reviewed), the others newest first."""
    require(session, actor, project_id, "view")
    if state not in REVIEW_STATES:
        raise ValidationError(f"Review state must be one of {', '.join(REVIEW_STATES)}.")
    newest = queries.newest_versions()
    order = (Annotation.created_at if state == ReviewState.submitted else Annotation.created_at.desc())
    rows = session.execute(
        select(Image, Annotation)
        .join(newest, newest.c.image_id == Image.id)
        .join(Annotation, (Annotation.image_id == Image.id) & (Annotation.version == newest.c.version))
        .where(*queries.included_images(project_id), Annotation.review_state == state)
        .order_by(order, Image.id).limit(limit)).all()
    return [_item(session, img, ann) for img, ann in rows]


def next_to_review(session: Session, actor: Actor, project_id: int,
                   current: int | None = None, release: bool = False) -> int | None:
    """For a reviewer working through the review list: the image waiting for review that
    comes after `current` in the list (oldest first, wrapping round; the oldest when
    `current` is not waiting any more, e.g. just accepted), so Next and Skip walk the whole
    list. Versions the reviewer saved are left out unless they may accept them
    (self-review allowed, or a site admin). None when nothing else is waiting. `release`:
    give back the actor's lease on `current` (opening it in the workspace took one), as
    `leases.next_image` does for the annotation queue."""
    require(session, actor, project_id, "review")
    own_ok = actor.is_admin or projects.allows_self_review(session.get(Project, project_id))
    waiting = [i.image_id for i in review_list(session, actor, project_id,
                                                ReviewState.submitted)
               if own_ok or i.author_id != actor.id]
    if current in waiting:
        k = waiting.index(current)
        waiting = waiting[k + 1:] + waiting[:k]
    if release and current is not None:
        leases.release(session, actor, current)
    return waiting[0] if waiting else None


def returned_to_me(session: Session, actor: Actor, project_id: int,
                   limit: int = 200) -> list[ReviewItem]:
    """The actor's images whose newest version a reviewer sent back, with the reviewer's
    comment, oldest first (the order the annotation queue hands them out)."""
    require(session, actor, project_id, "view")
    back = leases.returned_to(actor).subquery()
    rows = session.execute(
        select(Image, Annotation).join(back, back.c.image_id == Image.id)
        .join(Annotation, Annotation.id == back.c.id)
        .where(*queries.included_images(project_id))
        .order_by(Annotation.created_at, Image.id).limit(limit)).all()
    return [_item(session, img, ann) for img, ann in rows]


def review_counts(session: Session, actor: Actor, project_id: int) -> dict[str, int]:
    """How many images wait for review, and how many were sent back to the actor."""
    require(session, actor, project_id, "view")
    newest = queries.newest_versions()
    waiting = session.scalar(
        select(func.count()).select_from(Image)
        .join(newest, newest.c.image_id == Image.id)
        .join(Annotation, (Annotation.image_id == Image.id) & (Annotation.version == newest.c.version))
        .where(*queries.included_images(project_id),
               Annotation.review_state == ReviewState.submitted))
    back = leases.returned_to(actor).subquery()
    returned = session.scalar(
        select(func.count()).select_from(Image).join(back, back.c.image_id == Image.id)
        .where(*queries.included_images(project_id)))
    return {ReviewState.submitted: int(waiting or 0), "returned_to_me": int(returned or 0)}

"""Drafts: a user's unsaved edits of one image, kept on the server after every edit, so a
closed tab or a crashed browser loses nothing that reached the server.

A draft is a base (the newest annotation when it was started) plus an ordered list of edits
(`app.imaging.shapes.apply_edit`) and the undone edits (redo). The current mask is recomputed
from base + edits and cached per draft state (base and edits) in the cache directory, the
newest few kept, so one edit costs one shape's rasterisation, and an undo a file read, not a
replay.

Replacing everything on screen is an edit too, so Undo takes it back: a model suggestion or
"Revert to last saved" appends a `base` edit (a snapshot by blob keys: labels, classes,
region, points) and the draft continues from the newest such snapshot. Only the server
makes `base` edits; a browser cannot send one (it names blobs).

Saving keeps the draft and its edits (the saved version becomes the draft's parent and the
last edit is marked `saved_as`), so Undo still works after a save; a draft with nothing done
since its save follows versions saved later by others, like an untouched one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from app.config import Config
from app.db import end_transaction, lock_row
from app.errors import Conflict, ValidationError
from app.permissions import Actor
from app.services import leases
from app.services.gallery import image_for
from app.services.imports import count_labels
from app.services import model_versions, queries, save_prep
from app.states import ImageStatus
from app.tables import Annotation, Draft, Image, ModelVersion, Project, utcnow
from app.imaging.shapes import (Canvas, ShapeError, apply_edit, apply_edits,
                                cell_polygon, finish, point_pick_radius)
from storage import array_cache
from storage.blobstore import BlobStore, get_array, put_array
from storage.writers import atomic_path

MAX_EDITS = 5000
BASE_OP = "base"        # a snapshot the draft continues from (suggestion, revert); server-made
MAX_WIDTH = 500
EDIT_OPS = {"add", "brush", "erase", "replace", "delete", "class", "clear", "region",
            "region_all", "point", "unpoint", "check"}
MAX_CHECKED = 100_000   # cells one "check" edit may name (app.services.cell_review)
SHAPE_KEYS = {"type", "path", "x0", "x1", "y0", "y1"}
SHAPE_TYPES = {"path", "rect", "circle", "line"}
IDLE_GAP_S = 60.0       # a pause longer than this between two events is not editing time


def clock() -> float:
    """Unix time of an activity event (tests replace it)."""
    return time.time()


@dataclass(frozen=True)
class EditResult:
    rev: int
    label: int | None          # the cell the edit created or changed (selected next)
    n_cells: int
    n_points: int
    can_undo: bool
    can_redo: bool


def find_draft(session: Session, actor: Actor, image_id: int) -> Draft | None:
    if actor.id is None:
        return None
    return session.scalar(select(Draft).where(Draft.image_id == image_id,
                                              Draft.user_id == actor.id))


def _based_on(draft: Draft, ann: Annotation | None) -> Draft:
    draft.base_annotation_id = ann.id if ann else None
    draft.base_label_key = ann.label_blob_key if ann else None
    draft.base_region_key = ann.region_blob_key if ann else None
    draft.base_classes = dict(ann.cell_classes or {}) if ann else {}
    draft.base_points = list(ann.points or []) if ann else []
    draft.source, draft.source_model_version_id = "manual", None
    draft.edits, draft.undone = [], []
    return draft


def restart(session: Session, draft: Draft, ann: Annotation | None) -> None:
    """Start the draft again from `ann` (its edits and redo list dropped)."""
    _based_on(draft, ann)
    session.flush()


def untouched(draft: Draft) -> bool:
    """Whether the draft shows just the version it builds on: no edits, or none since it
    was saved as that version."""
    if not draft.edits:
        return draft.source == "manual"
    return (draft.base_annotation_id is not None
            and draft.edits[-1].get("saved_as") == draft.base_annotation_id)


def only_auto_suggested(draft: Draft) -> bool:
    """Whether the draft holds nothing but the suggestion the workspace made on its own when
    the image opened (nobody has worked on it): it may follow a newer version like an
    untouched draft."""
    return bool(draft.edits) and all(e.get("auto") for e in draft.edits)


# ------------------------------------------------------------------ active editing time
# Events: opening the draft (the workspace), each edit, undo/redo, a suggestion or revert,
# and the save. The time between two consecutive events counts as active editing when it is
# at most IDLE_GAP_S; a longer pause counts nothing. `draft.activity` keeps the running sum
# since the last saved version and the time of the last event.
def activity_after(draft: Draft, now: float) -> dict:
    """`draft.activity` after an event at `now`."""
    act = draft.activity or {}
    last, seconds = act.get("last"), float(act.get("seconds") or 0.0)
    if last is not None and 0.0 <= now - float(last) <= IDLE_GAP_S:
        seconds += now - float(last)
    return {"last": now, "seconds": round(seconds, 3)}


def note_opened(session: Session, draft: Draft) -> None:
    """Opening the draft is an event. Written without bumping the draft's revision (the
    cached mask and the page's revision stay valid)."""
    activity = activity_after(draft, clock())
    session.execute(update(Draft.__table__).where(Draft.__table__.c.id == draft.id)
                    .values(activity=activity))
    set_committed_value(draft, "activity", activity)


def ensure_draft(session: Session, actor: Actor, image: Image) -> Draft:
    """The actor's draft of `image`, started from the newest annotation if there is none. An
    untouched draft follows newer annotations saved by others."""
    draft = find_draft(session, actor, image.id)
    latest = queries.newest_annotation(session, image.id)
    if draft is None:
        # Two first edits at once (the page sends callbacks in parallel; two web workers or
        # hosts): the unique (image, user) index lets one insert win, the other takes its row.
        try:
            with session.begin_nested():
                draft = _based_on(Draft(image_id=image.id, user_id=actor.id), latest)
                session.add(draft)
                session.flush()
        except IntegrityError:
            draft = find_draft(session, actor, image.id)
            if draft is None:
                raise
    elif ((untouched(draft) or only_auto_suggested(draft))
          and draft.base_annotation_id != (latest.id if latest else None)):
        _based_on(draft, latest)
        session.flush()
    return draft


# ------------------------------------------------------------------ the current mask
CACHE_STATES = 3        # cached states per draft while it is edited (undo, redo: no replay)


def _state(draft: Draft) -> str:
    """What the draft's mask is made of: its base and its edits (a replay of the same base
    and edits gives the same mask). Undo goes back to a state cached a moment ago. A save
    marks an edit `saved_as` without changing the mask: the state stays, and its cached
    file with it (writing 16 MB again cost a 2048² save about 8 ms)."""
    edits = [e if "saved_as" not in e else {k: v for k, v in e.items() if k != "saved_as"}
             for e in draft.edits or []]
    text = json.dumps([_draft_key(draft), edits], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cache_dir(config: Config, draft: Draft) -> Path:
    return config.cache_dir / "drafts" / str(draft.id)


def _cache_path(config: Config, draft: Draft) -> Path:
    """The cached mask of the draft's current state. Each state has its own file: a rename
    onto a new name costs about 0.5 ms, where replacing the previous file made ext4 flush
    its data first (auto_da_alloc), about 8 ms on every edit and save."""
    return _cache_dir(config, draft) / f"{_state(draft)}.mask"


def _keep_cache(path: Path, canvas: Canvas, keep: int = CACHE_STATES) -> None:
    """Cache a draft's current state at `path` (`_cache_path`); keep the draft's `keep`
    newest states."""
    try:
        os.utime(path)                    # the same state again (an undo): now the newest
    except FileNotFoundError:             # (or removed a moment ago by another request)
        _write_cache(path, canvas, path.stem)
    states = sorted(path.parent.glob("*.mask"), key=_mtime, reverse=True)
    for old in states[keep:]:
        if old.name != path.name:
            old.unlink(missing_ok=True)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:                       # removed meanwhile by another request
        return 0


def _drop_cache(config: Config, draft: Draft) -> None:
    shutil.rmtree(_cache_dir(config, draft), ignore_errors=True)


def _snapshot_canvas(store: BlobStore, label_key: str | None, region_key: str | None,
                     classes: dict | None, points: list | None,
                     shape_yx: tuple[int, int]) -> Canvas:
    if label_key:
        labels = array_cache.labels.get(store, label_key)       # (read-only: copied below)
        labels = (labels if labels.ndim == 2 else labels.reshape(-1, *labels.shape[-2:])[0])
        canvas = Canvas(labels.astype(np.int32))
    else:
        canvas = Canvas.blank(shape_yx)
    canvas.classes = {int(k): int(v) for k, v in (classes or {}).items()}
    if region_key:
        canvas.region = get_array(store, region_key).astype(bool)
    canvas.points = [list(p) for p in points or []]
    return canvas


def _base_canvas(store: BlobStore, draft: Draft, shape_yx: tuple[int, int]) -> Canvas:
    return _snapshot_canvas(store, draft.base_label_key, draft.base_region_key,
                            draft.base_classes, draft.base_points, shape_yx)


def _last_base(edits: list[dict]) -> int:
    """Index of the newest `base` edit, or -1."""
    for i in range(len(edits) - 1, -1, -1):
        if edits[i].get("op") == BASE_OP:
            return i
    return -1


def _replay(store: BlobStore, draft: Draft, shape_yx: tuple[int, int]) -> Canvas:
    """Base (or the newest snapshot edit) + the edits after it."""
    start = _last_base(draft.edits)
    if start < 0:
        canvas = _base_canvas(store, draft, shape_yx)
    else:
        snap = draft.edits[start]
        canvas = _snapshot_canvas(store, snap.get("labels"), snap.get("region"),
                                  snap.get("classes"), snap.get("points"), shape_yx)
    return apply_edits(canvas, draft.edits[start + 1:])


def _snapshot_edit(label_key: str | None, region_key: str | None, classes: dict,
                   points: list, source: str, model_version_id: int | None) -> dict:
    return {"op": BASE_OP, "labels": label_key, "region": region_key,
            "classes": {str(k): int(v) for k, v in (classes or {}).items()},
            "points": [list(p) for p in points or []], "source": source,
            "model": model_version_id}


def source_of(session: Session, draft: Draft) -> tuple[str, int | None]:
    """(source, model version id) of what the draft started from: the newest snapshot edit
    (a model suggestion: "model-corrected"), else the draft's own base."""
    start = _last_base(draft.edits)
    if start < 0:
        return draft.source, draft.source_model_version_id
    snap = draft.edits[start]
    model = snap.get("model")
    if model is not None and session.get(ModelVersion, model) is None:
        model = None                  # the model was deleted since
    return snap.get("source") or "manual", model


@dataclass(frozen=True)
class Start:
    """What the annotator started from, for the effort of a save: a model suggestion, a
    saved version, or nothing."""
    kind: str                       # "suggestion" | "version" | "empty"
    label_key: str | None
    classes: dict
    points: list
    model_version_id: int | None    # the suggestion's model


def start_of(session: Session, draft: Draft) -> Start:
    """The newest snapshot edit (a suggestion, or "revert to saved") when no save of this
    draft came after it; else the version the draft builds on (the one it was opened on or
    last saved as), else an empty start."""
    start = _last_base(draft.edits)
    # undone edits came after every edit still in the list: one saved before it was undone
    # means this draft was saved after the snapshot, and the version it was saved as counts
    saved_since = any(e.get("saved_as") for e in [*draft.edits[max(start, 0):],
                                                  *(draft.undone or [])])
    if start >= 0 and not saved_since:
        snap = draft.edits[start]
        suggested = snap.get("source") == "model-corrected"
        model = snap.get("model") if suggested else None
        if model is not None and session.get(ModelVersion, model) is None:
            model = None
        return Start("suggestion" if suggested else "version", snap.get("labels"),
                     dict(snap.get("classes") or {}), list(snap.get("points") or []), model)
    ann = (session.get(Annotation, draft.base_annotation_id)
           if draft.base_annotation_id is not None else None)
    if ann is None:
        return Start("empty", None, {}, [], None)
    return Start("version", ann.label_blob_key, dict(ann.cell_classes or {}),
                 list(ann.points or []), None)


CACHE_MAGIC = b"CELLLOOP-DRAFT-1\n"


def _write_cache(path: Path, canvas: Canvas, state: str) -> None:
    """A draft's mask in one state as one flat file: a JSON header (the state, classes,
    points, the arrays' layout), the labels (uint16 when they fit) and the region as bits.
    No zip and no checksum: one is written on every edit (an npz of a 2048² int32 mask took
    about 50 ms to write), and a damaged or stale file is only a cache miss."""
    labels = canvas.labels
    small = (labels.size and int(labels.min()) >= 0 and int(labels.max()) <= 65535)
    stored = labels.astype(np.uint16) if small else labels
    region = None if canvas.region is None else np.packbits(canvas.region.astype(bool))
    header = json.dumps({"state": state, "classes": canvas.classes,
                         "points": canvas.points, "dtype": stored.dtype.str,
                         "shape": list(labels.shape), "region": region is not None}).encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(CACHE_MAGIC + len(header).to_bytes(8, "little") + header)
        np.ascontiguousarray(stored).tofile(f)
        if region is not None:
            region.tofile(f)


def _read_cache(path: Path, state: str) -> Canvas | None:
    try:
        data = path.read_bytes()
        if not data.startswith(CACHE_MAGIC):
            return None
        at = len(CACHE_MAGIC)
        size = int.from_bytes(data[at:at + 8], "little")
        meta = json.loads(data[at + 8:at + 8 + size])
        if meta["state"] != state:
            return None
        at += 8 + size
        shape, dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
        count = int(np.prod(shape))
        labels = np.frombuffer(data, dtype, count, at).reshape(shape).astype(np.int32)
        region = None
        if meta["region"]:
            bits = np.frombuffer(data, np.uint8, (count + 7) // 8, at + count * dtype.itemsize)
            region = np.unpackbits(bits, count=count).reshape(shape).astype(bool)
        return Canvas(labels, {int(k): v for k, v in meta["classes"].items()}, region,
                      meta["points"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _draft_key(draft: Draft) -> str:
    """What a draft's mask starts from (ids can be reused by SQLite, so more than the id)."""
    return (f"{draft.image_id}:{draft.user_id}:{draft.base_label_key}:"
            f"{draft.base_region_key}:{draft.source_model_version_id}")


def canvas_for(config: Config, store: BlobStore, draft: Draft, image: Image) -> Canvas:
    """The draft's current state (from the cache when it is up to date)."""
    path = _cache_path(config, draft)
    cached = _read_cache(path, path.stem)
    if cached is not None:
        return cached
    canvas = _replay(store, draft, tuple(image.shape[-2:]))
    _keep_cache(path, canvas)
    return canvas


def annotation_canvas(store: BlobStore, ann: Annotation | None, image: Image) -> Canvas:
    """A saved annotation as a canvas (for people who only look)."""
    fake = _based_on(Draft(), ann)
    return _base_canvas(store, fake, tuple(image.shape[-2:]))


def _result(draft: Draft, canvas: Canvas, label: int | None) -> EditResult:
    return EditResult(draft.rev, label, count_labels(canvas.labels),
                      len(canvas.points), bool(draft.edits), bool(draft.undone))


def _commit_rev(session: Session, draft: Draft) -> None:
    draft.updated_at = utcnow()
    try:
        session.flush()
    except StaleDataError:
        raise Conflict("Another edit of this image was saved at the same moment; "
                       "reload the page.") from None


# ------------------------------------------------------------------ validating input
def _clean_shape(shape) -> dict:
    if not isinstance(shape, dict) or shape.get("type") not in SHAPE_TYPES:
        raise ValidationError("Draw a path, rectangle or ellipse.")
    return {k: shape[k] for k in SHAPE_KEYS if k in shape}


def clean_edit(edit: dict, project: Project) -> dict:
    """A copy of `edit` with only known fields, checked types and ranges."""
    if not isinstance(edit, dict) or edit.get("op") not in EDIT_OPS:
        raise ValidationError("Unknown edit.")
    op = edit["op"]
    out: dict = {"op": op}
    try:
        if op in ("add", "brush", "erase", "replace", "region"):
            out["shape"] = _clean_shape(edit.get("shape"))
        if op in ("brush", "erase") and edit.get("width") is not None:
            out["width"] = float(np.clip(float(edit["width"]), 1, MAX_WIDTH))
        if op in ("brush", "replace", "delete", "class") and edit.get("label") is not None:
            out["label"] = int(edit["label"])
        if op in ("add", "class", "point"):
            cls = int(edit.get("cls") or 0)
            if not 0 <= cls < max(1, len(project.classes or [])):
                raise ValidationError("Unknown cell class.")
            out["cls"] = cls
        if op in ("point", "unpoint"):
            out["x"], out["y"] = float(edit["x"]), float(edit["y"])
        if op == "check":
            labels = edit.get("labels")
            if not isinstance(labels, list) or not 0 < len(labels) <= MAX_CHECKED:
                raise ValidationError("Name the cells to accept.")
            out["labels"] = sorted({int(v) for v in labels if int(v) >= 1})
    except (TypeError, ValueError, KeyError):
        raise ValidationError("Malformed edit.") from None
    if op in ("replace", "delete", "class") and out.get("label", 0) < 1:
        raise ValidationError("Select a cell first.")
    return out


# ------------------------------------------------------------------ verbs
def _editable(session: Session, actor: Actor, config: Config, image_id: int) -> Image:
    image = image_for(session, actor, image_id, "annotate")
    leases.renew(session, actor, config, image.id)
    # the image row locked (PostgreSQL; a no-op on SQLite): two edits of one draft (two tabs)
    # go one after the other instead of one failing on the draft's version; a fresh lease is
    # no longer written, and that write used to take this lock
    lock_row(session, Image, image.id)
    return image


def record_edit(session: Session, actor: Actor, config: Config, store: BlobStore,
                image_id: int, edit: dict) -> EditResult:
    """Apply one edit to the actor's draft and keep it. An "add" (or a brush stroke with no
    cell selected) creates a cell with a new id; the edit result names it."""
    image = _editable(session, actor, config, image_id)
    project = session.get(Project, image.project_id)
    edit = clean_edit(edit, project)
    draft = ensure_draft(session, actor, image)
    if len(draft.edits) >= MAX_EDITS:
        raise ValidationError("This draft has too many edits; save it to continue.")
    canvas = canvas_for(config, store, draft, image)
    if edit["op"] == "add" or (edit["op"] == "brush" and not edit.get("label")):
        if edit["op"] == "brush":
            edit["op"], edit["cls"] = "add", 0
        edit["label"] = canvas.next_label
    try:
        apply_edit(canvas, edit)
    except ShapeError as exc:
        raise ValidationError(str(exc)) from None
    draft.edits = [*draft.edits, edit]
    draft.undone = []
    draft.activity = activity_after(draft, clock())
    if image.status == ImageStatus.new:
        image.status = ImageStatus.in_progress
    _commit_rev(session, draft)
    _keep_cache(_cache_path(config, draft), canvas)
    save_prep.prepare_later(store, start_of(session, draft).label_key)   # for the save
    label = edit.get("label") if edit["op"] in ("add", "brush", "replace", "class") else None
    return _result(draft, canvas, label)


def undo(session: Session, actor: Actor, config: Config, store: BlobStore, image_id: int,
         redo: bool = False) -> EditResult:
    """Take back the last edit (or, with `redo`, put back the last one taken back)."""
    image = _editable(session, actor, config, image_id)
    draft = ensure_draft(session, actor, image)
    source, target = (draft.undone, draft.edits) if redo else (draft.edits, draft.undone)
    if not source:
        raise ValidationError("Nothing to redo." if redo else "Nothing to undo.")
    moved = source[-1]
    source, target = source[:-1], [*target, moved]
    draft.edits, draft.undone = (target, source) if redo else (source, target)
    draft.activity = activity_after(draft, clock())
    _commit_rev(session, draft)
    return _result(draft, canvas_for(config, store, draft, image), None)


def cell_at(session: Session, actor: Actor, config: Config, store: BlobStore, image_id: int,
            x: float, y: float) -> tuple[int, str | None, int]:
    """The cell under figure point (x, y) in the actor's view: (label, outline path, class);
    label 0 when there is no cell there."""
    image = image_for(session, actor, image_id, "view")
    canvas = current_canvas(session, actor, config, store, image)
    r, c = int(np.floor(y)), int(np.floor(x))
    if not (0 <= r < canvas.labels.shape[0] and 0 <= c < canvas.labels.shape[1]):
        return 0, None, 0
    label = int(canvas.labels[r, c])
    if label == 0:
        return 0, None, 0
    return label, cell_polygon(canvas.labels, label), int(canvas.classes.get(label, 0))


def current_canvas(session: Session, actor: Actor, config: Config, store: BlobStore,
                   image: Image) -> Canvas:
    """What the actor sees: their draft if they have one, else the newest annotation."""
    draft = find_draft(session, actor, image.id)
    if draft is not None:
        return canvas_for(config, store, draft, image)
    return annotation_canvas(store, queries.newest_annotation(session, image.id), image)


def _push_snapshot(session: Session, config: Config, store: BlobStore, draft: Draft,
                   image: Image, snapshot: dict) -> EditResult:
    """Append a snapshot edit (undoable like any other) and show its state."""
    if len(draft.edits) >= MAX_EDITS:
        raise ValidationError("This draft has too many edits; save it to continue.")
    draft.edits = [*draft.edits, snapshot]
    draft.undone = []
    draft.activity = activity_after(draft, clock())
    if image.status == ImageStatus.new and not snapshot.get("auto"):
        image.status = ImageStatus.in_progress   # (a suggestion made on opening: still new)
    _commit_rev(session, draft)
    return _result(draft, canvas_for(config, store, draft, image), None)


def newest_snapshot(draft: Draft | None) -> dict | None:
    """The draft's newest snapshot edit (suggestion, revert), or None."""
    if draft is None or not draft.edits:
        return None
    start = _last_base(draft.edits)
    return draft.edits[start] if start >= 0 else None


def note_on_snapshot(session: Session, config: Config, store: BlobStore, image: Image,
                     draft: Draft, labels_key: str, note: dict) -> EditResult | None:
    """Add server-made facts to the newest snapshot edit (no pixel changes; e.g. the
    per-cell uncertainty of a suggestion, computed after it was shown) when that snapshot
    still shows `labels_key`; None when the draft has moved on (another suggestion, undone)."""
    start = _last_base(draft.edits)
    if start < 0 or draft.edits[start].get("labels") != labels_key:
        return None
    draft.edits = [*draft.edits[:start], {**draft.edits[start], **note},
                   *draft.edits[start + 1:]]
    _commit_rev(session, draft)
    return _result(draft, canvas_for(config, store, draft, image), None)


def _region_key(store: BlobStore, canvas: Canvas) -> str | None:
    return None if canvas.region is None else put_array(store, canvas.region.astype(np.uint8))


def use_suggestion(session: Session, actor: Actor, config: Config, store: BlobStore,
                   image_id: int, auto: bool = False) -> EditResult:
    """Replace the cells on screen by the active model's prediction (cells become editable).
    The annotated region and the points stay; Undo brings back the cells replaced. `auto`:
    made by the workspace on opening an untouched image (the image stays "new", and the
    draft still follows versions others save until someone edits it)."""
    from app.services import counting, prediction
    image = _editable(session, actor, config, image_id)
    active = model_versions.active_version(session, image.project_id)
    points_project = counting.is_points_project(session.get(Project, image.project_id))
    end_transaction(session)      # commit the lease now: no transaction across inference
    if counting.is_counting(active):
        return _suggest_points(session, actor, config, store, image, auto)
    if points_project:            # an outline model in a counting project: its cells' centres
        return _suggest_centres(session, actor, config, store, image, auto)
    # on opening, a cached prediction is taken as it is (scored or not): no model load
    predicted = (prediction.suggest(session, actor, store, config, image.id, score_cells=False)
                 if auto else prediction.suggest(session, actor, store, config, image.id))
    labels = predicted.labels
    if labels.ndim == 3:
        labels = labels[0]
    draft = ensure_draft(session, actor, image)
    current = canvas_for(config, store, draft, image)
    cells, classes = getattr(predicted, "cells", None), {}
    if current.region is not None:      # annotating a region: the model's cells there only
        labels, offset = suggest_in_region(labels, current.labels, current.region)
        classes = dict(current.classes)
        if cells and isinstance(cells.get("cells"), dict):
            present = set(np.unique(labels).tolist())
            cells = {**cells, "cells": {str(int(k) + offset): v for k, v in
                                        cells["cells"].items() if int(k) + offset in present}}
    snapshot = _snapshot_edit(put_array(store, labels), _region_key(store, current), classes,
                              current.points, "model-corrected", predicted.model_version_id)
    if cells:                           # per-cell uncertainty (app.services.cell_review)
        snapshot["uncertainty"] = cells
    return _push_snapshot(session, config, store, draft, image,
                          {**snapshot, "auto": True} if auto else snapshot)


def suggest_in_region(model: np.ndarray, current: np.ndarray, region: np.ndarray
                      ) -> tuple[np.ndarray, int]:
    """A suggestion for annotating `region`: the cells on screen stay (cells saved with an
    earlier region), and the model's cells that reach into the region are added where they
    touch none of them. The model's labels are shifted by the returned offset (the largest
    label on screen) so they stay apart from the cells kept."""
    current = np.maximum(current, 0)
    offset = int(current.max(initial=0))
    wanted = np.zeros(int(model.max(initial=0)) + 1, bool)
    wanted[np.unique(model[region])] = True
    wanted[np.unique(model[current > 0])] = False
    wanted[0] = False
    keep = wanted[model]
    return np.where(keep, model.astype(np.int64) + offset, current).astype(np.int32), offset


def _suggest_points(session: Session, actor: Actor, config: Config, store: BlobStore,
                    image: Image, auto: bool) -> EditResult:
    """A counting model's suggestion: its points replace the points on screen (outlines and
    the annotated region stay); each point's confidence travels with the snapshot."""
    from app.services import prediction
    found = prediction.suggest_points(session, actor, store, config, image.id)
    draft = ensure_draft(session, actor, image)
    current = canvas_for(config, store, draft, image)
    snapshot = _snapshot_edit(put_array(store, current.labels), _region_key(store, current),
                              dict(current.classes or {}), found.points, "model-corrected",
                              found.model_version_id)
    snapshot["point_confidence"] = found.confidence
    return _push_snapshot(session, config, store, draft, image,
                          {**snapshot, "auto": True} if auto else snapshot)


def _suggest_centres(session: Session, actor: Actor, config: Config, store: BlobStore,
                     image: Image, auto: bool) -> EditResult:
    """A counting project whose active model draws outlines (e.g. the built-in nuclei model
    it started from): one point at the centre of each of the model's cells replaces the
    points on screen, so what is saved is counted. Outlines already on screen and the
    annotated region stay; a point's cell-level uncertainty is not carried (no unsure
    rings), and the empty `point_confidence` marks the snapshot as points, not cells to
    score."""
    from app.services import prediction
    predicted = prediction.suggest(session, actor, store, config, image.id, score_cells=False)
    labels = predicted.labels[0] if predicted.labels.ndim == 3 else predicted.labels
    points = [[x, y, 0] for x, y in cell_centres(labels)]
    draft = ensure_draft(session, actor, image)
    current = canvas_for(config, store, draft, image)
    snapshot = _snapshot_edit(put_array(store, current.labels), _region_key(store, current),
                              dict(current.classes or {}), points, "model-corrected",
                              predicted.model_version_id)
    snapshot["point_confidence"] = []
    return _push_snapshot(session, config, store, draft, image,
                          {**snapshot, "auto": True} if auto else snapshot)


def cell_centres(labels: np.ndarray) -> list[tuple[float, float]]:
    """(x, y) of each cell's centroid in image coordinates (pixel i spans [i, i + 1), as
    clicks do), or of the pixel deepest inside the cell when the centroid falls outside it
    (a crescent): a point always lands on its own cell."""
    from scipy import ndimage
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return []
    found = ndimage.center_of_mass(np.ones(labels.shape, np.float32), labels, ids)
    off = [j for j, (k, (cy, cx)) in enumerate(zip(ids.tolist(), found))
           if labels[int(round(cy)), int(round(cx))] != k]
    if off:                       # one pass for all of them: the deepest pixel of each
        depth = ndimage.distance_transform_edt(labels > 0)
        deepest = ndimage.maximum_position(depth, labels, ids[off])
        found = list(found)
        for j, position in zip(off, deepest):
            found[j] = position
    return [(round(float(cx) + 0.5, 2), round(float(cy) + 0.5, 2)) for cy, cx in found]


def _same_canvas(a: Canvas, b: Canvas) -> bool:
    (la, ca), (lb, cb) = finish(a), finish(b)
    region_a = None if a.region is None else a.region.astype(bool)
    region_b = None if b.region is None else b.region.astype(bool)
    return (np.array_equal(la, lb) and ca == cb and a.points == b.points
            and (region_a is None) == (region_b is None)
            and (region_a is None or np.array_equal(region_a, region_b)))


def revert_to_saved(session: Session, actor: Actor, config: Config, store: BlobStore,
                    image_id: int) -> tuple[EditResult, int]:
    """Put the newest saved version back on screen, as an edit (Undo returns to the edits
    made since). Returns (the draft's state, the version number)."""
    image = _editable(session, actor, config, image_id)
    latest = queries.newest_annotation(session, image.id)
    if latest is None:
        raise ValidationError("Nothing has been saved for this image yet.")
    draft = ensure_draft(session, actor, image)
    saved = annotation_canvas(store, latest, image)
    if _same_canvas(canvas_for(config, store, draft, image), saved):
        raise ValidationError(f"Nothing to revert: this is saved version {latest.version}.")
    result = _push_snapshot(session, config, store, draft, image, _snapshot_edit(
        latest.label_blob_key, latest.region_blob_key, latest.cell_classes or {},
        latest.points or [], "manual", None))
    return result, latest.version


def checkpoint(session: Session, config: Config, draft: Draft, saved: Annotation,
               canvas: Canvas) -> None:
    """After the draft was saved as `saved` (or found equal to it): the draft now builds on
    that version and keeps its edits, so Undo still reaches behind the save. A long history
    (over MAX_EDITS / 2) is folded into the saved version instead."""
    if not draft.edits or len(draft.edits) > MAX_EDITS // 2:
        _drop_cache(config, draft)
        _based_on(draft, saved)
        _commit_rev(session, draft)
        return
    draft.edits = [*draft.edits[:-1], {**draft.edits[-1], "saved_as": saved.id}]
    draft.base_annotation_id = saved.id
    _commit_rev(session, draft)
    _keep_cache(_cache_path(config, draft), canvas, keep=1)   # one state stays once saved


def counts(session: Session, actor: Actor, config: Config, store: BlobStore,
           image_id: int) -> tuple[int, int]:
    """(cells, points) the actor sees: of their draft, else of the newest saved version."""
    image = image_for(session, actor, image_id, "view")
    draft = find_draft(session, actor, image.id)
    if draft is None:
        latest = queries.newest_annotation(session, image.id)
        return (latest.n_cells or 0, len(latest.points or [])) if latest else (0, 0)
    canvas = canvas_for(config, store, draft, image)
    return count_labels(canvas.labels), len(canvas.points)


def discard(session: Session, actor: Actor, config: Config, image_id: int) -> None:
    """Throw the draft away (the page then shows the newest saved version)."""
    image = image_for(session, actor, image_id, "view")
    draft = find_draft(session, actor, image.id)
    if draft is not None:
        _drop_cache(config, draft)
        session.delete(draft)
        session.flush()


UNSURE_POINT = 0.5     # a counting model's point under this confidence is shown as unsure


def unsure_points(draft: Draft | None, points: list) -> list[bool] | None:
    """Per point on screen, whether the counting model that suggested it was unsure of it
    (its confidence, the share of MC-dropout samples that find a cell there, is under
    UNSURE_POINT); points a person added are not. None: no counting suggestion."""
    snapshot = newest_snapshot(draft)
    confidence = (snapshot or {}).get("point_confidence")
    if not confidence:
        return None

    def key(p):
        return round(float(p[0]), 2), round(float(p[1]), 2)
    known = {key(p): float(c) for p, c in zip(snapshot.get("points") or [], confidence)}
    return [known.get(key(p), 1.0) < UNSURE_POINT for p in points]


def toggle_point(session: Session, actor: Actor, config: Config, store: BlobStore,
                 image_id: int, x: float, y: float, cls: int = 0) -> EditResult:
    """Counting mode: a click adds a point, a click on an existing point removes it."""
    image = image_for(session, actor, image_id, "annotate")
    canvas = current_canvas(session, actor, config, store, image)
    unsure = unsure_points(find_draft(session, actor, image.id), canvas.points) or []
    near = any(np.hypot(p[0] - float(x), p[1] - float(y)) <= point_pick_radius(
        canvas.labels.shape, unsure=k < len(unsure) and unsure[k])
        for k, p in enumerate(canvas.points))
    return record_edit(session, actor, config, store, image.id,
                       {"op": "unpoint" if near else "point", "x": x, "y": y, "cls": cls})

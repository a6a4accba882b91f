"""Annotation effort of a project: how the model's validation F1 grew with the corrections
and the minutes of active editing that went into it.

Every version saved from a draft records its effort (`Annotation.effort`, written by
`app.services.annotations.save`; `app.imaging.effort` counts the cells). Imported versions
carry none and count nothing here."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.permissions import Actor, require
from app.tables import Annotation, Image, ModelVersion

COUNTS = ("added", "deleted", "reshaped", "kept")


@dataclass(frozen=True)
class EffortPoint:
    """One trained model version: its validation F1 and the effort saved before it."""
    model_version_id: int
    created_at: dt.datetime
    f1: float | None
    corrections: int            # added + deleted + reshaped cells, summed over versions
    minutes: float              # active editing minutes, summed
    n_versions: int             # saved versions with an effort record


@dataclass(frozen=True)
class EffortCurve:
    points: list[EffortPoint]   # oldest model first (ensemble members left out)
    corrections: int            # project totals, over every version saved so far
    minutes: float
    n_versions: int
    counts: dict                # totals of added, deleted, reshaped, kept


def _corrections(effort: dict) -> int:
    if "corrections" in effort:
        return int(effort["corrections"] or 0)
    return int(sum(int(effort.get(k) or 0) for k in ("added", "deleted", "reshaped")))


def effort_curve(session: Session, actor: Actor, project_id: int) -> EffortCurve:
    """Per trained model version (oldest first; ensemble members are parts of their main
    version and left out): validation F1, and the cumulative corrections and active minutes
    of all versions saved before that model was created; plus the project's totals."""
    require(session, actor, project_id, "view")
    rows = session.execute(
        select(Annotation.created_at, Annotation.effort).join(Image)
        .where(Image.project_id == project_id)
        .order_by(Annotation.created_at, Annotation.id)).all()
    saved = [(at, e) for at, e in rows if isinstance(e, dict)]
    models = session.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id)
                             .order_by(ModelVersion.created_at, ModelVersion.id)).all()
    points, i, corrections, seconds = [], 0, 0, 0.0
    for mv in models:                     # both oldest first: one pass over the versions
        while i < len(saved) and saved[i][0] <= mv.created_at:
            corrections += _corrections(saved[i][1])
            seconds += float(saved[i][1].get("active_seconds") or 0)
            i += 1
        if (mv.settings or {}).get("ensemble_of"):
            continue
        f1 = (mv.metrics or {}).get("f1")
        points.append(EffortPoint(mv.id, mv.created_at, None if f1 is None else float(f1),
                                  corrections, round(seconds / 60, 2), i))
    efforts = [e for _, e in saved]
    return EffortCurve(
        points, sum(_corrections(e) for e in efforts),
        round(sum(float(e.get("active_seconds") or 0) for e in efforts) / 60, 2),
        len(efforts), {k: sum(int(e.get(k) or 0) for e in efforts) for k in COUNTS})

"""The learning loop, in one place: accepted annotation -> (every K) retrain -> rescore.

1. A reviewer accepts an annotation: `annotations.review` calls `on_annotation_accepted`,
   which starts a training job (fine-tuning, short time budget, `rescore=True`) once K
   annotations were accepted since the active model (K = the project's `retrain_after`;
   0 switches the loop off), unless a training or scoring job is already queued or running.
2. The training job ends: its handler (`app.jobs.handlers.train`) calls `after_training`,
   which submits a scoring job, as the user who started the training, when the new model
   was activated (a model that was not activated ranks nothing). Any training does so when
   the strategy needs no model (`ranks_without_model`): scores belong to the active model,
   so without it a new model would leave the queue unranked until the next scoring.
3. The scoring job writes Score rows; the annotation queue (`leases`) serves the images in
   their order.
4. An import into a project with a model and a strategy that needs none (random,
   stratified): `after_import` ranks the pool at once, so the first image (or region) served
   is already the one the strategy picks. A strategy that runs the model waits for the next
   retraining (or the Learning page's rescoring): scoring a large import under MC dropout
   would hold the project's training for a long time on a CPU.

The loop's settings (strategy, MC passes, ensemble size, batch, K) are read and written here
(`loop_settings`, `set_settings`); their defaults and limits live in `project_settings`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, PermissionDenied
from app.permissions import SYSTEM, Actor, require
from app.services import jobs, model_versions, scoring, training
from app.services.project_settings import (RETRAIN_MINUTES, LoopSettings, ProjectSettings,
                                           clean_loop)
from app.states import ACTIVE_JOB_STATES, JobState, ReviewState
from app.tables import Annotation, Image, Job, Project, User

log = logging.getLogger(__name__)
LOOP_KINDS = ("train", "score")       # a retraining waits until none of these is active


def loop_settings(project: Project) -> LoopSettings:
    """The project's loop settings (stored values over the defaults)."""
    return ProjectSettings.of(project).loop


def set_settings(session: Session, actor: Actor, project_id: int, changes: dict,
                 enqueue: Callable[[int], None] | None = None) -> dict:
    """Owners choose the strategy and its settings; a new strategy (or number of MC passes)
    rescores the pool when there is an active model."""
    project = require(session, actor, project_id, "manage")
    current = loop_settings(project)
    clean = clean_loop(current, changes)
    if (project.settings or {}).get("annotation_mode") == "points":
        clean = dataclasses.replace(clean, unit="image")   # counting: whole images only
    project.settings = {**(project.settings or {}), "active_learning": clean.as_dict()}
    session.flush()
    rescore = (any(getattr(clean, k) != getattr(current, k)
                   for k in ("strategy", "passes", "unit"))
               or (clean.unit == "region" and clean.region != current.region))
    if rescore and enqueue is not None and model_versions.active_version(session, project_id):
        scoring.start_scoring(session, actor, project_id, enqueue)
    return clean.as_dict()


def accepted_since_model(session: Session, project_id: int) -> int:
    """Accepted annotations newer than the active model (what retraining would add)."""
    active = model_versions.active_version(session, project_id)
    query = select(func.count(Annotation.id)).join(Image).where(
        Image.project_id == project_id, Annotation.review_state == ReviewState.accepted)
    if active is not None:
        query = query.where(Annotation.created_at > active.created_at)
    return int(session.scalar(query) or 0)


def on_annotation_accepted(session: Session, actor: Actor, project_id: int,
                           enqueue: Callable[[int], None]) -> jobs.JobInfo | None:
    """Step 1: after K accepted annotations since the active model, start a training job
    that rescores the pool when it ends (unless a training or scoring job is already queued
    or running). Returns the job started, or None."""
    k = loop_settings(session.get(Project, project_id)).retrain_after
    if not k or accepted_since_model(session, project_id) < k:
        return None
    busy = session.scalar(select(Job.id).where(Job.project_id == project_id,
                                               Job.kind.in_(LOOP_KINDS),
                                               Job.state.in_(ACTIVE_JOB_STATES)))
    if busy is not None:
        return None
    info = training.start_training(
        session, actor, project_id,
        {"fine_tune": True, "rescore": True, "max_minutes": RETRAIN_MINUTES}, enqueue)
    log.info("project %s: %d accepted annotations -> training job %s", project_id, k, info.id)
    return info


def after_training(session: Session, project_id: int, user_id: int | None, activated: bool,
                   enqueue: Callable[[int], None]) -> dict:
    """Step 2: when the new model was activated, submit a scoring job as the user who
    started the training (`jobs.submit_job`: permission checked, one scoring job per
    project). A scoring job already queued or running is recorded, not an error: the
    training still succeeded. Returns what goes into the training job's result:
    {"scoring_job": id or None, "scoring_note": why not, when not}."""
    if not activated:
        return {"scoring_job": None, "scoring_note": "The new model was not activated: "
                                                     "nothing to rescore."}
    actor = SYSTEM if user_id is None else session.get(User, user_id)
    if actor is None:
        return {"scoring_job": None, "scoring_note": "The user who started the training no "
                                                     "longer exists: not rescored."}
    try:
        info = jobs.submit_job(session, actor, project_id, "score", {}, enqueue)
    except Conflict:
        session.rollback()
        busy = session.scalar(select(Job.id).where(
            Job.project_id == project_id, Job.kind == "score",
            Job.state.in_(ACTIVE_JOB_STATES)))
        return {"scoring_job": busy, "scoring_note": f"A scoring job (#{busy}) was already "
                                                     "queued or running."}
    except PermissionDenied as exc:
        session.rollback()
        return {"scoring_job": None, "scoring_note": f"Not rescored: {exc}"}
    return {"scoring_job": info.id}


def ranks_without_model(session: Session, project_id: int) -> bool:
    """Whether the project's strategy ranks without a model (random, stratified): cheap to
    rescore, so every new active model gets its ranking at once."""
    from models.strategies import CLASSES
    project = session.get(Project, project_id)
    strategy = CLASSES.get(loop_settings(project).strategy) if project is not None else None
    return strategy is not None and not strategy.needs_model


def after_import(session: Session, project_id: int, user_id: int | None, n_new: int,
                 enqueue: Callable[[int], None]) -> dict:
    """Step 4: after an import that added `n_new` unannotated images, rank the pool when the
    project has an active model and its strategy scores without one. The job runs as the
    importer when they may train (`score` is a training action), else as the system: an
    annotator's upload is ranked too, with the settings the owners chose, and ranking reads
    no model. A scoring job still queued reads the pool when it starts, so it is left to do
    it; one already running read the pool before these images (one scoring job per project:
    they wait for the next scoring). A training does not stand in (one started on the Models
    page rescores nothing): the scoring job runs after it. Returns what goes into the import
    job's result: {"scoring_job": id} or {"scoring_note": why not}, or {} when there is
    nothing to rank."""
    if (not n_new or model_versions.active_version(session, project_id) is None
            or not ranks_without_model(session, project_id)):
        return {}
    busy = session.execute(select(Job.id, Job.state).where(
        Job.project_id == project_id, Job.kind == "score",
        Job.state.in_(ACTIVE_JOB_STATES))).first()
    if busy is not None:
        return {"scoring_note": (
            f"Scoring job #{busy.id} is queued and ranks the new images too."
            if busy.state == JobState.queued else
            f"Scoring job #{busy.id} was running already: the new images are ranked at the "
            "next scoring.")}
    actor = SYSTEM if user_id is None else session.get(User, user_id)
    if actor is None:
        return {"scoring_note": "The user who imported no longer exists: not ranked."}
    try:
        require(session, actor, project_id, "train")
    except (PermissionDenied, NotFound):
        actor = SYSTEM
    try:       # submit_job commits (the import with it), also when it refuses
        info = jobs.submit_job(session, actor, project_id, "score", {}, enqueue)
    except Conflict:           # a scoring job submitted meanwhile: it reads the new images
        return {"scoring_note": "A scoring job was submitted meanwhile; it ranks the new "
                                "images too."}
    return {"scoring_job": info.id}

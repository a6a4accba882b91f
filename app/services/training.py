"""Training models for a project: start a training job, gather the annotated data, train
(from scratch or fine-tuning the active model), store the new version, and activate it unless
it is worse than the active model on the same validation images.

`train_project` is the work itself, a plain function with `progress` and `should_stop`
callables; the `train` job handler (`app.jobs.handlers.train`) calls it in the worker, then
hands the outcome to `learning_loop.after_training` (rescore when the new model was
activated). This module never imports app.jobs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Database
from app.errors import ValidationError
from app.permissions import Actor, require
from app.services import counting, jobs, model_versions, queries
from app.services.project_settings import ProjectSettings
from app.services.training_params import clean_params
from app.services.training_progress import Report, TrainingProgress
from app.tables import Annotation, Image, ModelVersion, Project
from storage.blobstore import BlobStore, get_array

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    images: list[np.ndarray]        # (C, Y, X)
    labels: list[np.ndarray]        # (Y, X)
    regions: list[np.ndarray | None]
    refs: list[dict]                # [{"image_id", "annotation_version"}]


def annotated_count(session: Session, project_id: int) -> int:
    return session.scalar(select(func.count(func.distinct(Annotation.image_id))).join(Image).where(
        *queries.included_images(project_id), queries.usable_annotation()))


def gather(session: Session, store: BlobStore, project_id: int,
           on_image: Callable[[int, int], None] | None = None) -> TrainingData:
    """The newest usable annotation of every live, non-excluded 2-D image;
    `on_image(done, total)` before the first image and after each one."""
    rows = session.execute(
        queries.newest_annotations(usable_only=True).add_columns(Image)
        .join(Image, Image.id == Annotation.image_id)
        .where(*queries.included_images(project_id)).order_by(Image.id)).all()
    rows = [(image, ann) for ann, image in rows]
    data = TrainingData([], [], [], [])
    for k, (image, ann) in enumerate(rows):
        if on_image is not None:
            on_image(k, len(rows))
        if image.shape[0] != 1:
            continue  # z-stacks are not trained on yet
        data.images.append(get_array(store, image.blob_key)[0])
        data.labels.append(get_array(store, ann.label_blob_key))
        data.regions.append(get_array(store, ann.region_blob_key).astype(bool)
                            if ann.region_blob_key else None)
        data.refs.append({"image_id": image.id, "annotation_version": ann.version})
    if on_image is not None:
        on_image(len(rows), len(rows))
    return data


def start_training(session: Session, actor: Actor, project_id: int, params: dict,
                   enqueue: Callable[[int], None]) -> jobs.JobInfo:
    """Queue a training job (reviewers and owners). One per project at a time."""
    project = require(session, actor, project_id, "train")
    params = clean_params(params)
    n = (counting.point_annotated_count(session, project_id)
         if counting.is_points_project(project) else annotated_count(session, project_id))
    if n == 0:
        raise ValidationError("Annotate at least one image before training.")
    return jobs.submit_job(session, actor, project_id, "train", params, enqueue)


def train_project(db: Database, store: BlobStore, project_id: int, user_id: int | None,
                  progress: Report, should_stop: Callable[[], bool], *,
                  fine_tune: bool = True, epochs: int | None = None,
                  max_minutes: float | None = None, seed: int = 0, threads: int = 0) -> dict:
    """Train a model on the project's annotated images, store it as a new version and
    activate it unless the active model does better on the same validation images.

    `progress(fraction, message, force)` reports; `should_stop()` between steps stops the
    work by raising `models.cancel.Cancelled`. Returns the job's result (model version,
    activated, reason, metrics, ensemble members, outcome)."""
    from models.inference import network_input
    from models.persist import model_to_bytes
    from models.training import (TrainConfig, calibration_count, calibration_pixels, evaluate,
                                 split, train_model)

    with db.session_scope() as session:
        points_project = counting.is_points_project(session.get(Project, project_id))
    if points_project:
        return counting.train_counting_project(
            db, store, project_id, user_id, progress, should_stop, fine_tune=fine_tune,
            epochs=epochs, max_minutes=max_minutes, seed=seed, threads=threads)
    tracker = TrainingProgress(progress)
    with db.session_scope() as session:
        project = session.get(Project, project_id)
        settings = ProjectSettings.of(project)
        training, loop = settings.training.as_dict(), settings.loop
        channels = [c["name"] for c in project.channels]
        classes = [c["name"] for c in project.classes]
        data = gather(session, store, project_id, on_image=tracker.loading)
        parent = model_versions.active_version(session, project_id)
        if counting.is_counting(parent):    # a points project switched to outlines
            parent = None
        parent_id = parent.id if parent else None
        init = model_versions.load(store, parent) if (fine_tune and parent) else None
        previous = model_versions.load(store, parent) if parent else None
    if not data.images:
        raise ValueError("There are no annotated images to train on.")
    if epochs:
        training["epochs"] = epochs
    cfg = TrainConfig(**{k: v for k, v in training.items() if k in TrainConfig.__annotations__},
                      seed=seed, max_seconds=max_minutes * 60 if max_minutes else None,
                      threads=threads)
    if (init is not None and not init.meta.get("input_mapping")
            and init.in_channels != data.images[0].shape[0]):
        init = None  # the channel layout changed; start from scratch (an input-mapped
        #              model, e.g. the built-in one, maps any image to its input channels)
    # the active model is compared on the same validation images; an input-mapped one (the
    # built-in model) reads any channel layout through its mapping
    comparable = previous is not None and (bool(previous.meta.get("input_mapping"))
                                           or previous.in_channels == data.images[0].shape[0])
    val_ids = split(len(data.images), cfg.val_fraction, cfg.seed)[1]
    calibrating = cfg.calibrate and not cfg.semantic and cfg.n_classes == 3
    ensemble = loop.strategy == "ensemble"
    tracker.plan(n_val=len(val_ids),
                 n_calibration=calibration_count(data.labels, calibration_pixels(cfg))
                 if calibrating else 0,
                 val_pixels=float(np.mean([data.labels[i].size for i in val_ids])),
                 step_pixels=cfg.batch * cfg.patch ** 2, compare=comparable,
                 members=loop.ensemble_size - 1 if ensemble else 0)
    result = train_model(data.images, data.labels, data.regions, cfg, init=init,
                         progress=tracker.epoch_done, on_step=tracker.event,
                         should_stop=should_stop,
                         meta={"channels": channels, "classes": classes})
    new_f1 = result.metrics.get("f1", result.metrics.get("dice", 0.0))
    old_f1 = None
    if comparable:
        val_x = [network_input(previous, data.images[i]) for i in result.val_ids]
        val_y = [data.labels[i] for i in result.val_ids]
        old = evaluate(previous, val_x, val_y, cfg, on_image=tracker.comparing)
        old_f1 = old.get("f1", old.get("dice", 0.0))
    activate = old_f1 is None or new_f1 >= old_f1
    reason = ("first model of the project" if old_f1 is None else
              f"validation {new_f1:.3f} vs active model {old_f1:.3f}: "
              + ("activated" if activate else "kept the active model (the new one is worse)"))
    tracker.saving()
    key = store.put_bytes(model_to_bytes(result.model))
    with db.session_scope() as session:
        mv = model_versions.add_version(
            session, project_id, activate, parent_id=parent_id if init else None,
            weights_blob_key=key, architecture=result.model.meta["architecture"],
            normalisation=result.model.meta["normalisation"],
            settings={**cfg.as_dict(), "pull": result.model.meta["train_config"]["pull"],
                      "fine_tuned_from": parent_id if init else None,
                      "postprocess": result.model.meta.get("postprocess", {})},
            metrics={**result.metrics, "previous_active": old_f1,
                     "seconds": round(result.seconds, 1), "steps": result.steps,
                     "stopped": result.stopped, "best_epoch": result.best_epoch},
            curve=result.history, training_data=data.refs, created_by_id=user_id)
        version_id = mv.id
    log.info("project %s: model %s trained (%s)", project_id, version_id, reason)
    members = (_train_members(db, store, project_id, user_id, data, cfg, version_id,
                              loop.ensemble_size - 1, should_stop, tracker)
               if ensemble else [])
    return {"model_version_id": version_id, "activated": activate, "reason": reason,
            "metrics": result.metrics, "n_images": len(data.images),
            "ensemble_members": members,
            "outcome": outcome(version_id, result, cfg, activate, old_f1, len(members))}


def outcome(version_id: int, result, cfg, activated: bool, old_score: float | None,
            n_members: int = 0) -> str:
    """What a finished training did, in one paragraph for the job's final state."""
    name = "Dice" if cfg.semantic else "F1"
    score = result.metrics.get("f1" if not cfg.semantic else "dice", 0.0)
    n_val = result.metrics.get("n_images", len(result.val_ids))
    epochs = len(result.history)
    why = {"time budget": f", stopped by the time budget of {cfg.max_seconds / 60:g} min"
                          if cfg.max_seconds else ", stopped by the time budget",
           "early-stopping": ", stopped early (no better validation score for "
                             f"{cfg.patience} epochs)"}.get(result.stopped, "")
    verdict = ("activated (the first model of the project)" if old_score is None else
               f"activated ({name} {score:.3f} vs {old_score:.3f} for the model that was "
               "active)" if activated else
               f"not activated: the active model scores {old_score:.3f} on the same images")
    return (f"Model #{version_id}: validation {name} {score:.3f} on {n_val} validation "
            f"image{'s' if n_val != 1 else ''}; {verdict}. Trained {epochs} of {cfg.epochs} "
            f"epochs ({result.steps} steps) in {result.seconds / 60:.1f} min{why}."
            + (f" {n_members} ensemble member(s) trained too." if n_members else ""))


def _train_members(db: Database, store: BlobStore, project_id: int, user_id: int | None,
                   data: TrainingData, cfg, version_id: int, n: int,
                   should_stop: Callable[[], bool],
                   tracker: TrainingProgress | None = None) -> list[int]:
    """Extra models for the ensemble strategy: same data and settings, other seeds, stored
    as versions that are never active (settings.ensemble_of = the main version)."""
    import dataclasses

    from models.persist import model_to_bytes
    from models.training import train_model
    ids = []
    for m in range(1, n + 1):
        if tracker is not None:
            tracker.start_member(m)
        member = train_model(data.images, data.labels, data.regions,
                             dataclasses.replace(cfg, seed=cfg.seed + 1000 * m),
                             should_stop=should_stop,
                             progress=tracker and tracker.epoch_done,
                             on_step=tracker and tracker.event).model
        with db.session_scope() as session:
            mv = ModelVersion(project_id=project_id, weights_blob_key=store.put_bytes(
                model_to_bytes(member)), architecture=member.meta["architecture"],
                normalisation=member.meta["normalisation"],
                settings={**cfg.as_dict(), "seed": cfg.seed + 1000 * m, "ensemble_of": version_id,
                          "pull": member.meta["train_config"]["pull"]},    # from scratch: 0
                metrics=dict(member.meta.get("metrics", {})), is_active=False,
                training_data=data.refs, created_by_id=user_id)
            session.add(mv)
            session.flush()
            ids.append(mv.id)
    return ids

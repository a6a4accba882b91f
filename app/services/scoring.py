"""Active learning in the app: the project's selection strategy, the scoring job that ranks
the unannotated pool under the active model, the ranked queue, uncertainty heat maps, and
retraining after every K accepted annotations.

Scoring writes Score rows (image, model version, strategy, value); the queue and the
annotation lease order only read them. Heat maps are cached as small float16 arrays in the
cache directory (recomputable, never the only copy of anything)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.config import Config
from app.errors import NotFound, ValidationError
from app.jobs.registry import job_kind
from app.permissions import Actor, require
from app.services import jobs, model_versions
from app.tables import Annotation, Image, Job, ModelVersion, Project, Score, utcnow
from app.services import queries
from storage.blobstore import get_array, open_blob_store

log = logging.getLogger(__name__)
STRATEGY_NAMES = ("random", "entropy", "bald", "ensemble", "diversity")
DEFAULTS = {"strategy": "entropy", "passes": 8, "ensemble_size": 3, "batch": 5,
            "retrain_after": 10}
LIMITS = {"passes": (2, 64), "ensemble_size": (2, 8), "batch": (1, 100),
          "retrain_after": (0, 10_000)}
HEATMAP_SIDE = 512
DIVERSITY_BONUS = 1000.0      # the chosen batch sorts before every other image
RETRAIN_MINUTES = 1.5         # time budget of the automatic fine-tuning in the loop


def settings_of(project: Project) -> dict:
    return {**DEFAULTS, **(project.settings or {}).get("active_learning", {})}


def set_settings(session: Session, actor: Actor, project_id: int, changes: dict,
                 enqueue: Callable[[int], None] | None = None) -> dict:
    """Owners choose the strategy and its settings; a new strategy rescores the pool."""
    project = require(session, actor, project_id, "manage")
    current = settings_of(project)
    clean = dict(current)
    for key, value in changes.items():
        if key == "strategy":
            if value not in STRATEGY_NAMES:
                raise ValidationError(f"Strategy must be one of {', '.join(STRATEGY_NAMES)}.")
            clean[key] = value
        elif key in LIMITS:
            lo, hi = LIMITS[key]
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ValidationError(f"{key} must be a whole number.") from None
            if not lo <= number <= hi:
                raise ValidationError(f"{key} must be between {lo} and {hi}.")
            clean[key] = number
        else:
            raise ValidationError(f"Unknown active-learning setting {key!r}.")
    project.settings = {**(project.settings or {}), "active_learning": clean}
    session.flush()
    rescore = (clean["strategy"] != current["strategy"] or clean["passes"] != current["passes"])
    if rescore and enqueue is not None and model_versions.active_version(session, project_id):
        start_scoring(session, actor, project_id, enqueue)
    return clean


def start_scoring(session: Session, actor: Actor, project_id: int,
                  enqueue: Callable[[int], None]) -> jobs.JobInfo:
    require(session, actor, project_id, "train")
    if model_versions.active_version(session, project_id) is None:
        raise ValidationError("Train a model first: scoring ranks images by its uncertainty.")
    return jobs.submit_job(session, actor, project_id, "score", {}, enqueue)


def pool_ids(session: Session, project_id: int) -> list[int]:
    """Live, usable images without any saved annotation (the unlabelled pool)."""
    return session.scalars(select(Image.id).where(
        *queries.live_images(project_id),
        Image.status.in_(("new", "in_progress")), Image.id.notin_(queries.annotated_image_ids()))
        .order_by(Image.id)).all()


def _heatmap_path(config: Config, mv_id: int, strategy: str, image_id: int) -> Path:
    return config.cache_dir / "uncertainty" / f"{mv_id}-{strategy}-{image_id}.npy"


def _store_heatmap(path: Path, heat: np.ndarray) -> None:
    from imaging.render import downsample, downsample_factor
    small = downsample(heat.astype(np.float32), downsample_factor(heat.shape, HEATMAP_SIDE))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, small.astype(np.float16))
    tmp.replace(path)


def ensemble_members(session: Session, store, active: ModelVersion, size: int) -> list:
    """The active model plus the members trained with it (settings.ensemble_of)."""
    members = session.scalars(select(ModelVersion).where(
        ModelVersion.project_id == active.project_id,
        ModelVersion.settings["ensemble_of"].as_integer() == active.id)
        .order_by(ModelVersion.id)).all()
    if len(members) + 1 < 2:
        raise ValidationError("The ensemble strategy needs ensemble members: train once with "
                              "this strategy selected (it trains the extra members).")
    return [model_versions.load(store, active)] + [model_versions.load(store, m)
                                                   for m in members[:size - 1]]


@job_kind("score")
def run_scoring(ctx) -> dict:
    """Score every unannotated image with the project's strategy under the active model."""
    from models.strategies import get_strategy

    store = open_blob_store(ctx.config.storage_url, ctx.config.blob_dir)
    with ctx.db.session_scope() as session:
        project = session.get(Project, ctx.project_id)
        settings = settings_of(project)
        active = model_versions.active_version(session, ctx.project_id)
        if active is None:
            raise ValueError("There is no active model to score with.")
        mv_id = active.id
        strategy = get_strategy(settings["strategy"], passes=settings["passes"], seed=mv_id)
        models = (ensemble_members(session, store, active, settings["ensemble_size"])
                  if strategy.needs_ensemble else
                  [model_versions.load(store, active)] if strategy.name != "random" else [])
        ids = pool_ids(session, ctx.project_id)
        blobs = dict(session.execute(select(Image.id, Image.blob_key)
                                     .where(Image.id.in_(ids))).all())
    scores = {}
    for n, image_id in enumerate(ids):
        ctx.progress(n / max(1, len(ids)), f"scored {n} of {len(ids)} images")
        pixels = get_array(store, blobs[image_id])[0] if strategy.name != "random" else None
        result = strategy.score(models, pixels, key=image_id)
        if result.heatmap is not None:
            _store_heatmap(_heatmap_path(ctx.config, mv_id, strategy.name, image_id),
                           result.heatmap)
        scores[image_id] = result
    values = {i: s.value for i, s in scores.items()}
    if strategy.name == "diversity":
        for rank, image_id in enumerate(strategy.select(scores, settings["batch"])):
            values[image_id] = DIVERSITY_BONUS + settings["batch"] - rank + values[image_id]
    with ctx.db.session_scope() as session:
        session.execute(delete(Score).where(Score.model_version_id == mv_id,
                                            Score.strategy == strategy.name))
        session.add_all([Score(image_id=i, model_version_id=mv_id, strategy=strategy.name,
                               value=float(v)) for i, v in values.items()])
    ctx.progress(1.0, f"scored {len(ids)} images", force=True)
    return {"model_version_id": mv_id, "strategy": strategy.name, "n_images": len(ids)}


@dataclass(frozen=True)
class QueueItem:
    image_id: int
    name: str
    status: str
    score: float | None
    leased_to: str | None


def queue(session: Session, actor: Actor, project_id: int, limit: int = 50) -> list[QueueItem]:
    """The unannotated images in the order the annotation queue serves them."""
    from app.services.leases import ranked_pool
    from app.tables import User
    require(session, actor, project_id, "view")
    rows = ranked_pool(session, project_id, limit)
    names = dict(session.execute(select(User.id, User.username)).all())
    now = utcnow()
    return [QueueItem(img.id, img.name, img.status, value,
                      names.get(img.assigned_to_id) if img.lease_expires_at and
                      img.lease_expires_at > now else None) for img, value in rows]


def heatmap(session: Session, actor: Actor, config: Config, image_id: int) -> np.ndarray:
    """The newest uncertainty map of an image under the active model and strategy."""
    from app.services.gallery import image_for
    image = image_for(session, actor, image_id, "view")
    project = session.get(Project, image.project_id)
    active = model_versions.active_version(session, project.id)
    if active is None:
        raise NotFound("No active model, so no uncertainty map.")
    path = _heatmap_path(config, active.id, settings_of(project)["strategy"], image.id)
    if not path.exists():
        raise NotFound("This image has not been scored by the active model yet.")
    return np.load(path).astype(np.float32)


def accepted_since_model(session: Session, project_id: int) -> int:
    """Accepted annotations newer than the active model (what retraining would add)."""
    active = model_versions.active_version(session, project_id)
    query = select(func.count(Annotation.id)).join(Image).where(
        Image.project_id == project_id, Annotation.review_state == "accepted")
    if active is not None:
        query = query.where(Annotation.created_at > active.created_at)
    return int(session.scalar(query) or 0)


def maybe_retrain(session: Session, actor: Actor, project_id: int,
                  enqueue: Callable[[int], None]) -> jobs.JobInfo | None:
    """After K accepted annotations since the active model, start a training job that
    rescores the pool when it ends (unless one is already queued or running)."""
    project = session.get(Project, project_id)
    k = settings_of(project)["retrain_after"]
    if not k or accepted_since_model(session, project_id) < k:
        return None
    busy = session.scalar(select(Job.id).where(Job.project_id == project_id,
                                               Job.kind.in_(("train", "score")),
                                               Job.state.in_(jobs.ACTIVE_STATES)))
    if busy is not None:
        return None
    from app.services.training import start_training
    info = start_training(session, actor, project_id,
                          {"fine_tune": True, "rescore": True, "max_minutes": RETRAIN_MINUTES},
                          enqueue)
    log.info("project %s: %d accepted annotations -> training job %s", project_id, k, info.id)
    return info


def learning_progress(session: Session, actor: Actor, project_id: int) -> list[dict]:
    """One row per trained model version (ensemble members left out): how many annotated
    images it learned from and its validation F1 / Dice, oldest first."""
    require(session, actor, project_id, "view")
    out = []
    for mv in model_versions.list_versions(session, actor, project_id)[::-1]:
        if mv.settings.get("ensemble_of"):
            continue
        out.append({"version": mv.id, "n_images": mv.n_training_images,
                    "f1": mv.metrics.get("f1"), "dice": mv.metrics.get("dice"),
                    "active": mv.is_active, "created_at": mv.created_at,
                    "previous_active": mv.metrics.get("previous_active")})
    return out

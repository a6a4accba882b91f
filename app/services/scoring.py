"""Scoring: rank the unannotated pool under the active model with the project's selection
strategy, the ranked queue as the learning page shows it, uncertainty heat maps, and the
learning progress across model versions.

`score_project` is the work itself, a plain function with `progress` and `should_stop`
callables (the `score` job handler in app.jobs.handlers calls it). It writes Score rows
(image, model version, strategy, value, and `rank` for the images a batch strategy picks:
1 = first); the queue and the annotation lease order only read them. Heat maps are cached as
small float16 arrays in the cache directory (recomputable, never the only copy of anything).
When scoring runs in the loop (accepted -> retrain -> rescore): `learning_loop`."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import Config
from app.db import Database
from app.errors import NotFound, ValidationError
from app.permissions import Actor, require
from app.services import counting, jobs, model_versions, queries, region_queue
from app.services.leases import ranked_pool
from app.services.project_settings import ProjectSettings
from app.states import QUEUE_STATUSES
from app.tables import Image, ModelVersion, Project, Score, User, utcnow
from storage.blobstore import BlobStore, get_array
from models.cancel import Cancelled
from models.regions import open_regions
from storage.writers import atomic_path

log = logging.getLogger(__name__)
HEATMAP_SIDE = 512
RANKED = 500                 # images a ranking strategy orders (the rest by score)
LABELLED_EMBEDDINGS = 200    # annotated images whose embeddings coverage spreads from


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
        Image.status.in_(QUEUE_STATUSES), Image.id.notin_(queries.annotated_image_ids()))
        .order_by(Image.id)).all()


def _heatmap_path(config: Config, mv_id: int, strategy: str, image_id: int) -> Path:
    return config.cache_dir / "uncertainty" / f"{mv_id}-{strategy}-{image_id}.npy"


def _store_heatmap(path: Path, heat: np.ndarray) -> None:
    from app.imaging.render import downsample, downsample_factor
    small = downsample(heat.astype(np.float32), downsample_factor(heat.shape, HEATMAP_SIDE))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, small.astype(np.float16))


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


def score_project(db: Database, store: BlobStore, config: Config, project_id: int,
                  progress: Callable[..., None], should_stop: Callable[[], bool]) -> dict:
    """Score every unannotated image with the project's strategy under the active model and
    replace that model's Score rows for the strategy. A strategy that picks in an order of
    its own (`ranks`: stratified, stratified-cheap, power, coverage; diversity for one
    batch) also stores that order in `Score.rank` (1 = first) for the first RANKED images;
    the queue serves them first.
    `progress(fraction, message)` after each image; `should_stop()` stops the work (raises
    `models.cancel.Cancelled`)."""
    from models.strategies import get_strategy

    with db.session_scope() as session:
        loop = ProjectSettings.of(session.get(Project, project_id)).loop
        active = model_versions.active_version(session, project_id)
        if active is None:
            raise ValueError("There is no active model to score with.")
        mv_id = active.id
        strategy = get_strategy(loop.strategy, passes=loop.passes, seed=mv_id)
        counter = (counting.load_counter(store, active)
                   if counting.is_counting(active) and strategy.needs_model else None)
        if counter is None:
            models = (ensemble_members(session, store, active, loop.ensemble_size)
                      if strategy.needs_ensemble else
                      [model_versions.load(store, active)] if strategy.needs_model else [])
        side = region_queue.region_side(session.get(Project, project_id))
        ids = pool_ids(session, project_id)
        if side is not None:              # partly annotated images keep their open regions
            ids = sorted({*ids, *region_queue.partial_ids(session, project_id)})
        labelled = (labelled_ids(session, project_id)
                    if strategy.uses_labelled and counter is None else [])
        blobs = dict(session.execute(select(Image.id, Image.blob_key)
                                     .where(Image.id.in_(ids + labelled))).all())
        if counter is not None:           # counting models count 2-D images only
            blobs = {i: b for i, b, shape in session.execute(
                select(Image.id, Image.blob_key, Image.shape).where(Image.id.in_(ids)))
                if shape[0] == 1}
    if counter is not None:
        # a points project: rank by how unsure the counting model's count is
        scores = counting.score_counts(store, counter, blobs, progress, should_stop)
        with db.session_scope() as session:
            session.execute(delete(Score).where(Score.model_version_id == mv_id,
                                                Score.strategy == strategy.name))
            session.add_all([Score(image_id=i, model_version_id=mv_id, strategy=strategy.name,
                                   value=float(v)) for i, v in scores.items()])
        progress(1.0, f"scored {len(scores)} images by count uncertainty", force=True)
        return {"model_version_id": mv_id, "strategy": strategy.name, "n_images": len(scores),
                "count_uncertainty": True}
    if side is not None:
        return _score_regions(db, store, config, strategy, models, loop, mv_id, side, ids,
                              labelled, blobs, progress, should_stop)
    total = len(ids) + len(labelled)

    def pixels(image_id: int):
        return get_array(store, blobs[image_id])[0] if strategy.needs_pixels else None

    scores, known = {}, []
    for n, image_id in enumerate(ids + labelled):
        if should_stop():
            raise Cancelled()
        progress(n / max(1, total), f"scored {n} of {total} images")
        result = strategy.score(models, pixels(image_id), key=image_id)
        if n >= len(ids):                   # an annotated image: only its embedding counts
            known.append(result.embedding)
            continue
        if result.heatmap is not None:
            _store_heatmap(_heatmap_path(config, mv_id, strategy.name, image_id),
                           result.heatmap)
        scores[image_id] = result
    ranks = {}
    if strategy.ranks:
        depth = loop.batch if strategy.batch_only else max(loop.batch, RANKED)
        picked = strategy.select(scores, min(len(scores), depth), labelled=known or None)
        ranks = {image_id: k for k, image_id in enumerate(picked, start=1)}
    with db.session_scope() as session:
        session.execute(delete(Score).where(Score.model_version_id == mv_id,
                                            Score.strategy == strategy.name))
        session.add_all([Score(image_id=i, model_version_id=mv_id, strategy=strategy.name,
                               value=float(s.value), rank=ranks.get(i))
                         for i, s in scores.items()])
    progress(1.0, f"scored {len(ids)} images", force=True)
    return {"model_version_id": mv_id, "strategy": strategy.name, "n_images": len(ids)}


def _score_regions(db: Database, store: BlobStore, config: Config, strategy, models, loop,
                   mv_id: int, side: int, ids: list[int], labelled: list[int], blobs: dict,
                   progress, should_stop) -> dict:
    """Region mode (`region_queue`): score every open region of every pool image, let the
    strategy pick among the regions, and keep each image's best region in its Score row.

    An uncertainty strategy looks at the whole image once (the network sees the image as it
    does for suggestions and training, normalised as a whole) and a region's score is the
    mean of the uncertainty map over it. Strategies that need one embedding per unit
    (diversity, coverage) and those without a model score crops, as the simulation does;
    coverage spreads away from crops of the annotated regions. A Score row is not written
    for an image saved while the job ran (its newest annotation changed)."""
    from models.strategies import ImageScore
    units, scores, known, seen = {}, {}, [], {}
    from_map = strategy.needs_model and not (strategy.uses_labelled or strategy.batch_only)
    total = len(ids) + len(labelled)
    for n, image_id in enumerate(ids + labelled):
        if should_stop():
            raise Cancelled()
        progress(n / max(1, total), f"scored {n} of {total} images (by region)")
        pixels = get_array(store, blobs[image_id])[0]
        with db.session_scope() as session:
            seen[image_id], done = region_queue.annotated_region(session, store, image_id)
        shape = pixels.shape[-2:]
        if n >= len(ids):                   # annotated: only its regions' embeddings count
            for box in region_queue.done_boxes(shape, side, done):
                if len(known) < LABELLED_EMBEDDINGS:
                    y0, x0, y1, x1 = box
                    known.append(strategy.score(models, pixels[..., y0:y1, x0:x1],
                                                key=image_id).embedding)
            continue
        boxes = open_regions(shape, side, done)
        whole = strategy.score(models, pixels, key=image_id) if from_map and boxes else None
        heat = (whole.heatmap if whole is not None and whole.heatmap is not None
                and whole.heatmap.shape == shape else None)
        stitched = None
        for index, box in enumerate(boxes):
            if should_stop():
                raise Cancelled()
            y0, x0, y1, x1 = box
            key = region_queue.unit_key(image_id, index)
            if heat is not None:
                result = ImageScore(float(heat[y0:y1, x0:x1].mean()), None, whole.embedding)
            else:
                result = strategy.score(models, pixels[..., y0:y1, x0:x1], key=key)
                if result.heatmap is not None and result.heatmap.shape == (y1 - y0, x1 - x0):
                    stitched = np.zeros(shape, np.float32) if stitched is None else stitched
                    stitched[y0:y1, x0:x1] = np.maximum(stitched[y0:y1, x0:x1],
                                                        result.heatmap)
            units[key], scores[key] = (image_id, box), result
        if heat is not None or stitched is not None:
            _store_heatmap(_heatmap_path(config, mv_id, strategy.name, image_id),
                           heat if heat is not None else stitched)
    ranks = {}
    if strategy.ranks:
        depth = loop.batch if strategy.batch_only else max(loop.batch, RANKED)
        picked = strategy.select(scores, min(len(scores), depth), labelled=known or None)
        ranks = {key: k for k, key in enumerate(picked, start=1)}
    best = region_queue.best_per_image(units, scores, ranks)
    with db.session_scope() as session:
        now = region_queue.newest_ids(session, best)
        stale = [i for i in best if now.get(i) != seen.get(i)]    # saved while we scored
        session.execute(delete(Score).where(Score.model_version_id == mv_id,
                                            Score.strategy == strategy.name))
        session.add_all([Score(image_id=i, model_version_id=mv_id, strategy=strategy.name,
                               value=value, rank=rank, region=[int(v) for v in box])
                         for i, (box, value, rank) in best.items() if i not in stale])
    progress(1.0, f"scored {len(units)} regions of {len(best)} images", force=True)
    return {"model_version_id": mv_id, "strategy": strategy.name,
            "n_images": len(best) - len(stale), "n_regions": len(units), "unit": "region",
            "skipped_saved_meanwhile": len(stale)}


def labelled_ids(session: Session, project_id: int, limit: int = LABELLED_EMBEDDINGS
                 ) -> list[int]:
    """The newest annotated live images (for strategies that spread away from them)."""
    return session.scalars(select(Image.id).where(
        *queries.live_images(project_id), Image.id.in_(queries.annotated_image_ids()))
        .order_by(Image.id.desc()).limit(limit)).all()


@dataclass(frozen=True)
class QueueItem:
    image_id: int
    name: str
    status: str
    score: float | None
    leased_to: str | None
    region: list | None = None        # [y0, x0, y1, x1]: the region served (region mode)


def queue(session: Session, actor: Actor, project_id: int, limit: int = 50) -> list[QueueItem]:
    """The unannotated images in the order the annotation queue serves them."""
    require(session, actor, project_id, "view")
    rows = ranked_pool(session, project_id, limit)
    names = dict(session.execute(select(User.id, User.username)).all())
    regions = region_queue.focus_of_many(session, project_id, [img.id for img, _ in rows])
    now = utcnow()
    return [QueueItem(img.id, img.name, img.status, value,
                      names.get(img.assigned_to_id) if img.lease_expires_at and
                      img.lease_expires_at > now else None, regions.get(img.id))
            for img, value in rows]


def heatmap(session: Session, actor: Actor, config: Config, image_id: int) -> np.ndarray:
    """The newest uncertainty map of an image under the active model and strategy."""
    from app.services.gallery import image_for
    image = image_for(session, actor, image_id, "view")
    project = session.get(Project, image.project_id)
    active = model_versions.active_version(session, project.id)
    if active is None:
        raise NotFound("No active model, so no uncertainty map.")
    path = _heatmap_path(config, active.id, ProjectSettings.of(project).loop.strategy,
                         image.id)
    if not path.exists():
        raise NotFound("This image has not been scored by the active model yet.")
    return np.load(path).astype(np.float32)


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
                    "mae": mv.metrics.get("mae"),          # a counting model's count error
                    "active": mv.is_active, "created_at": mv.created_at,
                    "previous_active": mv.metrics.get("previous_active")})
    return out

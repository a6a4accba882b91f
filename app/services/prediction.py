"""Predictions with a project's models: one image on demand ("suggest"), or every image of a
project (`predict_project`, run by the `predict` job handler in app.jobs.handlers). Predicted
label images are cached by (image content, model weights) in the data directory, so a
repeated request costs nothing.

Predictions also score their cells' uncertainty (models.cell_uncertainty: MC dropout in the
same pass of the network) and cache the scores beside the labels, tied to them by a
checksum: the predict job (after an import) and "Use model suggestion" do. The suggestion
made on opening an image never waits for scores: it reads the cache as it is or predicts
plainly, and the workspace scores the cells afterwards (`score_labels`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import json
import zlib

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Config
from app.db import Database, end_transaction
from app.errors import NotFound, PermissionDenied, ValidationError
from app.services.gallery import image_for
from app.permissions import Actor, require
from app.services import counting, jobs, model_versions, queries
from app.services.imports import count_labels
from app.tables import Image, ModelVersion, User
from models.cancel import Cancelled
from storage.blobstore import BlobStore, get_array
from storage.writers import atomic_path


@dataclass(frozen=True)
class Prediction:
    image_id: int
    model_version_id: int
    n_cells: int
    labels: np.ndarray
    cells: dict | None = None      # per-cell uncertainty (`cell_uncertainty`), None: none


def _cache_path(config: Config, image: Image, mv: ModelVersion) -> Path:
    return config.cache_dir / "predictions" / f"{image.sha256[:32]}-{mv.weights_blob_key[:32]}.npy"


def cached_labels(config: Config, image: Image, mv: ModelVersion) -> np.ndarray | None:
    path = _cache_path(config, image, mv)
    return np.load(path, allow_pickle=False) if path.exists() else None


def _store_cache(path: Path, labels: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, labels, allow_pickle=False)


def _cells_path(config: Config, image: Image, mv: ModelVersion) -> Path:
    return _cache_path(config, image, mv).with_suffix(".cells.json")


def _checksum(labels: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(labels).tobytes()):08x}"


def cell_uncertainty(labels: np.ndarray, scores: dict[int, float] | None) -> dict | None:
    """What a suggestion carries about its cells' uncertainty: {"measure", "passes",
    "uncertain_at", "cells": {label (str): score}}, or None when the model gave no scores."""
    if scores is None:
        return None
    from models.cell_uncertainty import PASSES, UNCERTAIN_AT
    return {"measure": "MC-dropout predictive entropy / ln K, mean over the cell",
            "passes": PASSES, "uncertain_at": UNCERTAIN_AT,
            "cells": {str(k): float(v) for k, v in scores.items()}}


def cached_cells(config: Config, image: Image, mv: ModelVersion,
                 labels: np.ndarray) -> tuple[bool, dict | None]:
    """(known, per-cell uncertainty) cached for these labels: (False, None) when never
    scored (or scored for other labels), (True, None) when the model cannot score cells."""
    try:
        data = json.loads(_cells_path(config, image, mv).read_text())
    except (OSError, ValueError):
        return False, None
    if not isinstance(data, dict) or data.get("labels") != _checksum(labels):
        return False, None
    return True, data.get("uncertainty")


def _store_cells(config: Config, image: Image, mv: ModelVersion, labels: np.ndarray,
                 uncertainty: dict | None) -> None:
    path = _cells_path(config, image, mv)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"labels": _checksum(labels),
                                         "uncertainty": uncertainty}))


def _pixels(store: BlobStore, image: Image, mv: ModelVersion, work, *args):
    """`work(pixels, *args)`, with a model that cannot read the image reported plainly."""
    from models.model import ModelInputError
    try:
        return work(get_array(store, image.blob_key), *args)
    except ModelInputError as exc:   # e.g. the project's channels changed under the model
        raise ValidationError(f"Model #{mv.id} cannot read {image.name}: {exc}. Train a "
                              "model on this project's images.") from None


def _predict(store: BlobStore, image: Image, mv: ModelVersion, model):
    """(labels, per-cell uncertainty) from one pass of the model."""
    from models.cell_uncertainty import predict_with_uncertainty
    labels, scores = _pixels(store, image, mv, lambda px: predict_with_uncertainty(model, px))
    return labels, cell_uncertainty(labels, scores)


def _predict_plain(store: BlobStore, image: Image, mv: ModelVersion, model) -> np.ndarray:
    from models.inference import predict_image
    return _pixels(store, image, mv, lambda px: predict_image(model, px).labels)


def _score(store: BlobStore, image: Image, mv: ModelVersion, model,
           labels: np.ndarray) -> dict | None:
    """The per-cell uncertainty of given (Y, X) labels (None for z-stacks)."""
    from models.cell_uncertainty import score_cells
    if labels.ndim != 2:
        return None
    return cell_uncertainty(labels, _pixels(store, image, mv,
                                            lambda px: score_cells(model, px, labels)))


def predict_labels(config: Config, store: BlobStore, image: Image, mv: ModelVersion,
                   model=None) -> np.ndarray:
    return predict_with_cells(config, store, image, mv, model)[0]


def predict_with_cells(config: Config, store: BlobStore, image: Image, mv: ModelVersion,
                       model=None) -> tuple[np.ndarray, dict | None]:
    """(labels, per-cell uncertainty), from the cache when both are there; cached labels
    without scores keep their labels and get them scored."""
    labels = cached_labels(config, image, mv)
    if labels is not None:
        known, cells = cached_cells(config, image, mv, labels)
        if known:
            return labels, cells
        cells = _score(store, image, mv, model or model_versions.load(store, mv), labels)
    else:
        labels, cells = _predict(store, image, mv, model or model_versions.load(store, mv))
        _store_cache(_cache_path(config, image, mv), labels)
    _store_cells(config, image, mv, labels, cells)
    return labels, cells


def score_labels(config: Config, store: BlobStore, image: Image, mv: ModelVersion,
                 labels: np.ndarray) -> dict | None:
    """The per-cell uncertainty of a suggestion already on screen (`labels`, from `mv`): from
    the cache when these are the cached labels and they were scored, else computed (and
    cached when they are the cached labels)."""
    cached = cached_labels(config, image, mv)
    same = cached is not None and np.array_equal(cached, labels)
    if same:
        known, cells = cached_cells(config, image, mv, cached)
        if known:
            return cells
    cells = _score(store, image, mv, model_versions.load(store, mv), labels)
    if same:
        _store_cells(config, image, mv, cached, cells)
    return cells


def suggest(session: Session, actor: Actor, store: BlobStore, config: Config, image_id: int,
            model_version_id: int | None = None, score_cells: bool = True) -> Prediction:
    """The model's cells for one image (the active model unless a version is given), with
    their uncertainty when it is cached or `score_cells` asks for it (one pass of the
    network for both). The suggestion made on opening passes False: opening costs what it
    did before per-cell uncertainty (a cache read, or a plain prediction); the workspace
    then scores the cells on screen (`cell_review.score_suggestion`)."""
    image = image_for(session, actor, image_id, "annotate")
    mv = model_versions.version_or_active(session, actor, model_version_id, image.project_id)
    if mv.project_id != image.project_id:
        raise NotFound("That model belongs to another project.")
    end_transaction(session)      # read, close, compute: no transaction across inference
    # A cached prediction (e.g. from the predict job queued after an import) needs no model:
    # loading torch and the weights is most of a first suggestion's time.
    labels = cached_labels(config, image, mv)
    cells = None
    if labels is not None:
        cells = cached_cells(config, image, mv, labels)[1]
    elif score_cells:
        labels, cells = predict_with_cells(config, store, image, mv)
    else:
        labels = _predict_plain(store, image, mv, model_versions.load(store, mv))
        _store_cache(_cache_path(config, image, mv), labels)
    return Prediction(image.id, mv.id, count_labels(labels) if labels.ndim == 2 else
                      int(sum(count_labels(p) for p in labels)), labels,
                      cells if labels.ndim == 2 else None)


def prediction_for_display(session: Session, actor: Actor, config: Config, image_id: int,
                           model_version_id: int) -> np.ndarray:
    """A cached prediction (viewers may look at predictions others ran)."""
    image = image_for(session, actor, image_id, "view")
    mv = session.get(ModelVersion, model_version_id)
    if mv is None or mv.project_id != image.project_id:
        raise NotFound("No such model version.")
    labels = cached_labels(config, image, mv)
    if labels is None:
        raise NotFound("No prediction yet: press Suggest first.")
    return labels if labels.ndim == 2 else labels[0]


PREFILL_IMAGES = 20     # new images whose suggestions are predicted ahead, after an import


def prefill_suggestions(session: Session, user_id: int | None, project_id: int,
                        image_ids: list[int], enqueue: Callable[[int], None]) -> int | None:
    """After an import into a project with an active model: queue a prediction of the first
    PREFILL_IMAGES new images, as the importer, so opening them shows the model's cells at
    once (the suggestion is read from the cache). Returns the job id, or None when the
    project has no model or the importer may not predict."""
    if model_versions.active_version(session, project_id) is None:
        return None
    actor = session.get(User, user_id) if user_id is not None else None
    if actor is None:
        return None
    try:
        require(session, actor, project_id, "annotate")
    except PermissionDenied:
        return None
    return jobs.submit_job(session, actor, project_id, "predict",
                           {"image_ids": sorted(image_ids)[:PREFILL_IMAGES]}, enqueue).id


def start_project_prediction(session: Session, actor: Actor, project_id: int,
                             enqueue: Callable[[int], None],
                             image_ids: list[int] | None = None) -> jobs.JobInfo:
    """Queue a prediction of every live image of the project, or only of `image_ids`
    (each must be a live image of the project)."""
    require(session, actor, project_id, "annotate")
    if model_versions.active_version(session, project_id) is None:
        raise NotFound("This project has no trained model yet; train one first.")
    params = {}
    if image_ids is not None:
        wanted = sorted({int(i) for i in image_ids})
        found = set(session.scalars(select(Image.id).where(
            *queries.live_images(project_id), Image.id.in_(wanted))))
        missing = [i for i in wanted if i not in found]
        if not wanted:
            raise ValidationError("Give at least one image to predict.")
        if missing:
            raise NotFound("No image " + ", ".join(f"#{i}" for i in missing[:10])
                           + " in this project.")
        params = {"image_ids": wanted}
    return jobs.submit_job(session, actor, project_id, "predict", params, enqueue)


def predict_project(db: Database, store: BlobStore, config: Config, project_id: int,
                    progress: Callable[..., None], should_stop: Callable[[], bool],
                    image_ids: list[int] | None = None) -> dict:
    """Predict every live image of the project (or only `image_ids`) with its active model
    (cached per image and weights); `progress(fraction, message)` after each image,
    `should_stop()` stops the work (raises `models.cancel.Cancelled`)."""
    with db.session_scope() as session:
        mv = model_versions.active_version(session, project_id)
        if mv is None:
            raise ValueError("The project has no active model.")
        query = select(Image).where(*queries.live_images(project_id))
        if image_ids is not None:
            query = query.where(Image.id.in_([int(i) for i in image_ids]))
        images = session.scalars(query.order_by(Image.id)).all()
        session.expunge_all()
    if counting.is_counting(mv):
        return _count_project(store, config, mv, images, progress, should_stop)
    from app.services.project_counts import store_count
    model = model_versions.load(store, mv)
    counts = {}
    for i, image in enumerate(images, 1):
        if should_stop():
            raise Cancelled()
        labels, _cells = predict_with_cells(config, store, image, mv, model)
        counts[image.name] = count_labels(labels) if labels.ndim == 2 else int(
            sum(count_labels(p) for p in labels))
        n = counts[image.name]
        store_count(config, mv, image, {"image": image.name, "count": n, "low": n, "high": n})
        progress(i / len(images), f"{i}/{len(images)} images predicted")
    return {"model_version_id": mv.id, "counts": counts, "n_images": len(images),
            "engine": model.ran_on}


def _count_project(store: BlobStore, config: Config, mv: ModelVersion, images: list,
                   progress: Callable[..., None], should_stop: Callable[[], bool]) -> dict:
    """The predict job of a counting project: count each image with the active counting
    model and keep the count, its interval and its points for the project page
    (app.services.project_counts)."""
    from app.services.project_counts import store_count
    from models.counting import count_image
    from models.counts import MC_SAMPLES, record
    model = counting.load_counter(store, mv)
    counts, skipped = {}, []
    for i, image in enumerate(images, 1):
        if should_stop():
            raise Cancelled()
        if image.shape[0] != 1:                 # counting models count 2-D images
            skipped.append(image.name)
            continue
        result = count_image(model, get_array(store, image.blob_key)[0], mc_samples=MC_SAMPLES,
                             seed=image.id)
        found = {**record(image.name, result.count, result.low, result.high, result.points),
                 "confidence": [round(float(c), 3) for c in result.confidence]}
        store_count(config, mv, image, found)
        counts[image.name] = found["count"]
        progress(i / len(images), f"{i}/{len(images)} images counted")
    return {"model_version_id": mv.id, "counts": counts, "n_images": len(counts),
            "skipped_z_stacks": skipped, "engine": model.ran_on}


@dataclass(frozen=True)
class PointSuggestion:
    model_version_id: int
    points: list              # [[x, y, 0], ...]
    confidence: list          # per point, 0..1 (share of MC-dropout samples that find it)
    count: float
    low: float
    high: float


def suggest_points(session: Session, actor: Actor, store: BlobStore, config: Config,
                   image_id: int) -> PointSuggestion:
    """A counting model's cells of one image as points, each with its confidence, from the
    counts the predict job kept when it has run (else counted now)."""
    from app.services.project_counts import store_count, stored_count
    from models.counts import MC_SAMPLES, record
    image = image_for(session, actor, image_id, "annotate")
    mv = model_versions.version_or_active(session, actor, None, image.project_id)
    if not counting.is_counting(mv):
        raise ValidationError("The active model draws outlines; it does not suggest points.")
    if image.shape[0] != 1:
        raise ValidationError("Counting models count 2-D images; this image is a z-stack.")
    end_transaction(session)
    found = stored_count(config, mv, image)
    if found is None or "confidence" not in found:
        from models.counting import count_image
        result = count_image(counting.load_counter(store, mv),
                             get_array(store, image.blob_key)[0], mc_samples=MC_SAMPLES,
                             seed=image.id)
        found = {**record(image.name, result.count, result.low, result.high, result.points),
                 "confidence": [round(float(c), 3) for c in result.confidence]}
        store_count(config, mv, image, found)
    return PointSuggestion(mv.id, [[float(x), float(y), 0] for x, y in found["points"]],
                           list(found["confidence"]), float(found["count"]),
                           float(found["low"]), float(found["high"]))

"""The job handlers: one small adapter per kind in `app.jobs.kinds.KINDS`. Each takes the
`JobContext` (ids, `deps`, progress, cancel flag) and the job's params, opens what the
service needs and calls it; the work itself lives in the services, which never import
app.jobs. `HANDLERS` maps a kind's name to its handler (tests register their own kinds with
`register`).

Cancelling: the services get `ctx.progress` (raises `Cancelled` when the cancel flag is set)
and `ctx.should_stop`; the runner records `Cancelled` as "cancelled".
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

from app.jobs.builtin import clean_stale_staging, drop_staged, materialize, staging_dir
from app.jobs.kinds import KINDS, JobKind
from app.services import (imports, learning_loop, masks, prediction, scoring, simulation,
                          training)
from app.services.sources import iter_import_files, mask_items
from app.tables import User

log = logging.getLogger(__name__)


# -- import: files staged by an upload --------------------------------------------------------
def import_staged(ctx, staging: str, attach_masks: bool = False, replace: bool = False,
                  staged_blobs: list | None = None) -> dict:
    """Import the files staged under `staging` (or, with `attach_masks`, attach the label
    images staged there to the project's images); the folder is removed however it ends.
    Files staged in the blob store (`staged_blobs`, an upload received by another host) are
    written into this worker's staging folder first, and removed from the store at the end."""
    folder = staging_dir(ctx.config, staging)
    try:
        if staged_blobs and not folder.is_dir():
            materialize(ctx.deps.store, folder, staged_blobs)
        if not folder.is_dir():
            raise FileNotFoundError("The uploaded files are gone (staging folder missing).")
        if attach_masks:
            return _attach(ctx, folder, replace)
        return _import(ctx, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if staged_blobs:
            drop_staged(ctx.deps.store, staged_blobs)
        try:
            clean_stale_staging(ctx.config, ctx.db)
        except Exception as exc:  # noqa: BLE001 - housekeeping must not change the outcome
            log.warning("stale staging not cleaned: %s", exc)


def _run(ctx, sources, work) -> list:
    """Count the items (listing only: nothing is decoded), then feed them to `work`,
    reporting "i/n: name status" after each."""
    total = sum(1 for _ in sources())
    ctx.progress(0.0, f"0/{total} files", force=True)

    def report(i, result):
        ctx.progress(i / max(1, total), f"{i}/{total}: {result.name} {result.status}",
                     force=i == total)

    with ctx.db.session_scope() as session:
        actor = session.get(User, ctx.user_id)
        if actor is None:
            raise PermissionError("The user who started this import no longer exists.")
        return work(session, actor, sources(), report)


def _summary(results, statuses) -> dict:
    counts = {s: sum(r.status == s for r in results) for s in statuses}
    counts["restored"] = sum(r.restored for r in results)
    return {**counts, "files": [{"name": r.name, "status": r.status, "message": r.message,
                                 "n_cells": r.n_cells, "restored": r.restored,
                                 "image_id": r.image_id}
                                for r in results[:5000]]}


def _import(ctx, folder: Path) -> dict:
    config, store = ctx.config, ctx.deps.store
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels = folder / "labels"

    def sources():
        return iter_import_files([images_dir], labels if labels.is_dir() else None,
                                 config.max_image_pixels, config.max_content_length,
                                 max_image_bytes=config.max_image_bytes,
                                 max_archive_bytes=config.max_archive_bytes)

    def work(session, actor, items, report):
        return imports.import_files(session, actor, store, ctx.project_id, items,
                                    config.max_image_pixels, progress=report,
                                    max_bytes=config.max_image_bytes)
    results = _run(ctx, sources, work)
    summary = _summary(results, ("imported", "duplicate", "rejected"))
    # images imported with their labels (or restored with their history) never show a
    # suggestion on opening: only the unannotated ones are predicted ahead
    new_ids = [r.image_id for r in results if r.new_unannotated and r.image_id]
    return {**summary, **_prefill(ctx, new_ids), **_rank(ctx, len(new_ids))}


def _prefill(ctx, image_ids: list[int]) -> dict:
    """Queue a prediction of the first new images when the project has a model, so the
    workspace finds their suggestions cached (no model loaded in the web tier)."""
    if not image_ids:
        return {}
    try:
        with ctx.db.session_scope() as session:
            job_id = prediction.prefill_suggestions(session, ctx.user_id, ctx.project_id,
                                                    image_ids, ctx.deps.enqueue)
    except Exception as exc:  # noqa: BLE001 - the import itself succeeded
        log.warning("suggestions not prefilled after import job %s: %s", ctx.job_id, exc)
        return {}
    return {"prediction_job": job_id} if job_id else {}


def _rank(ctx, n_new: int) -> dict:
    """Rank the pool with the new images when the strategy needs no model
    (`learning_loop.after_import`)."""
    try:
        with ctx.db.session_scope() as session:
            return learning_loop.after_import(session, ctx.project_id, ctx.user_id, n_new,
                                              ctx.deps.enqueue)
    except Exception as exc:  # noqa: BLE001 - the import itself succeeded
        log.warning("pool not ranked after import job %s: %s", ctx.job_id, exc)
        return {}


def _attach(ctx, folder: Path, replace: bool) -> dict:
    config, store = ctx.config, ctx.deps.store

    def sources():
        return mask_items([folder / "masks"], config.max_content_length,
                          config.max_image_bytes, config.max_archive_bytes)

    def work(session, actor, items, report):
        return masks.attach_masks(session, actor, store, ctx.project_id, items,
                                  config.max_image_pixels, config.max_image_bytes, replace,
                                  progress=report)
    return {"attach_masks": True, **_summary(_run(ctx, sources, work), masks.STATUSES)}


# -- the learning loop ------------------------------------------------------------------------
def train(ctx, fine_tune: bool = True, epochs: int | None = None,
          max_minutes: float | None = None, seed: int = 0, rescore: bool = False) -> dict:
    """Train, then let the loop rescore under the new model: with `rescore` (the loop's own
    trainings), or whenever the strategy needs no model (scores belong to the active model,
    so the queue would lose its order and regions until the next scoring)."""
    result = training.train_project(
        ctx.db, ctx.deps.store, ctx.project_id, ctx.user_id, ctx.progress, ctx.should_stop,
        fine_tune=fine_tune, epochs=epochs, max_minutes=max_minutes, seed=seed,
        threads=ctx.config.torch_threads)
    with ctx.db.session_scope() as session:
        rescore = rescore or learning_loop.ranks_without_model(session, ctx.project_id)
    if rescore:
        with ctx.db.session_scope() as session:
            result.update(learning_loop.after_training(
                session, ctx.project_id, ctx.user_id, result["activated"], ctx.deps.enqueue))
    return result


def score(ctx) -> dict:
    return scoring.score_project(ctx.db, ctx.deps.store, ctx.config, ctx.project_id,
                                 ctx.progress, ctx.should_stop)


def predict(ctx, image_ids: list[int] | None = None) -> dict:
    return prediction.predict_project(ctx.db, ctx.deps.store, ctx.config, ctx.project_id,
                                      ctx.progress, ctx.should_stop, image_ids=image_ids)


def simulate(ctx, **params) -> dict:
    out = ctx.config.data_dir / "simulations" / f"job-{ctx.job_id}"
    return simulation.simulate_project(ctx.db, ctx.deps.store, ctx.project_id, out,
                                       ctx.progress, ctx.should_stop, **params)


HANDLERS: dict[str, Callable] = {"import": import_staged, "train": train, "score": score,
                                 "predict": predict, "simulate": simulate}
if set(HANDLERS) != set(KINDS):
    raise RuntimeError("every job kind needs a handler, and only those")


def handler_for(name: str) -> Callable | None:
    """The handler of kind `name` (None for a kind that does not exist)."""
    return HANDLERS.get(name)


def register(kind: JobKind, handler: Callable) -> None:
    """Add a kind and its handler (tests; plug-ins). A name cannot be registered twice."""
    if kind.name in KINDS or kind.name in HANDLERS:
        raise ValueError(f"job kind {kind.name!r} registered twice")
    KINDS[kind.name] = kind
    HANDLERS[kind.name] = handler


def unregister(name: str) -> None:
    KINDS.pop(name, None)
    HANDLERS.pop(name, None)

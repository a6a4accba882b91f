"""Job kinds that ship with CellLoop: importing a browser upload that was staged in the data
directory (images, zips, HDF5 files, label images).

A staging folder lives exactly as long as its job: it is removed when the job is done, has
failed or was cancelled, and every import job also removes folders left behind by jobs that
are over (or by uploads that never became a job) once they are STALE_AFTER_S old."""
from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from app.jobs.registry import job_kind
from app.jobs.runner import ACTIVE_STATES
from app.services import imports, masks
from app.services.sources import iter_import_files, mask_items
from app.tables import Job, User
from storage.blobstore import open_blob_store

log = logging.getLogger(__name__)
STAGING_TOKEN = re.compile(r"^[0-9a-f]{16,64}$")
STALE_AFTER_S = 600.0   # an upload's folder is written, then its job row: seconds apart


def staging_dir(config, token: str) -> Path:
    """Where uploaded files wait for the import job: <data>/staging/<token>/ (images in
    `images/`, label images going with them in `labels/`, label images for images already
    in the project in `masks/`)."""
    if not STAGING_TOKEN.match(token or ""):
        raise ValueError("bad staging token")
    return config.data_dir / "staging" / token


@job_kind("import")
def import_staged(ctx, staging: str, attach_masks: bool = False, replace: bool = False) -> dict:
    """Import the files staged under `staging` (or, with `attach_masks`, attach the label
    images staged there to the project's images); the folder is removed however it ends."""
    folder = staging_dir(ctx.config, staging)
    try:
        if not folder.is_dir():
            raise FileNotFoundError("The uploaded files are gone (staging folder missing).")
        if attach_masks:
            return _attach(ctx, folder, replace)
        return _import(ctx, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
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
    config = ctx.config
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels = folder / "labels"
    store = open_blob_store(config.storage_url, config.blob_dir)

    def sources():
        return iter_import_files([images_dir], labels if labels.is_dir() else None,
                                 config.max_image_pixels, config.max_content_length,
                                 max_image_bytes=config.max_image_bytes,
                                 max_archive_bytes=config.max_archive_bytes)

    def work(session, actor, items, report):
        return imports.import_files(session, actor, store, ctx.project_id, items,
                                   config.max_image_pixels, progress=report,
                                   max_bytes=config.max_image_bytes)
    return _summary(_run(ctx, sources, work), ("imported", "duplicate", "rejected"))


def _attach(ctx, folder: Path, replace: bool) -> dict:
    config = ctx.config
    store = open_blob_store(config.storage_url, config.blob_dir)

    def sources():
        return mask_items([folder / "masks"], config.max_content_length,
                          config.max_image_bytes, config.max_archive_bytes)

    def work(session, actor, items, report):
        return masks.attach_masks(session, actor, store, ctx.project_id, items,
                                  config.max_image_pixels, config.max_image_bytes, replace,
                                  progress=report)
    return {"attach_masks": True, **_summary(_run(ctx, sources, work), masks.STATUSES)}


def clean_stale_staging(config, db, min_age_s: float = STALE_AFTER_S) -> list[str]:
    """Remove staging folders that no queued or running import job needs and that are older
    than `min_age_s`; return their tokens."""
    root = config.data_dir / "staging"
    if not root.is_dir():
        return []
    with db.session_scope() as s:
        active = {(params or {}).get("staging") for params in s.scalars(
            select(Job.params).where(Job.kind == "import", Job.state.in_(ACTIVE_STATES)))}
    removed, now = [], time.time()
    for folder in root.iterdir():
        try:
            old = now - folder.stat().st_mtime > min_age_s
        except OSError:
            continue
        if folder.name not in active and old:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.info("removed %d stale staging folder(s): %s", len(removed), removed)
    return removed

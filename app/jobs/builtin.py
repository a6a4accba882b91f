"""Job kinds that ship with CellLoop."""
from __future__ import annotations

import re
import shutil

from app.jobs.registry import job_kind
from app.services import images
from app.services.sources import iter_import_files
from app.tables import User
from storage.blobstore import open_blob_store

STAGING_TOKEN = re.compile(r"^[0-9a-f]{16,64}$")


def staging_dir(config, token: str):
    """Where uploaded files wait for the import job: <data>/staging/<token>/."""
    if not STAGING_TOKEN.match(token or ""):
        raise ValueError("bad staging token")
    return config.data_dir / "staging" / token


@job_kind("import")
def import_staged(ctx, staging: str) -> dict:
    """Import every image staged under `staging` (labels from its `labels/` subfolder,
    matched by file stem), then remove the staging folder."""
    folder = staging_dir(ctx.config, staging)
    if not folder.is_dir():
        raise FileNotFoundError("The uploaded files are gone (staging folder missing).")
    masks = folder / "labels"
    items = list(iter_import_files([folder], masks if masks.is_dir() else None,
                                   ctx.config.max_image_pixels, ctx.config.max_content_length,
                                   max_image_bytes=ctx.config.max_image_bytes,
                                   max_archive_bytes=ctx.config.max_archive_bytes))
    store = open_blob_store(ctx.config.storage_url, ctx.config.blob_dir)
    total = max(1, len(items))

    def report(i, result):
        ctx.progress(i / total, f"{i}/{total}: {result.name} {result.status}")

    with ctx.db.session_scope() as session:
        actor = session.get(User, ctx.user_id)
        if actor is None:
            raise PermissionError("The user who started this import no longer exists.")
        results = images.import_files(session, actor, store, ctx.project_id, items,
                                      ctx.config.max_image_pixels, progress=report,
                                      max_bytes=ctx.config.max_image_bytes)
    shutil.rmtree(folder, ignore_errors=True)
    counts = {s: sum(r.status == s for r in results) for s in ("imported", "duplicate", "rejected")}
    return {**counts, "files": [{"name": r.name, "status": r.status, "message": r.message}
                                for r in results[:5000]]}

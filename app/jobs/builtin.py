"""Staging of browser uploads for the `import` job: where the files wait (`staging_dir`) and
the housekeeping of folders nobody needs any more (`clean_stale_staging`). The job's handler
is `app.jobs.handlers.import_staged`.

A staging folder lives exactly as long as its job: it is removed when the job is done, has
failed or was cancelled, and every import job also removes folders left behind by jobs that
are over (or by uploads that never became a job) once they are STALE_AFTER_S old.

With an object store (STORAGE_URL), the web host that received the upload and the worker
that imports it need not share a disk: the files are staged as blobs (`stage_blob`, behind
a magic prefix so that a staged file never has the key of an image, mask or model blob, and
deleting it touches nothing else), listed in the job's `staged_blobs`, and the worker writes
them into its own staging folder before importing (`materialize`)."""
from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from app.states import ACTIVE_JOB_STATES
from app.tables import Job

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


STAGED_BLOB_MAGIC = b"\x93CLSTAGE\x01"


def stage_blob(store, data: bytes) -> str:
    """Put an uploaded file into the blob store for the import job; its key."""
    return store.put_bytes(STAGED_BLOB_MAGIC + data)


def materialize(store, folder: Path, staged: list) -> None:
    """Write the staged blobs `staged` ([subfolder, name, key], ...) under `folder`."""
    for sub, name, key in staged:
        data = store.get_bytes(key)
        if not data.startswith(STAGED_BLOB_MAGIC):
            raise ValueError(f"blob {key} is not a staged upload")
        target = folder / sub / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[len(STAGED_BLOB_MAGIC):])


def drop_staged(store, staged: list) -> None:
    for _sub, _name, key in staged or []:
        try:
            store.delete(key)
        except Exception as exc:  # noqa: BLE001 - housekeeping
            log.warning("staged blob %s not removed: %s", key, exc)


def clean_stale_staging(config, db, min_age_s: float = STALE_AFTER_S) -> list[str]:
    """Remove staging folders that no queued or running import job needs and that are older
    than `min_age_s`; return their tokens."""
    root = config.data_dir / "staging"
    if not root.is_dir():
        return []
    with db.session_scope() as s:
        active = {(params or {}).get("staging") for params in s.scalars(
            select(Job.params).where(Job.kind == "import", Job.state.in_(ACTIVE_JOB_STATES)))}
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

"""Browser uploads: small batches import right away; archives, HDF5 files and large batches
are staged in the data directory and imported by a background job (progress on the page)."""
from __future__ import annotations

import base64
import binascii
import posixpath
import secrets
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.orm import Session

from app.config import Config
from app.errors import ValidationError
from app.jobs.builtin import staging_dir
from app.permissions import Actor, require
from app.services import jobs
from app.services.images import ImportFile, ImportResult, import_files
from storage.blobstore import BlobStore

INLINE_MAX_FILES = 50
INLINE_MAX_BYTES = 64 << 20
STAGED_SUFFIXES = (".zip", ".h5", ".hdf5")


@dataclass(frozen=True)
class UploadOutcome:
    results: list[ImportResult]       # when imported right away
    job_id: int | None = None         # when handed to the import job


def decode_data_url(name: str, contents: str) -> bytes:
    """The bytes of a browser upload ("data:<type>;base64,<data>")."""
    try:
        return base64.b64decode(contents.split(",", 1)[1], validate=True)
    except (IndexError, ValueError, binascii.Error, AttributeError):
        raise ValidationError(f"{name}: the upload arrived damaged; try again.") from None


def _clean_name(name: str) -> str:
    base = posixpath.basename((name or "").replace("\\", "/")).strip()
    if not base or base.startswith("."):
        raise ValidationError(f"{name!r}: not a usable file name.")
    return base


def upload(session: Session, actor: Actor, store: BlobStore, config: Config, project_id: int,
           files: list[tuple[str, bytes | str]], enqueue: Callable[[int], None]
           ) -> UploadOutcome:
    """Import `files` ((name, bytes or a browser data URL) pairs) into the project."""
    require(session, actor, project_id, "import")
    if not files:
        raise ValidationError("Choose at least one file.")
    files = [(n, decode_data_url(n, d) if isinstance(d, str) else d) for n, d in files]
    names = [_clean_name(n) for n, _ in files]
    total = sum(len(d) for _, d in files)
    if total > config.max_content_length:
        raise ValidationError(f"The upload is {total / 2**20:.0f} MiB, more than the limit of "
                              f"{config.max_content_length / 2**20:.0f} MiB.")
    staged = (len(files) > INLINE_MAX_FILES or total > INLINE_MAX_BYTES
              or any(n.lower().endswith(STAGED_SUFFIXES) for n in names))
    if not staged:
        items = [ImportFile(n, read=lambda d=d: d) for n, (_, d) in zip(names, files)]
        return UploadOutcome(import_files(session, actor, store, project_id, items,
                                          config.max_image_pixels))
    token = secrets.token_hex(16)
    folder = staging_dir(config, token)
    folder.mkdir(parents=True)
    seen: set[str] = set()
    for name, (_, data) in zip(names, files):
        if name in seen:
            name = f"{secrets.token_hex(3)}-{name}"
        seen.add(name)
        (folder / name).write_bytes(data)
    info = jobs.submit_job(session, actor, project_id, "import", {"staging": token}, enqueue)
    return UploadOutcome([], info.id)

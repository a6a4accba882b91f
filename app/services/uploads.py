"""Browser uploads: small batches import right away; archives, HDF5 files, large batches and
images that decode to much memory are staged in the data directory and imported by a
background job (progress on the page).

Where a file is decoded is decided from its header (`declared_size`, which decodes
nothing): an image whose pixels take more than `INLINE_MAX_DECODED` bytes is never decoded
in a web worker. An image above the per-image limit (MAX_IMAGE_BYTES) is refused from its
header right here, and a zip whose directory declares a bomb (MAX_ARCHIVE_BYTES, the
per-file limit, the compression ratio) is refused before anything in it is inflated."""
from __future__ import annotations

import base64
import binascii
import io
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
from storage.archive import ArchiveError, check_directory, open_zip
from storage.blobstore import BlobStore
from storage.readers import declared_size

INLINE_MAX_FILES = 50
INLINE_MAX_BYTES = 64 << 20         # upload bytes imported in the web worker
INLINE_MAX_DECODED = 64 << 20       # decoded bytes of one image imported in the web worker
INLINE_MAX_DECODED_TOTAL = 256 << 20
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
    datas = [d for _, d in files]
    refused = _refused_archives(config, names, datas)          # index -> rejected result
    keep = [i for i in range(len(names)) if i not in refused]
    if not keep:
        return UploadOutcome([refused[i] for i in range(len(names))])
    decoded = [_decoded_bytes(config, names[i], datas[i]) for i in keep]
    staged = (len(keep) > INLINE_MAX_FILES
              or sum(len(datas[i]) for i in keep) > INLINE_MAX_BYTES
              or any(names[i].lower().endswith(STAGED_SUFFIXES) for i in keep)
              or max(decoded) > INLINE_MAX_DECODED
              or sum(decoded) > INLINE_MAX_DECODED_TOTAL)
    if not staged:
        items = [ImportFile(names[i], read=lambda d=datas[i]: d) for i in keep]
        done = iter(import_files(session, actor, store, project_id, items,
                                 config.max_image_pixels, max_bytes=config.max_image_bytes))
        return UploadOutcome([refused[i] if i in refused else next(done)
                              for i in range(len(names))])
    # The job's result lists every file, so refused archives go along to be refused there.
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


def _refused_archives(config: Config, names: list[str], datas: list[bytes]
                      ) -> dict[int, ImportResult]:
    """Zips whose directory declares a bomb, refused now (reading only the directory)."""
    refused = {}
    for i, (name, data) in enumerate(zip(names, datas)):
        if not name.lower().endswith(".zip"):
            continue
        try:
            with open_zip(name, io.BytesIO(data)) as zf:
                check_directory(name, zf, config.max_archive_bytes, config.max_image_bytes)
        except ArchiveError as exc:
            refused[i] = ImportResult(name, "rejected", str(exc))
    return refused


def _decoded_bytes(config: Config, name: str, data: bytes) -> int:
    """How much memory decoding this image would take, from its header; 0 when it will be
    refused from its header anyway (over the limits, or unreadable) or is not an image."""
    declared = declared_size(name, data)
    if declared is None or declared.nbytes > config.max_image_bytes:
        return 0
    n_values = 1
    for d in declared.shape:
        n_values *= d
    return 0 if n_values > config.max_image_pixels else declared.nbytes

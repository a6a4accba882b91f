"""Browser uploads: small batches import right away; archives, HDF5 files, large batches and
images that decode to much memory are staged in the data directory and imported by a
background job (progress on the page).

Where a file is decoded is decided from its header (`declared_size`, which decodes
nothing): an image whose pixels take more than `INLINE_MAX_DECODED` bytes is never decoded
in a web worker. An image above the per-image limit (MAX_IMAGE_BYTES) is refused from its
header right here, and a zip whose directory declares a bomb (MAX_ARCHIVE_BYTES, the
per-file limit, the compression ratio) is refused before anything in it is inflated; so is
a file of a type CellLoop does not read. Refused files are never staged.

Label images can come with their images, named like them plus a mask suffix (`a.tif` with
`a_masks.tif`, as the CLI pairs masks kept beside their images; in a zip, in a `labels/` or
`masks/` folder), or on their own (`upload_masks`), to be attached to images already in the
project (`app.services.masks`)."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import posixpath
import secrets
import shutil
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.orm import Session

from app.config import Config
from app.errors import ValidationError
from app.jobs.builtin import drop_staged, stage_blob, staging_dir
from app.permissions import Actor, require
from app.services import jobs, learning_loop, masks
from app.services.formats import (ACCEPTED_SUFFIXES, MASK_UPLOAD_SUFFIXES, image_stem_of_mask, is_accepted,
                                  is_image_file, mask_suffix, stem, unsupported)
from app.services.imports import ImportFile, ImportResult, import_files
from app.states import JobState
from app.tables import Job
from app.wording import plural
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
    results: list[ImportResult]       # imported right away, or refused before staging
    job_id: int | None = None         # when the rest was handed to the import job
    ranking: dict = dataclasses.field(default_factory=dict)   # learning_loop.after_import's


def decode_data_url(name: str, contents: str) -> bytes:
    """The bytes of a browser upload ("data:<type>;base64,<data>")."""
    try:
        return base64.b64decode(contents.split(",", 1)[1], validate=True)
    except (IndexError, ValueError, binascii.Error, AttributeError):
        raise ValidationError(f"{name}: the upload arrived damaged; try again.") from None


def _clean_name(name: str) -> str:
    base = posixpath.basename((name or "").replace("\\", "/")).strip()
    if (not base or base.startswith(".") or len(base.encode("utf-8", "replace")) > 200
            or any(ord(c) < 32 or c == "\x7f" for c in base)):
        raise ValidationError(f"{name[:80]!r}: not a usable file name (control characters, "
                              "a leading dot, or longer than 200 bytes).")
    return base


def _received(config: Config, files: list[tuple[str, bytes | str]]
              ) -> tuple[list[str], list[bytes]]:
    """(clean names, bytes) of an upload, within the upload limit."""
    if not files:
        raise ValidationError("Choose at least one file.")
    datas = [decode_data_url(n, d) if isinstance(d, str) else d for n, d in files]
    names = [_clean_name(n) for n, _ in files]
    total = sum(len(d) for d in datas)
    if total > config.max_content_length:
        raise ValidationError(f"The upload is {total / 2**20:.0f} MiB, more than the limit of "
                              f"{config.max_content_length / 2**20:.0f} MiB.")
    return names, datas


def upload(session: Session, actor: Actor, store: BlobStore, config: Config, project_id: int,
           files: list[tuple[str, bytes | str]], enqueue: Callable[[int], None]
           ) -> UploadOutcome:
    """Import `files` ((name, bytes or a browser data URL) pairs) into the project; label
    images named after an image of the same upload (`a_masks.tif` for `a.tif`) become its
    annotation."""
    require(session, actor, project_id, "import")
    names, datas = _received(config, files)
    refused = _refused(config, names, datas)
    labels_of, orphans = _pair_labels(names, [i for i in range(len(names)) if i not in refused])
    refused.update(orphans)
    paired = set(labels_of.values())
    keep = [i for i in range(len(names)) if i not in refused and i not in paired]
    if not keep:
        return UploadOutcome([refused[i] for i in sorted(refused)])
    if not _staged(config, names, datas, keep + sorted(paired)):
        items = [ImportFile(names[i], read=lambda d=datas[i]: d,
                            read_labels=(lambda d=datas[labels_of[i]]: d) if i in labels_of
                            else None, labels_name=names[labels_of[i]] if i in labels_of else "")
                 for i in keep]
        done = iter(import_files(session, actor, store, project_id, items,
                                 config.max_image_pixels, max_bytes=config.max_image_bytes))
        results = {i: _with_labels(next(done), names[labels_of[i]] if i in labels_of else "")
                   for i in keep}
        new = sum(r.new_unannotated for r in results.values())
        results.update(refused)
        # the queue ranks the new images now when its strategy needs no model (the import
        # job does the same for the uploads it takes)
        ranking = learning_loop.after_import(session, project_id, actor.id, new, enqueue)
        return UploadOutcome([results[i] for i in sorted(results)], ranking=ranking)
    staged = [("images", names[i], datas[i]) for i in keep]
    staged += [("labels", names[i], datas[i]) for i in sorted(paired)]
    job_id = _stage_and_submit(session, actor, config, project_id, staged, {}, enqueue, store)
    return UploadOutcome([refused[i] for i in sorted(refused)], job_id)


def upload_masks(session: Session, actor: Actor, store: BlobStore, config: Config,
                 project_id: int, files: list[tuple[str, bytes | str]],
                 enqueue: Callable[[int], None], replace: bool = False) -> UploadOutcome:
    """Attach label images (files, or zips of them) to the project's images, matched by file
    stem; results are "attached", "skipped" (the image has an annotation and `replace` is
    off, or the same one) or "rejected" (no such image, wrong size, ...). Replacing existing
    annotations needs a reviewer or owner."""
    require(session, actor, project_id, "review" if replace else "import")
    names, datas = _received(config, files)
    refused = _refused(config, names, datas, MASK_UPLOAD_SUFFIXES)
    keep = [i for i in range(len(names)) if i not in refused]
    if not keep:
        return UploadOutcome([refused[i] for i in sorted(refused)])
    if not _staged(config, names, datas, keep):
        done = iter(masks.attach_masks(
            session, actor, store, project_id,
            [ImportFile(names[i], read=lambda d=datas[i]: d) for i in keep],
            config.max_image_pixels, config.max_image_bytes, replace))
        results = {i: next(done) for i in keep}
        results.update(refused)
        return UploadOutcome([results[i] for i in sorted(results)])
    job_id = _stage_and_submit(session, actor, config, project_id,
                               [("masks", names[i], datas[i]) for i in keep],
                               {"attach_masks": True, "replace": bool(replace)}, enqueue,
                               store)
    return UploadOutcome([refused[i] for i in sorted(refused)], job_id)


def cancel_import(session: Session, actor: Actor, config: Config, job_id: int,
                  store: BlobStore | None = None) -> jobs.JobInfo:
    """Cancel an import job (as `jobs.cancel_job` allows); a job that had not started yet
    is over at once, so its staged files are removed now, from the staging folder and, when
    the upload was staged in the blob store (STORAGE_URL), from `store` (a running job
    removes its own). Commits the cancel before removing them."""
    info = jobs.cancel_job(session, actor, job_id)
    if info.kind != "import":
        return info
    session.commit()
    params = session.get(Job, job_id).params or {}
    if info.state == JobState.cancelled:
        if params.get("staging"):
            shutil.rmtree(staging_dir(config, params["staging"]), ignore_errors=True)
        if store is not None and params.get("staged_blobs"):
            drop_staged(store, params["staged_blobs"])
    return info


def _with_labels(result: ImportResult, labels_name: str) -> ImportResult:
    if not labels_name or result.status != "imported" or result.restored:
        return result
    return dataclasses.replace(result, message=f"with labels {labels_name} "
                                               f"({plural(result.n_cells, 'cell')})")


def _pair_labels(names: list[str], candidates: list[int]
                 ) -> tuple[dict[int, int], dict[int, ImportResult]]:
    """({image index: label image index}, {refused index: result}): a file whose stem ends
    in a mask suffix goes with the image of the same stem in this upload; without one it is
    refused (such files are label images, not microscopy images)."""
    image_by_stem = {}
    for i in candidates:
        if is_image_file(names[i]) and not mask_suffix(names[i]):
            image_by_stem.setdefault(stem(names[i]), i)
    labels_of, orphans = {}, {}
    for i in candidates:
        if not is_image_file(names[i]) or not mask_suffix(names[i]):
            continue
        image = image_by_stem.get(image_stem_of_mask(names[i]))
        if image is not None and image not in labels_of:
            labels_of[image] = i
        else:
            key = image_stem_of_mask(names[i])
            orphans[i] = ImportResult(names[i], "rejected", (
                f"{names[i]}: a label image (its name ends in {mask_suffix(names[i])}), but "
                f"no image {key}.* is in this upload; to add labels to images already in the "
                "project, use 'Label images (masks)'."))
    return labels_of, orphans


def _staged(config: Config, names: list[str], datas: list[bytes], idx: list[int]) -> bool:
    """Whether these files go to the import job rather than the web worker."""
    decoded = [_decoded_bytes(config, names[i], datas[i]) for i in idx]
    return (len(idx) > INLINE_MAX_FILES
            or sum(len(datas[i]) for i in idx) > INLINE_MAX_BYTES
            or any(names[i].lower().endswith(STAGED_SUFFIXES) for i in idx)
            or max(decoded) > INLINE_MAX_DECODED
            or sum(decoded) > INLINE_MAX_DECODED_TOTAL)


def _stage_and_submit(session: Session, actor: Actor, config: Config, project_id: int,
                      files: list[tuple[str, str, bytes]], params: dict,
                      enqueue: Callable[[int], None], store: BlobStore | None = None) -> int:
    """Write (subfolder, name, bytes) under a new staging folder and start the import job;
    the folder is removed if that fails before the job exists. With an object store
    (STORAGE_URL) the files are staged as blobs instead, so the worker that imports them may
    run on another host (`app.jobs.builtin.stage_blob`)."""
    token = secrets.token_hex(16)
    if config.storage_url and store is not None:
        staged, seen = [], set()
        try:
            for sub, name, data in files:
                if (sub, name) in seen:
                    name = f"{secrets.token_hex(3)}-{name}"
                seen.add((sub, name))
                staged.append([sub, name, stage_blob(store, data)])
            info = jobs.submit_job(session, actor, project_id, "import",
                                   {"staging": token, "staged_blobs": staged, **params},
                                   enqueue)
        except BaseException:
            drop_staged(store, staged)
            raise
        return info.id
    folder = staging_dir(config, token)
    try:
        seen: set[tuple[str, str]] = set()
        for sub, name, data in files:
            if (sub, name) in seen:
                name = f"{secrets.token_hex(3)}-{name}"
            seen.add((sub, name))
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / name).write_bytes(data)
        info = jobs.submit_job(session, actor, project_id, "import",
                               {"staging": token, **params}, enqueue)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return info.id


def _refused(config: Config, names: list[str], datas: list[bytes],
             suffixes: tuple[str, ...] = ACCEPTED_SUFFIXES) -> dict[int, ImportResult]:
    """Files refused now: types not in `suffixes`, and zips whose directory declares a bomb
    (reading only the directory)."""
    refused = {}
    for i, (name, data) in enumerate(zip(names, datas)):
        if not is_accepted(name, suffixes):
            refused[i] = ImportResult(name, "rejected", unsupported(name, suffixes))
        elif name.lower().endswith(".zip"):
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


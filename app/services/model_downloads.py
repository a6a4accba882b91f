"""Model files for download from the web (TorchScript, ONNX, native .cellloop).

Exporting a model runs torch. A web worker must never run torch: a Dash background callback
forked from a process whose OpenMP thread pool exists can hang for ever in a thread barrier
(seen here, holding the SQLite write lock for the whole app). So the web worker checks the
user's permission, then a child process (`python -m app export-model`, a fresh interpreter,
not a fork) writes the files; they are kept under the cache directory by weight hash, so a
second download is a plain file read.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from app.config import Config
from app.errors import NotFound, ServiceError
from app.permissions import Actor
from app.services.model_versions import EXPORT_FORMATS, version_for

log = logging.getLogger(__name__)
SUFFIX = {"cellloop": ".cellloop", "torchscript": ".pt", "onnx": ".onnx"}
EXPORT_TIMEOUT_S = 600
ROOT = Path(__file__).resolve().parents[2]


class ExportFailed(ServiceError):
    http_status = 500


def model_file(session: Session, actor: Actor, config: Config, version_id: int,
               fmt: str) -> Path:
    """The path of model version `version_id` exported as `fmt` (one of EXPORT_FORMATS),
    made on first request. Needs "view" in the model's project."""
    if fmt not in EXPORT_FORMATS:
        raise NotFound(f"Unknown model format {fmt!r}.")
    mv = version_for(session, actor, version_id, "view")
    stem = f"cellloop-project{mv.project_id}-model{mv.id}"
    folder = config.cache_dir / "model-exports" / f"{mv.weights_blob_key[:40]}-{fmt}"
    path = folder / f"{stem}{SUFFIX[fmt]}"
    if path.is_file():
        return path
    session.rollback()   # no transaction stays open while the child works (seconds)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".export-"))
    try:
        _export_in_child(config, version_id, fmt, tmp)
        if not (tmp / path.name).is_file():
            raise ExportFailed(f"Exporting model #{version_id} as {fmt} wrote no file.")
        try:
            os.rename(tmp, folder)           # atomic: a reader sees all of it or nothing
        except OSError:
            if not path.is_file():           # not another request winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _export_in_child(config: Config, version_id: int, fmt: str, out: Path) -> None:
    env = {**os.environ, **config.to_env()}
    cmd = [sys.executable, "-m", "app", "export-model", str(version_id), str(out),
           "--format", fmt]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=EXPORT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ExportFailed(f"Exporting model #{version_id} took over {EXPORT_TIMEOUT_S} s.") \
            from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        log.error("export of model %s as %s failed: %s", version_id, fmt, done.stderr[-2000:])
        raise ExportFailed(f"Exporting model #{version_id} as {fmt} failed: {reason}")

"""Model versions of a project: list, compare, activate or roll back, load, export.

Weights live in the blob store under their sha256, so loading checks the hash: a corrupt
file is refused. Loaded models are cached per process by that hash (immutable content).
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, ValidationError
from app.permissions import Actor, require
from app.tables import ModelVersion, User
from storage.blobstore import BlobStore, copy_to

EXPORT_FORMATS = ("cellloop", "torchscript", "onnx")


@dataclass(frozen=True)
class VersionInfo:
    id: int
    project_id: int
    parent_id: int | None
    is_active: bool
    created_at: dt.datetime
    created_by: str
    metrics: dict
    curve: list
    n_training_images: int
    settings: dict
    architecture: dict


def _info(mv: ModelVersion, username: str | None) -> VersionInfo:
    return VersionInfo(mv.id, mv.project_id, mv.parent_id, mv.is_active, mv.created_at,
                       username or "", dict(mv.metrics or {}), list(mv.curve or []),
                       len(mv.training_data or []), dict(mv.settings or {}),
                       dict(mv.architecture or {}))


def list_versions(session: Session, actor: Actor, project_id: int) -> list[VersionInfo]:
    require(session, actor, project_id, "view")
    rows = session.execute(select(ModelVersion, User.username)
                           .outerjoin(User, User.id == ModelVersion.created_by_id)
                           .where(ModelVersion.project_id == project_id,
                                  ModelVersion.weights_blob_key.is_not(None))
                           .order_by(ModelVersion.id.desc()))
    # ensemble members (extra seeds for the ensemble strategy) are parts of their main version
    return [_info(mv, name) for mv, name in rows if not (mv.settings or {}).get("ensemble_of")]


def version_for(session: Session, actor: Actor, version_id, action: str) -> ModelVersion:
    """The model version, if the actor may `action` in its project (else NotFound or
    PermissionDenied)."""
    mv = session.get(ModelVersion, version_id) if isinstance(version_id, int) else None
    if mv is None or mv.weights_blob_key is None:
        raise NotFound("No such model version.")
    try:
        require(session, actor, mv.project_id, action)
    except NotFound:     # a non-member hears the same as for an id that does not exist
        raise NotFound("No such model version.") from None
    return mv


def active_version(session: Session, project_id: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.project_id == project_id,
                                                     ModelVersion.is_active.is_(True)))


def activate(session: Session, actor: Actor, version_id: int) -> VersionInfo:
    """Make this version the project's active model (owners; also how to roll back)."""
    mv = version_for(session, actor, version_id, "manage")
    if (mv.settings or {}).get("ensemble_of"):
        raise ValidationError(f"Version {mv.id} is an ensemble member of version "
                              f"{mv.settings['ensemble_of']}; activate that one.")
    for other in session.scalars(select(ModelVersion).where(
            ModelVersion.project_id == mv.project_id, ModelVersion.is_active.is_(True))):
        other.is_active = False
    mv.is_active = True
    session.flush()
    return _info(mv, None)


# A per-process cache of loaded networks, keyed by weight hash (immutable content).
_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 4


def load(store: BlobStore, mv: ModelVersion):
    """The SegmentationModel of a version (hash-checked on first load, then cached)."""
    from models.persist import model_from_bytes

    if (mv.settings or {}).get("kind") == "counting":      # app.services.counting.KIND
        raise ValidationError(f"Model #{mv.id} is a counting model: it finds cells as points "
                              "and counts them; it does not draw outlines.")
    key = mv.weights_blob_key
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is not None:
            _CACHE.move_to_end(key)
            return model
    from models.persist import ModelFileError
    try:
        model = model_from_bytes(store.get_bytes(key), expected_sha256=key)
    except ModelFileError as exc:
        raise ValidationError(f"Model #{mv.id} cannot be loaded: {exc}.") from None
    except KeyError:
        raise NotFound(f"The weights of model #{mv.id} are missing from storage.") from None
    with _CACHE_LOCK:
        _CACHE[key] = model
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return model


def version_or_active(session: Session, actor: Actor, version_id: int | None,
                      project_id: int | None = None) -> ModelVersion:
    """The given version, or the project's active one (the actor may view it)."""
    if version_id is None:
        require(session, actor, project_id, "view")
        mv = active_version(session, project_id)
        if mv is None:
            raise NotFound("This project has no trained model yet; train one first.")
        return mv
    return version_for(session, actor, version_id, "view")


def load_version(session: Session, actor: Actor, store: BlobStore, version_id: int | None,
                 project_id: int | None = None):
    """(ModelVersion, SegmentationModel): the given version, or the project's active one."""
    mv = version_or_active(session, actor, version_id, project_id)
    return mv, load(store, mv)


def export_version(session: Session, actor: Actor, store: BlobStore, version_id: int,
                   out_dir: str | Path, formats: tuple[str, ...] = EXPORT_FORMATS) -> list[Path]:
    """Write the version as native .cellloop, TorchScript .pt and/or ONNX .onnx (+ cards)."""
    from models.export import export_onnx, export_torchscript, model_card

    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise ValidationError(f"Unknown model format(s): {', '.join(bad)}.")
    if (version_for(session, actor, version_id, "view").settings or {}).get("kind") == \
            "counting":
        return _export_counting(session, actor, store, version_id, out_dir, formats)
    mv, model = load_version(session, actor, store, version_id)
    model.meta["version"] = f"project {mv.project_id} model {mv.id}"
    model.meta["training_data"] = mv.training_data
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cellloop-project{mv.project_id}-model{mv.id}"
    paths = []
    if "cellloop" in formats:
        path = out / f"{stem}.cellloop"
        copy_to(store, mv.weights_blob_key, path)        # streamed, never whole in memory
        import json
        path.with_suffix(".json").write_text(json.dumps(model_card(model), indent=1))
        paths.append(path)
    if "torchscript" in formats:
        paths.append(export_torchscript(model, out / f"{stem}.pt"))
    if "onnx" in formats:
        paths.append(export_onnx(model, out / f"{stem}.onnx"))
    return paths


def _export_counting(session: Session, actor: Actor, store: BlobStore, version_id: int,
                     out_dir: str | Path, formats: tuple[str, ...]) -> list[Path]:
    """A counting model exports as its .cellloop file (models.counting reads it; the Python
    API `models.count` takes it) with a JSON card, and/or as TorchScript .pt and ONNX .onnx
    (`models.counting_export`: the network outputs its heat-map or density; the card in the
    file and beside it says how to count and find the points)."""
    import json
    mv = version_for(session, actor, version_id, "view")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cellloop-project{mv.project_id}-model{mv.id}"
    paths = []
    if "cellloop" in formats:
        path = out / f"{stem}.cellloop"
        copy_to(store, mv.weights_blob_key, path)
        path.with_suffix(".json").write_text(json.dumps({
            "kind": "counting", "version": f"project {mv.project_id} model {mv.id}",
            "architecture": mv.architecture, "normalisation": mv.normalisation,
            "settings": mv.settings, "metrics": mv.metrics, "training_data": mv.training_data,
            "use": "from models import count; count(images, this_file)"}, indent=1,
            default=str))
        paths.append(path)
    if "torchscript" in formats or "onnx" in formats:
        from models.counting import counter_from_bytes
        from models.counting_export import export_onnx, export_torchscript
        from models.model import ModelFileError
        try:
            model = counter_from_bytes(store.get_bytes(mv.weights_blob_key),
                                       expected_sha256=mv.weights_blob_key)
        except ModelFileError as exc:
            raise ValidationError(f"Model #{mv.id} cannot be loaded: {exc}.") from None
        except KeyError:
            raise NotFound(f"The weights of model #{mv.id} are missing from storage.") \
                from None
        model.meta.update(version=f"project {mv.project_id} model {mv.id}",
                          metrics=dict(mv.metrics or {}), training_data=mv.training_data)
        if "torchscript" in formats:
            paths.append(export_torchscript(model, out / f"{stem}.pt"))
        if "onnx" in formats:
            paths.append(export_onnx(model, out / f"{stem}.onnx"))
    return paths


def add_version(session: Session, project_id: int, activate: bool, **fields) -> ModelVersion:
    """Store a newly trained version; with `activate`, it replaces the project's active one
    (the caller's transaction commits both, so there is never a moment with two active)."""
    if activate:
        for mv in session.scalars(select(ModelVersion).where(
                ModelVersion.project_id == project_id, ModelVersion.is_active.is_(True))):
            mv.is_active = False
    mv = ModelVersion(project_id=project_id, is_active=activate, **fields)
    session.add(mv)
    session.flush()
    return mv

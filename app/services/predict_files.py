"""Predicting image files on disk that are not in a project (the CLI's `predict`): choose a
model (a model file, a model version, or a project's active model), then write per image an
instance mask TIFF (`<stem>_masks.tif`), an outline overlay PNG (`<stem>_overlay.png`), and
`counts.json` for all of them. Files that cannot be read or do not fit the model are
reported and skipped."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy.orm import Session

from app.errors import ServiceError
from app.permissions import Actor
from app.services import model_versions, projects
from storage.blobstore import BlobStore


@dataclass(frozen=True)
class FilePrediction:
    name: str                 # the file's name
    count: int | None         # cells found; None when the file was skipped
    error: str | None = None  # why it was skipped


def model_for(session: Session, actor: Actor, store: BlobStore, spec: str):
    """The `SegmentationModel` that `spec` names: a .cellloop/.pt/.onnx file, a model
    version id, or a project (name or id) whose active model is used."""
    if Path(spec).is_file():
        from models import load_model
        return load_model(spec)
    if spec.isdigit():
        try:
            return model_versions.load_version(session, actor, store, int(spec))[1]
        except ServiceError:
            pass                                  # not a version id: a project's id or name
    pid = projects.find_project_id(session, spec)
    return model_versions.load_version(session, actor, store, None, pid)[1]


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, folders expanded to the files below them (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return found


def predict_files(model, paths: Iterable[Path], out: Path, max_pixels: int, max_bytes: int,
                  on_file: Callable[[FilePrediction], None] | None = None
                  ) -> list[FilePrediction]:
    """Predict each file with `model` and write its mask and overlay into `out`, then
    `counts.json`; `on_file` hears about each file as it is done."""
    from app.imaging.render import ChannelView, composite, encode, outlines
    from models.inference import predict_image
    from models.model import ModelInputError
    from storage import writers
    from storage.readers import ImageReadError, read_image

    out.mkdir(parents=True, exist_ok=True)
    results, counts = [], {}
    for path in paths:
        try:
            pixels = read_image(path, max_pixels, max_bytes).pixels
            result = predict_image(model, pixels)
        except (ImageReadError, ModelInputError) as exc:
            done = FilePrediction(path.name, None, str(exc))
        else:
            stem = path.name.split(".")[0]
            writers.write_bytes(out / f"{stem}_masks.tif",
                                writers.mask_tiff_bytes(result.labels))
            plane = result.labels if result.labels.ndim == 2 else result.labels[0]
            rgb = composite(pixels, 0, [ChannelView("#ffffff")] * pixels.shape[1], 4096)
            rgb[outlines(plane)] = (255, 255, 0)
            writers.write_bytes(out / f"{stem}_overlay.png", encode(rgb, "PNG"))
            counts[path.name] = result.count
            done = FilePrediction(path.name, result.count)
        results.append(done)
        if on_file is not None:
            on_file(done)
    writers.write_json(out / "counts.json", counts)
    return results

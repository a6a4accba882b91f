"""Predicting image files on disk that are not in a project (the CLI's `predict`): choose a
model (a model file, a model version, or a project's active model), then write per image an
overlay PNG (`<stem>_overlay.png`: outlines, or the points a counting model found) and, for a
segmentation model, an instance mask TIFF (`<stem>_masks.tif`); and for all of them
`counts.json` and `counts.csv` in one format for both kinds of model: per image its count, an
interval (low, high: for a counting model, its interval calibrated on held-out clicks or the
5-95% range of MC-dropout sampled counts, the wider; an exported .pt / .onnx counting model
has no dropout, so only the calibrated one; the count itself for a segmentation model), and
the cells as points [x, y] (a counting model's
peaks; a segmentation model's cell centroids). Files that cannot be read or do not fit the
model are reported and skipped."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from sqlalchemy.orm import Session

from app.errors import ServiceError
from app.permissions import Actor
from app.services import counting, model_versions, projects
from storage.blobstore import BlobStore

COUNT_COLUMNS = ["image", "count", "low", "high", "n_points"]


@dataclass(frozen=True)
class FilePrediction:
    name: str                 # the file's name
    count: int | None         # cells found; None when the file was skipped
    error: str | None = None  # why it was skipped


def model_for(session: Session, actor: Actor, store: BlobStore, spec: str):
    """The model that `spec` names: a .cellloop/.pt/.onnx file, a model version id, or a
    project (name or id) whose active model is used. A `SegmentationModel`, or a
    `models.counting.CountingModel` for a counting model."""
    if Path(spec).is_file():
        from models.counts import load_any
        return load_any(spec)
    if spec.isdigit():
        try:
            mv = model_versions.version_or_active(session, actor, int(spec), None)
        except ServiceError:
            pass                                  # not a version id: a project's id or name
        else:
            return _load(store, mv)
    pid = projects.find_project_id(session, spec)
    return _load(store, model_versions.version_or_active(session, actor, None, pid))


def _load(store: BlobStore, mv):
    if counting.is_counting(mv):
        return counting.load_counter(store, mv)
    return model_versions.load(store, mv)


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, folders expanded to the files below them (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return found


@dataclass(frozen=True)
class _Counted:
    """A segmentation model's count in the shape of a counting model's result."""
    count: float
    low: float
    high: float
    points: np.ndarray


def _draw_points(rgb: np.ndarray, points_yx: np.ndarray, colour=(255, 255, 0)) -> None:
    """A small cross on each point (in place)."""
    h, w = rgb.shape[:2]
    for y, x in np.asarray(points_yx, int).reshape(-1, 2):
        for dy, dx in [(0, d) for d in range(-3, 4)] + [(d, 0) for d in range(-3, 4)]:
            if 0 <= y + dy < h and 0 <= x + dx < w:
                rgb[y + dy, x + dx] = colour


def predict_files(model, paths: Iterable[Path], out: Path, max_pixels: int, max_bytes: int,
                  on_file: Callable[[FilePrediction], None] | None = None
                  ) -> list[FilePrediction]:
    """Predict each file with `model` and write its overlay (and mask) into `out`, then
    `counts.json` and `counts.csv`; `on_file` hears about each file as it is done."""
    from app.imaging.render import ChannelView, composite, encode, outlines
    from models.counting import CountingError, CountingModel, count_image
    from models.counts import MC_SAMPLES, centroids, record as counts_record
    from models.inference import predict_image
    from models.model import ModelInputError
    from storage import writers
    from storage.readers import ImageReadError, read_image

    out.mkdir(parents=True, exist_ok=True)
    is_counter = isinstance(model, CountingModel)
    results, counts = [], {}
    for path in paths:
        try:
            pixels = read_image(path, max_pixels, max_bytes).pixels
            if is_counter:
                if pixels.shape[0] != 1:
                    raise CountingError(f"a z-stack ({pixels.shape[0]} planes); counting "
                                        "models count 2-D images")
                result = count_image(model, pixels[0], mc_samples=MC_SAMPLES)
            else:
                result = predict_image(model, pixels)
        except (ImageReadError, ModelInputError, CountingError) as exc:
            done = FilePrediction(path.name, None, str(exc))
        else:
            stem = path.name.split(".")[0]
            rgb = composite(pixels, 0, [ChannelView("#ffffff")] * pixels.shape[1], 4096)
            if is_counter:
                counted = result
                _draw_points(rgb, result.points)
            else:
                writers.write_bytes(out / f"{stem}_masks.tif",
                                    writers.mask_tiff_bytes(result.labels))
                plane = result.labels if result.labels.ndim == 2 else result.labels[0]
                rgb[outlines(plane)] = (255, 255, 0)
                counted = _Counted(result.count, result.count, result.count,
                                   centroids(result.labels))
            writers.write_bytes(out / f"{stem}_overlay.png", encode(rgb, "PNG"))
            record = counts_record(path.name, counted.count, counted.low, counted.high,
                                   counted.points)
            counts[path.name] = {k: v for k, v in record.items() if k != "image"}
            done = FilePrediction(path.name, round(float(counted.count), 2) if is_counter
                                  else int(result.count))
        results.append(done)
        if on_file is not None:
            on_file(done)
    writers.write_json(out / "counts.json", counts)
    writers.write_csv(out / "counts.csv", [{"image": k, **v} for k, v in counts.items()],
                      COUNT_COLUMNS)
    return results

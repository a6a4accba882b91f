"""Export a project: images and masks for napari/Cellpose (TIFF), semantic PNG masks, the HDF5
sample layout, COCO instance JSON, per-image counts (CSV, JSON; `annotated_fraction`: the
share of the image its annotation covers, below 1 when it was annotated by region, whose
mask is `tiff/<name>_region.tif`), counting-mode points (per
image a CSV x,y,class and a napari points-layer CSV, and one Label Studio KeyPointLabels JSON
for all images; storage.points) and a manifest with the full
annotation history (who, when, source, from which model version, and each version's
annotation effort: cells added, deleted, reshaped, kept, active editing seconds; the project's
totals and, per trained model, its validation F1 against the effort saved before it).

Each image's newest non-draft annotation is exported; images without one are exported as
images only. With `accepted_only`, each image's newest *accepted* version is exported instead
(a newer version still waiting for review is left out), and images without an accepted
version are left out of the data files. Deleted images appear in the manifest (marked) until
purged.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationError
from app.imaging.render import ChannelView, composite, encode
from app.permissions import Actor, require
from app.services import effort
from app.states import ReviewState
from app.tables import Annotation, Image, User
from storage import coco, points as point_files, writers
from storage.blobstore import BlobStore, get_array
from storage.hdf5 import Sample, write_samples

FORMATS = ("tiff", "png", "hdf5", "coco", "counts", "points")
COUNT_COLUMNS = ["image_id", "image", "status", "n_cells", "n_points", "annotation_version", "author",
                 "source", "created_at", "annotated_fraction"]


@dataclass(frozen=True)
class ExportSummary:
    out_dir: str
    formats: tuple[str, ...]
    n_images: int
    n_annotated: int
    files: tuple[str, ...]


def parse_formats(text: str) -> tuple[str, ...]:
    names = [f.strip().lower() for f in (text or "all").split(",") if f.strip()]
    if "all" in names:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ValidationError(f"Unknown export format(s) {', '.join(bad) or '(none)'}; choose "
                              f"from {', '.join(FORMATS)} or all.")
    return tuple(names)


def viewable_png(pixels, channels: list[dict]) -> bytes:
    """An 8-bit RGB PNG of the first plane, at full size, for tools that cannot read the
    image's own TIFF (Label Studio), as the viewer shows it by default: each channel
    stretched to its 0.5-99.5 percentiles (so a dim 8-bit fluorescence image is as legible
    as on screen), several channels in the project's colours, one channel in grey."""
    n = pixels.shape[1]
    colours = [c.get("color") or "#ffffff" for c in channels[:n]]
    if len(colours) < n:       # channels the project does not describe: RGB, else white
        colours = ["#ff0000", "#00ff00", "#0000ff"] if n == 3 else colours + ["#ffffff"] * n
    views = [ChannelView("#ffffff" if n == 1 else str(colours[c])) for c in range(n)]
    return encode(composite(pixels, 0, views, max(pixels.shape[-2:])), "PNG")


def _safe_stem(name: str, image_id: int, used: set[str]) -> str:
    stem = re.sub(r"(\.ome)?\.[A-Za-z0-9]+$", "", name)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("._") or "image"
    if stem in used:
        stem = f"{stem}_{image_id}"
    used.add(stem)
    return stem


def _chosen_version(versions: list[Annotation], accepted_only: bool) -> Annotation | None:
    """The version an export uses: the newest, or the newest accepted one."""
    if accepted_only:
        versions = [a for a in versions if a.review_state == ReviewState.accepted]
    return versions[-1] if versions else None


def export_project(session: Session, actor: Actor, store: BlobStore, project_id: int,
                   out_dir: str | Path, formats: tuple[str, ...] = FORMATS,
                   progress=None, accepted_only: bool = False) -> ExportSummary:
    project = require(session, actor, project_id, "export")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users = dict(session.execute(select(User.id, User.username)).all())
    images = session.scalars(select(Image).where(Image.project_id == project_id)
                             .order_by(Image.id)).all()
    history = {}
    for ann in session.scalars(select(Annotation).join(Image).where(
            Image.project_id == project_id).order_by(Annotation.image_id, Annotation.version)):
        history.setdefault(ann.image_id, []).append(ann)
    used: set[str] = set()
    samples, coco_images, coco_anns, counts, manifest_images = [], [], [], [], []
    class_names = [c["name"] for c in project.classes or []]
    keypoint_images = []
    n_exported = 0
    for i, image in enumerate(images):
        versions = history.get(image.id, [])
        latest = _chosen_version(versions, accepted_only)
        manifest_images.append(_manifest_entry(image, history.get(image.id, []), users,
                                               latest.version if latest else None))
        if image.deleted_at is not None or (accepted_only and latest is None):
            continue
        n_exported += 1
        stem = _safe_stem(image.name, image.id, used)
        pixels = get_array(store, image.blob_key)
        labels = (get_array(store, latest.label_blob_key)
                  if latest is not None and latest.label_blob_key else None)
        classes = {int(k): int(v) for k, v in (latest.cell_classes or {}).items()} if latest else {}
        # a partial annotation (annotated by region): only its region says where there are no
        # cells; outside it nothing is known
        region = (get_array(store, latest.region_blob_key) > 0
                  if latest is not None and latest.region_blob_key else None)
        if "tiff" in formats:
            writers.write_bytes(out / "tiff" / f"{stem}.tif",
                                writers.image_tiff_bytes(pixels, image.channel_names))
            if labels is not None:
                writers.write_bytes(out / "tiff" / f"{stem}_masks.tif",
                                    writers.mask_tiff_bytes(labels))
            if labels is not None and region is not None:
                writers.write_bytes(out / "tiff" / f"{stem}_region.tif",
                                    writers.mask_tiff_bytes(region.astype("uint8")))
        if "png" in formats and labels is not None:
            writers.write_bytes(out / "semantic" / f"{stem}.png",
                                writers.semantic_png_bytes(labels, classes))
        if "hdf5" in formats:
            samples.append(Sample(image.name, pixels, [labels] if labels is not None else []))
        if "coco" in formats:
            coco_images.append({"id": image.id, "file_name": f"{stem}.tif", "name": image.name,
                                "height": int(pixels.shape[2]), "width": int(pixels.shape[3])})
            if labels is not None:
                coco_anns += coco.labels_to_annotations(labels, image.id, len(coco_anns) + 1,
                                                        classes)
        if "points" in formats and latest is not None and latest.points:
            writers.write_bytes(out / "points" / f"{stem}.csv",
                                point_files.write_points_csv(latest.points, class_names))
            writers.write_bytes(out / "points" / "napari" / f"{stem}.csv",
                                point_files.write_napari_csv(latest.points))
            # Label Studio shows PNG, not TIFF: the tasks name a viewable copy beside them
            writers.write_bytes(out / "points" / "images" / f"{stem}.png",
                                viewable_png(pixels, project.channels))
            keypoint_images.append((f"images/{stem}.png", int(pixels.shape[3]),
                                    int(pixels.shape[2]), latest.points))
        counts.append({"image_id": image.id, "image": image.name, "status": image.status,
                       "n_cells": latest.n_cells if latest and latest.label_blob_key else "",
                       "n_points": len(latest.points or []) if latest else "",
                       "annotation_version": latest.version if latest else "",
                       "author": users.get(latest.author_id, "") if latest else "",
                       "source": latest.source if latest else "",
                       "created_at": latest.created_at.isoformat() if latest else "",
                       "annotated_fraction": ("" if latest is None else 1.0 if region is None
                                              else round(float(region.mean()), 4))})
        if progress is not None:
            progress(i + 1, len(images))
    if "hdf5" in formats:
        write_samples(out / "dataset.h5", samples)
    if "coco" in formats:
        categories = [{"id": k + 1, "name": c["name"], "color": c["color"]}
                      for k, c in enumerate(project.classes)]
        writers.write_json(out / "coco.json", {"images": coco_images, "annotations": coco_anns,
                                                "categories": categories,
                                                "info": {"project": project.name,
                                                         "exporter": "CellLoop"}})
    if "points" in formats and keypoint_images:
        writers.write_json(out / "points" / "labelstudio.json",
                           point_files.labelstudio_tasks(keypoint_images, class_names))
    if "counts" in formats:
        writers.write_csv(out / "counts.csv", counts, COUNT_COLUMNS)
        writers.write_json(out / "counts.json", counts)
    writers.write_json(out / "manifest.json", {
        "project": {"id": project.id, "name": project.name, "description": project.description,
                    "channels": project.channels, "classes": project.classes},
        "exported_by": actor.username, "formats": list(formats),
        "accepted_only": bool(accepted_only), "effort": _effort_summary(session, actor, project_id),
        "images": manifest_images})
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    n_annotated = sum(1 for c in counts if c["annotation_version"] != "")
    return ExportSummary(str(out), tuple(formats), n_exported, n_annotated, tuple(written))


def _effort_summary(session: Session, actor: Actor, project_id: int) -> dict:
    """The project's annotation effort: totals, and per trained model version its
    validation F1 against the corrections and active minutes saved before it."""
    curve = effort.effort_curve(session, actor, project_id)
    return {"corrections": curve.corrections, "active_minutes": curve.minutes,
            "n_versions": curve.n_versions, **curve.counts,
            "models": [{"model_version": p.model_version_id, "f1": p.f1,
                        "corrections": p.corrections, "active_minutes": p.minutes,
                        "n_versions": p.n_versions, "created_at": p.created_at.isoformat()}
                       for p in curve.points]}


def _manifest_entry(image: Image, annotations: list[Annotation], users: dict,
                    exported_version: int | None) -> dict:
    return {
        "id": image.id, "name": image.name, "sha256": image.sha256, "shape_zcyx": image.shape,
        "dtype": image.dtype, "status": image.status, "quality_note": image.quality_note,
        "deleted_at": image.deleted_at.isoformat() if image.deleted_at else None,
        "exported_version": None if image.deleted_at else exported_version,
        "annotations": [{
            "version": a.version, "author": users.get(a.author_id, ""),
            "created_at": a.created_at.isoformat(), "source": a.source,
            "model_version": a.source_model_version_id, "parent_id": a.parent_id,
            "review_state": a.review_state, "n_cells": a.n_cells,
            "effort": a.effort if isinstance(a.effort, dict) else None,
        } for a in annotations],
    }


def export_zip(session: Session, actor: Actor, store: BlobStore, project_id: int,
               zip_path: str | Path, formats: tuple[str, ...] = FORMATS,
               accepted_only: bool = False) -> ExportSummary:
    """Export into a temporary folder and pack it as one .zip (written atomically)."""
    with tempfile.TemporaryDirectory(dir=Path(zip_path).parent) as tmp:
        summary = export_project(session, actor, store, project_id, tmp, formats,
                                 accepted_only=accepted_only)
        with writers.atomic_path(zip_path) as part:
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED, compresslevel=4) as zf:
                for name in summary.files:
                    zf.write(Path(tmp) / name, name)
    return ExportSummary(str(zip_path), summary.formats, summary.n_images, summary.n_annotated,
                         summary.files)


def remove_old_exports(folder: Path, keep_s: float = 3600) -> None:
    """Delete export zips and temporary folders older than `keep_s` seconds."""
    for p in folder.glob("*.zip"):
        if time.time() - p.stat().st_mtime > keep_s:
            p.unlink(missing_ok=True)
    for p in folder.glob("tmp*"):
        if p.is_dir() and time.time() - p.stat().st_mtime > keep_s:
            shutil.rmtree(p, ignore_errors=True)

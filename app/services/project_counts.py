"""Cells per image of a project, and per group or condition (issue 23: "counts out").

Each live image that is not excluded has a count: the annotated one (the newest saved
version: its points in a counting project, its cells otherwise) or, for an image nobody has
annotated, the active
model's (with its interval, from the counts the predict job stored: `store_count`). Groups
come from the image names through a regular expression: its named group `group` (or its first
group, or the whole match), e.g. `^(?P<group>[^_/]+)` takes "ctrl" from "ctrl_03.tif" and
"plate2" from "plate2/a01.tif". Images whose name does not match are in the group "(other)".
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Config
from app.errors import ValidationError
from app.permissions import Actor, require
from app.services import counting, model_versions, queries
from app.tables import Annotation, Image, ModelVersion
from storage.writers import atomic_path

DEFAULT_PATTERN = r"^(?P<group>[^_/.]+)"
OTHER = "(other)"
MAX_PATTERN = 200
MATCH_TIMEOUT_S = 0.05
COLUMNS = ["image_id", "image", "group", "count", "source", "annotated", "model", "low", "high"]


@dataclass(frozen=True)
class ImageCount:
    image_id: int
    name: str
    group: str
    annotated: int | None          # the newest saved version's count
    model: float | None            # the active model's count (unannotated images)
    low: float | None
    high: float | None

    @property
    def count(self) -> float | None:
        return self.annotated if self.annotated is not None else self.model

    @property
    def source(self) -> str:
        return ("annotation" if self.annotated is not None else
                "model" if self.model is not None else "")


def compile_pattern(text: str | None) -> regex.Pattern:
    text = (text or "").strip() or DEFAULT_PATTERN
    if len(text) > MAX_PATTERN:
        raise ValidationError(f"The group pattern may be at most {MAX_PATTERN} characters.")
    try:
        return regex.compile(text)
    except regex.error as exc:
        raise ValidationError(f"The group pattern is not a regular expression: {exc}.") from None


def group_of(name: str, pattern: regex.Pattern) -> str:
    """The group of an image name. A pattern gets MATCH_TIMEOUT_S per name: any user may
    type one, and some take exponential time (e.g. (a+)+$)."""
    try:
        found = pattern.search(name, timeout=MATCH_TIMEOUT_S)
    except TimeoutError:
        raise ValidationError(f"The group pattern takes too long on {name!r}; make it "
                              "simpler (no nested repeats).") from None
    if found is None:
        return OTHER
    if "group" in pattern.groupindex:
        value = found.group("group")
    else:
        value = found.group(1) if pattern.groups else found.group(0)
    return value or OTHER


def _cache_path(config: Config, mv: ModelVersion, image: Image) -> Path:
    return config.cache_dir / "counts" / f"{mv.weights_blob_key[:32]}-{image.sha256[:32]}.json"


def store_count(config: Config, mv: ModelVersion, image: Image, record: dict) -> None:
    """Keep a model's count of an image (models.counts.record) for the project page."""
    path = _cache_path(config, mv, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record))


def stored_count(config: Config, mv: ModelVersion, image: Image) -> dict | None:
    try:
        return json.loads(_cache_path(config, mv, image).read_text())
    except (OSError, ValueError):
        return None


def _model_count(config: Config, mv: ModelVersion | None, image: Image):
    """(count, low, high) of the active model, from what its predict job stored."""
    found = stored_count(config, mv, image) if mv is not None else None
    if found is None:
        return None, None, None
    return float(found["count"]), float(found["low"]), float(found["high"])


def project_counts(session: Session, actor: Actor, config: Config, project_id: int,
                   pattern: str | None = None) -> list[ImageCount]:
    project = require(session, actor, project_id, "view")
    compiled = compile_pattern(pattern)
    points = counting.is_points_project(project)
    newest = {ann.image_id: ann for ann in session.scalars(
        queries.newest_annotations().join(Image, Image.id == Annotation.image_id)
        .where(*queries.included_images(project_id)))}
    active = model_versions.active_version(session, project_id)
    rows = []
    for image in session.scalars(select(Image).where(*queries.included_images(project_id))
                                 .order_by(Image.id)):
        ann = newest.get(image.id)
        annotated = None
        if ann is not None:
            # a counting project counts points; a version saved there with outlines only
            # (drawn before the project switched to points) counts its cells
            annotated = ((len(ann.points or []) or int(ann.n_cells or 0)) if points
                         else int(ann.n_cells or 0))
        model = low = high = None
        if annotated is None:
            model, low, high = _model_count(config, active, image)
        rows.append(ImageCount(image.id, image.name, group_of(image.name, compiled),
                               annotated, model, low, high))
    return rows


def group_summary(rows: list[ImageCount]) -> list[dict]:
    """Per group: images, images with a count, mean and standard deviation of the counts."""
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row.count)
    out = []
    for name in sorted(groups):
        known = np.array([c for c in groups[name] if c is not None], float)
        out.append({"group": name, "n_images": len(groups[name]), "n_counted": int(len(known)),
                    "mean": round(float(known.mean()), 2) if len(known) else None,
                    "sd": round(float(known.std(ddof=1)), 2) if len(known) > 1 else None,
                    "total": round(float(known.sum()), 2) if len(known) else None})
    return out


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def counts_csv(rows: list[ImageCount]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({"image_id": r.image_id, "image": _cell(r.name),
                         "group": _cell(r.group),
                         "count": "" if r.count is None else r.count, "source": r.source,
                         "annotated": "" if r.annotated is None else r.annotated,
                         "model": "" if r.model is None else r.model,
                         "low": "" if r.low is None else r.low,
                         "high": "" if r.high is None else r.high})
    return buf.getvalue().encode()

"""Display renderings of images (for the viewer and thumbnails) and of annotations
(overlays), with ETags so browsers cache them. Contrast limits are in image units."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, ValidationError
from app.permissions import Actor
from app.services import drafts, queries
from app.services.project_settings import ProjectSettings
from app.services.gallery import get_image, image_for
from app.tables import Annotation, Project
from storage.blobstore import BlobStore, get_array
from app.imaging.render import (HEAT_STOPS, ChannelView, annotation_rgba, auto_limits, composite,
                            encode, heat_alpha, heat_rgba, heat_top)

MAX_SIDE = 4096
RENDER_VERSION = 2  # bump when rendering changes, so cached ETags are invalidated


@dataclass(frozen=True)
class Rendered:
    data: bytes
    mimetype: str
    etag: str


def _etag(*parts) -> str:
    return hashlib.sha256(json.dumps([RENDER_VERSION, *parts], default=str).encode()
                          ).hexdigest()[:32]


def parse_views(raw: str | None, channels: list[dict]) -> list[ChannelView]:
    """Channel views from a JSON list [{"color", "low", "high", "visible"}] (URL parameter);
    missing entries default to the project's colours with auto contrast."""
    given = []
    if raw:
        try:
            given = json.loads(raw)
        except ValueError:
            raise ValidationError("Bad channel settings.") from None
        if not isinstance(given, list):
            raise ValidationError("Bad channel settings.")
    views = []
    for i, channel in enumerate(channels):
        g = given[i] if i < len(given) and isinstance(given[i], dict) else {}
        try:
            low = None if g.get("low") is None else float(g["low"])
            high = None if g.get("high") is None else float(g["high"])
            views.append(ChannelView(str(g.get("color") or channel.get("color", "#ffffff")),
                                     low, high, bool(g.get("visible", True))))
        except (TypeError, ValueError):
            raise ValidationError("Bad channel settings.") from None
    return views


def _pixels_for(store: BlobStore, detail, max_side: int) -> np.ndarray:
    """The smallest stored level that still covers `max_side` (preview or full image)."""
    if detail.preview_blob_key and max_side <= 2048:
        return get_array(store, detail.preview_blob_key)
    return get_array(store, detail.blob_key)


def image_etag(session: Session, actor: Actor, image_id: int, z: int, views_raw: str | None,
               max_side: int, fmt: str) -> str:
    detail = get_image(session, actor, image_id)
    return _etag(detail.blob_key, detail.channels, z, views_raw, max_side, fmt)


def render_image(session: Session, actor: Actor, store: BlobStore, image_id: int, z: int = 0,
                 views_raw: str | None = None, max_side: int = 1024,
                 fmt: str = "JPEG") -> Rendered:
    detail = get_image(session, actor, image_id)
    max_side = int(np.clip(max_side, 16, MAX_SIDE))
    if fmt not in ("JPEG", "PNG"):
        raise ValidationError("Format must be JPEG or PNG.")
    views = parse_views(views_raw, detail.channels)
    rgb = composite(_pixels_for(store, detail, max_side), z, views, max_side)
    return Rendered(encode(rgb, fmt), f"image/{fmt.lower()}",
                    _etag(detail.blob_key, detail.channels, z, views_raw, max_side, fmt))


def auto_contrast(session: Session, actor: Actor, store: BlobStore, image_id: int,
                  z: int = 0) -> list[tuple[float, float]]:
    """Percentile (0.5, 99.5) limits per channel of plane z, in image units (whole numbers
    for integer images)."""
    detail = get_image(session, actor, image_id)
    pixels = _pixels_for(store, detail, 2048)
    z = int(np.clip(z, 0, pixels.shape[0] - 1))
    limits = [auto_limits(pixels[z, c]) for c in range(pixels.shape[1])]
    if np.issubdtype(pixels.dtype, np.integer):
        limits = [(float(np.floor(lo)), max(float(np.ceil(hi)), np.floor(lo) + 1))
                  for lo, hi in limits]
    return limits


@dataclass(frozen=True)
class PixelValues:
    x: int
    y: int
    z: int
    values: list          # one per channel: ints for integer images
    channels: list[str]


def pixel_values(session: Session, actor: Actor, store: BlobStore, image_id: int, z: int,
                 y: int, x: int) -> PixelValues:
    """The raw values of every channel at (z, y, x) of the full-resolution image (the
    readout under the cursor, as in napari's status bar and Fiji's value line)."""
    detail = get_image(session, actor, image_id)
    n_z, _c, height, width = detail.shape
    if not (0 <= x < width and 0 <= y < height and 0 <= z < n_z):
        raise ValidationError("Outside the image.")
    pixels = get_array(store, detail.blob_key)
    raw = pixels[z, :, y, x]
    values = ([int(v) for v in raw] if np.issubdtype(raw.dtype, np.integer)
              else [float(f"{float(v):.5g}") if np.isfinite(v) else None for v in raw])
    names = [str(ch.get("name", f"channel {i + 1}")) for i, ch in enumerate(detail.channels)]
    return PixelValues(int(x), int(y), int(z), values, names[:len(values)])


def render_overlay(session: Session, actor: Actor, store: BlobStore, image_id: int,
                   version: int | None = None, max_side: int = 1024) -> Rendered:
    """RGBA PNG of a saved annotation (latest version unless `version`), as the workspace
    draws it: each cell in its class's colour, counting points as dots."""
    image = image_for(session, actor, image_id, "view")
    ann = (queries.newest_annotation(session, image_id) if version is None else
           session.scalar(select(Annotation).where(Annotation.image_id == image_id,
                                                   Annotation.version == version)))
    if ann is None or (ann.label_blob_key is None and not ann.points):
        raise NotFound("This image has no annotation to show.")
    canvas = drafts.annotation_canvas(store, ann, image)
    colors = [c.get("color", "#ffff00") for c in
              (session.get(Project, image.project_id).classes or [])]
    side = int(np.clip(max_side, 16, MAX_SIDE))
    rgba = annotation_rgba(canvas.labels, side, colors, canvas.classes, 0, None, canvas.points)
    return Rendered(encode(rgba, "PNG"), "image/png",
                    _etag(ann.label_blob_key, ann.cell_classes, ann.points, side, colors,
                          image.id))


def render_draft(session: Session, actor: Actor, config, store: BlobStore, image_id: int,
                 selected: int = 0, max_side: int = 1024) -> Rendered:
    """The annotation workspace overlay: the actor's draft (or the newest version when they
    have no draft), in class colours, selected cell highlighted, region and points shown."""
    from app.services.cell_review import review_of
    image = image_for(session, actor, image_id, "view")
    canvas = drafts.current_canvas(session, actor, config, store, image)
    colors = [c.get("color", "#ffff00") for c in
              (session.get(Project, image.project_id).classes or [])]
    draft = drafts.find_draft(session, actor, image.id)
    review = review_of(draft)                                         # suggested, unchecked
    rgba = annotation_rgba(canvas.labels, int(np.clip(max_side, 16, MAX_SIDE)), colors,
                           canvas.classes, int(selected or 0), canvas.region, canvas.points,
                           label_styles=review.styles() if review else None,
                           unsure_points=drafts.unsure_points(draft, canvas.points))
    return Rendered(encode(rgba, "PNG"), "image/png", "")


STRATEGY_TITLES = {"entropy": "predictive entropy", "bald": "BALD (mutual information)",
                   "power": "BALD (mutual information)", "ensemble": "ensemble disagreement",
                   "diversity": "predictive entropy", "coverage": "predictive entropy",
                   "random": "random", "stratified": "random", "stratified-cheap": "random"}


@dataclass(frozen=True)
class HeatScale:
    """The uncertainty heat map's colour scale: 0 transparent .. `top` brightest."""
    top: float
    title: str                  # what the values are (the project's strategy)
    model_version_id: int
    css_gradient: str           # the same colours and opacity as the map, for a legend


def _heat(session: Session, actor: Actor, config, image_id: int):
    from app.services import model_versions, scoring
    values = scoring.heatmap(session, actor, config, image_id)
    image = image_for(session, actor, image_id, "view")
    project = session.get(Project, image.project_id)
    active = model_versions.active_version(session, project.id)
    strategy = ProjectSettings.of(project).loop.strategy
    return values, active.id, STRATEGY_TITLES.get(strategy, strategy)


def _css_gradient() -> str:
    steps = []
    for i in range(9):
        t = i / 8
        pos = t * (len(HEAT_STOPS) - 1)
        k = min(int(pos), len(HEAT_STOPS) - 2)
        rgb = [round(a + (b - a) * (pos - k)) for a, b in zip(HEAT_STOPS[k], HEAT_STOPS[k + 1])]
        steps.append(f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{int(heat_alpha(t)) / 255:.2f}) "
                     f"{t * 100:.0f}%")
    return "linear-gradient(to right, " + ", ".join(steps) + ")"


def uncertainty_scale(session: Session, actor: Actor, config, image_id: int) -> HeatScale:
    """The colour scale of this image's uncertainty map (NotFound before scoring)."""
    values, mv_id, title = _heat(session, actor, config, image_id)
    return HeatScale(heat_top(values), title, mv_id, _css_gradient())


def render_uncertainty(session: Session, actor: Actor, config, image_id: int) -> Rendered:
    """The active model's uncertainty map as an RGBA heat map scaled to `uncertainty_scale`."""
    values, mv_id, _title = _heat(session, actor, config, image_id)
    return Rendered(encode(heat_rgba(values, heat_top(values)), "PNG"), "image/png",
                    _etag("heat", image_id, mv_id))

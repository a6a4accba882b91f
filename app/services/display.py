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
from app.services import drafts
from app.services.gallery import get_image, image_for
from app.tables import Annotation, Project
from storage.blobstore import BlobStore, get_array
from storage.render import (ChannelView, annotation_rgba, auto_limits, composite, encode,
                            overlay_rgba)

MAX_SIDE = 4096
RENDER_VERSION = 1  # bump when rendering changes, so cached ETags are invalidated


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
    """Percentile (0.5, 99.5) limits per channel, in image units."""
    detail = get_image(session, actor, image_id)
    pixels = _pixels_for(store, detail, 2048)
    z = int(np.clip(z, 0, pixels.shape[0] - 1))
    return [auto_limits(pixels[z, c]) for c in range(pixels.shape[1])]


def value_range(dtype: str) -> tuple[float, float]:
    """The slider range for a pixel type (full range for integers)."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def render_overlay(session: Session, actor: Actor, store: BlobStore, image_id: int,
                   version: int | None = None, max_side: int = 1024,
                   color: str = "#ffff00") -> Rendered:
    """RGBA PNG of an annotation's cells (latest version unless `version`)."""
    detail = get_image(session, actor, image_id)
    query = select(Annotation).where(Annotation.image_id == image_id,
                                     Annotation.is_draft.is_(False))
    if version is not None:
        query = query.where(Annotation.version == version)
    ann = session.scalar(query.order_by(Annotation.version.desc()).limit(1))
    if ann is None or ann.label_blob_key is None:
        raise NotFound("This image has no annotation to show.")
    labels = get_array(store, ann.label_blob_key)
    rgba = overlay_rgba(labels, int(np.clip(max_side, 16, MAX_SIDE)), color)
    return Rendered(encode(rgba, "PNG"), "image/png",
                    _etag(ann.label_blob_key, max_side, color, detail.id))


def render_draft(session: Session, actor: Actor, config, store: BlobStore, image_id: int,
                 selected: int = 0, max_side: int = 1024) -> Rendered:
    """The annotation workspace overlay: the actor's draft (or the newest version when they
    have no draft), in class colours, selected cell highlighted, region and points shown."""
    image = image_for(session, actor, image_id, "view")
    canvas = drafts.current_canvas(session, actor, config, store, image)
    colors = [c.get("color", "#ffff00") for c in
              (session.get(Project, image.project_id).classes or [])]
    rgba = annotation_rgba(canvas.labels, int(np.clip(max_side, 16, MAX_SIDE)), colors,
                           canvas.classes, int(selected or 0), canvas.region, canvas.points)
    return Rendered(encode(rgba, "PNG"), "image/png", "")

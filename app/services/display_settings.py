"""What the display controls start from when a user opens an image, and remembering what
they chose: per channel colour, visibility and contrast limits, per project and user (an
image of the same project opens the way the last one was left, as users of Fiji and napari
expect of a session). Limits left at an image's automatic values are stored as null, so
each image then gets its own; limits the user set stay fixed across the project's images."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import ValidationError
from app.permissions import Actor
from app.services.gallery import get_image
from app.tables import DisplaySetting, utcnow
from storage.blobstore import BlobStore, get_array
from app.imaging.display_stats import channel_stats

COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ChannelDisplay:
    index: int
    name: str
    color: str
    visible: bool
    low: float            # the limits to show now: the saved ones, else the automatic ones
    high: float
    auto_low: float       # this image's automatic limits (0.5 / 99.5 percentiles, plane z)
    auto_high: float
    range_min: float      # the slider's ends (imaging.display_stats.slider_range)
    range_max: float
    integer: bool
    counts: list[int]     # histogram over the slider's range
    edges: list[float]


def saved_channels(session: Session, actor: Actor, project_id: int) -> list[dict]:
    if actor.id is None:
        return []
    row = session.scalar(select(DisplaySetting).where(DisplaySetting.user_id == actor.id,
                                                      DisplaySetting.project_id == project_id))
    return list(row.channels) if row is not None else []


def channel_display(session: Session, actor: Actor, store: BlobStore, image_id: int,
                    z: int = 0) -> list[ChannelDisplay]:
    """Each channel's controls for this user and image: saved settings over the project's
    colours, this image's automatic limits where none were saved, the slider's range
    (widened to hold saved limits outside it) and the histogram."""
    detail = get_image(session, actor, image_id)
    pixels = get_array(store, detail.preview_blob_key or detail.blob_key)
    z = int(np.clip(z, 0, pixels.shape[0] - 1))
    saved = saved_channels(session, actor, detail.project_id)
    out = []
    for c in range(pixels.shape[1]):
        stats = channel_stats(pixels[:, c], pixels[z, c])
        meta = detail.channels[c] if c < len(detail.channels) else {}
        mine = saved[c] if c < len(saved) and isinstance(saved[c], dict) else {}
        low = stats.auto_low if mine.get("low") is None else float(mine["low"])
        high = stats.auto_high if mine.get("high") is None else float(mine["high"])
        out.append(ChannelDisplay(
            c, str(meta.get("name") or f"channel {c + 1}"),
            mine.get("color") or meta.get("color") or "#ffffff", bool(mine.get("visible", True)),
            low, high, stats.auto_low, stats.auto_high, min(stats.range_min, low),
            max(stats.range_max, high), stats.integer, stats.counts, stats.edges))
    return out


def _limit(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError("Bad display settings.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError("Bad display settings.") from None
    if not math.isfinite(number):
        raise ValidationError("Contrast limits must be finite numbers.")
    return number


def clean_channels(channels, n_channels: int) -> list[dict]:
    """[{"color", "visible", "low", "high"}] checked: one entry per channel at most, colours
    as #rrggbb, limits finite numbers (low below high) or null."""
    if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
        raise ValidationError("Bad display settings.")
    out = []
    for given in channels[:n_channels]:
        color = str(given.get("color") or "")
        if not COLOUR.match(color):
            raise ValidationError(f"Not a colour: {color!r} (use #rrggbb).")
        low, high = _limit(given.get("low")), _limit(given.get("high"))
        if low is not None and high is not None and high <= low:
            raise ValidationError("The upper contrast limit must be above the lower one.")
        out.append({"color": color.lower(), "visible": bool(given.get("visible", True)),
                    "low": low, "high": high})
    return out


def save_for_image(session: Session, actor: Actor, image_id: int, channels) -> list[dict]:
    """Remember the user's display settings for the project of this image (any member may:
    they are the user's own). Returns what was stored."""
    detail = get_image(session, actor, image_id)
    if actor.id is None:
        raise ValidationError("Only a logged-in user has display settings.")
    clean = clean_channels(channels, len(detail.channels))
    query = select(DisplaySetting).where(DisplaySetting.user_id == actor.id,
                                         DisplaySetting.project_id == detail.project_id)
    row = session.scalar(query)
    if row is None:
        try:
            with session.begin_nested():      # two tabs saving at once: the second updates
                session.add(DisplaySetting(user_id=actor.id, project_id=detail.project_id,
                                           channels=clean))
            return clean
        except IntegrityError:
            row = session.scalar(query)
    row.channels, row.updated_at = clean, utcnow()
    session.flush()
    return clean

"""The prediction overlay the viewer shows over an image (`/api/images/<id>/prediction.png`):
the cached prediction of a model version (`prediction.prediction_for_display`) drawn as
cell outlines with a light fill, as a PNG with an ETag."""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import Config
from app.permissions import Actor
from app.services import prediction
from app.services.display import Rendered
from app.imaging.render import encode, overlay_rgba

COLOUR = "#00e5ff"


def render_prediction(session: Session, actor: Actor, config: Config, image_id: int,
                      model_version_id: int, size: int = 1024) -> Rendered:
    """PNG of the prediction, at most `size` pixels on its longer side (16-4096)."""
    labels = prediction.prediction_for_display(session, actor, config, image_id,
                                               model_version_id)
    data = encode(overlay_rgba(labels, max(16, min(size, 4096)), COLOUR), "PNG")
    return Rendered(data, "image/png", f"pred-{image_id}-{model_version_id}-{size}")

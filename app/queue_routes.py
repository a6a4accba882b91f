"""`/projects/<id>/annotate`: the "Annotate" button. Sends the browser to the next image of
the project's queue (read-only here; the workspace takes the lease when it opens)."""
from __future__ import annotations

from flask import Blueprint, redirect

from app.context import current_actor, get_session
from app.errors import ServiceError
from app.services import leases

bp = Blueprint("queue", __name__)
QUEUED = "queue"         # /annotate/<id>?from=queue: the queue handed the image out
REVIEWING = "review"     # /annotate/<id>?from=review: opened from the review list


def review_url(image_id: int) -> str:
    """The workspace of an image waiting for review, opened by a reviewer working through
    the review list: its Next goes on to the next image waiting for review."""
    return f"/annotate/{int(image_id)}?from={REVIEWING}"


def queued_url(image_id: int) -> str:
    """The workspace of an image the queue hands out (in a project that queues regions, it
    opens on the region; app.services.region_queue)."""
    return f"/annotate/{int(image_id)}?from={QUEUED}"


@bp.get("/projects/<int:project_id>/annotate")
def annotate_next(project_id: int):
    try:
        image_id = leases.peek_next(get_session(), current_actor(), project_id)
    except ServiceError:
        return redirect("/projects")
    if image_id is None:
        return redirect(f"/projects/{project_id}?queue=empty")
    return redirect(queued_url(image_id))

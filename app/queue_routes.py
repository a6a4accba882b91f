"""`/projects/<id>/annotate`: the "Annotate" button. Sends the browser to the next image of
the project's queue (read-only here; the workspace takes the lease when it opens)."""
from __future__ import annotations

from flask import Blueprint, redirect

from app.context import current_actor, get_session
from app.errors import ServiceError
from app.services import leases

bp = Blueprint("queue", __name__)


@bp.get("/projects/<int:project_id>/annotate")
def annotate_next(project_id: int):
    try:
        image_id = leases.peek_next(get_session(), current_actor(), project_id)
    except ServiceError:
        return redirect("/projects")
    if image_id is None:
        return redirect(f"/projects/{project_id}?queue=empty")
    return redirect(f"/annotate/{image_id}")

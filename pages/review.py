"""Review page (/projects/<id>/review): for annotators, the images a reviewer sent back to
them with the comment; for reviewers and owners, the queue of annotations waiting for review;
for everyone, what was sent back and what was accepted. Each row opens the image in the
annotation workspace, where reviewers accept or send back with a comment."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from app.context import current_actor
from app.permissions import Role
from app.queue_routes import review_url
from app.services import annotations, projects
from app.states import ReviewState
from app.wording import cells_and_points
from pages._common import call, error_page, to_int
from pages._review_lists import open_link, returned_table, returned_to_me_section, saved_at

dash.register_page(__name__, path_template="/projects/<project_id>/review",
                   title="Review · CellLoop")

WAITING = "review-submitted"
SENT_BACK = "review-returned"
ACCEPTED = "review-accepted"
NEXT = "review-next"
ACCEPTED_SHOWN = 50


def waiting_table(items: list[annotations.ReviewItem], table_id: str, can_review: bool,
                  me: str):
    """Annotations waiting for a reviewer, oldest first, each with a Review link (others
    get the viewer: opening the workspace would lease the image away from reviewers)."""
    if not items:
        return html.P("Nothing is waiting for review.", className="text-muted", id=table_id)
    rows = []
    for i in items:
        action = (open_link(i, "Review", True, ReviewState.submitted) if can_review
                  else open_link(i, "View", False, ReviewState.submitted))
        author = f"{i.author} (you)" if i.author == me else (i.author or "-")
        rows.append(html.Tr([html.Td(dcc.Link(i.name, href=f"/images/{i.image_id}")),
                             html.Td(f"v{i.version}"), html.Td(author),
                             html.Td(cells_and_points(i.n_cells, i.n_points)),
                             html.Td(saved_at(i)), html.Td(action)]))
    head = ["Image", "Version", "Annotator", "Marked", "Saved (UTC)", ""]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                     size="sm", hover=True, id=table_id)


def accepted_table(items: list[annotations.ReviewItem], table_id: str):
    if not items:
        return html.P("None.", className="text-muted", id=table_id)
    rows = [html.Tr([html.Td(dcc.Link(i.name, href=f"/images/{i.image_id}")),
                     html.Td(f"v{i.version}"), html.Td(i.author or "-"),
                     html.Td(i.reviewer or "-"),
                     html.Td(cells_and_points(i.n_cells, i.n_points)), html.Td(saved_at(i))])
            for i in items[:ACCEPTED_SHOWN]]
    head = ["Image", "Version", "Annotator", "Accepted by", "Marked", "Saved (UTC)"]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                     size="sm", hover=True, id=table_id)


def layout(project_id=None, **_query):
    pid = to_int(project_id)
    project, error = call(projects.get_project, pid)
    if error:
        return error_page(error)
    role = Role[project.role]
    can_review, workspace = role >= Role.reviewer, role >= Role.annotator
    mine = (call(annotations.returned_to_me, pid)[0] or []) if workspace else []
    waiting, _ = call(annotations.review_list, pid, ReviewState.submitted)
    sent_back, _ = call(annotations.review_list, pid, ReviewState.returned)
    accepted, _ = call(annotations.review_list, pid, ReviewState.accepted)
    me = current_actor().username
    waiting, sent_back, accepted = waiting or [], sent_back or [], accepted or []
    first = next((i for i in waiting if i.author != me), waiting[0] if waiting else None)
    return html.Div([
        html.Div([html.H2(f"Review · {project.name}", className="me-3"),
                  dbc.Badge(project.role, color="info", className="me-3", id="review-role"),
                  dcc.Link("project", href=f"/projects/{pid}")],
                 className="d-flex align-items-center"),
        html.P("Open an image to accept its annotation or send it back with a comment "
               "(reviewers and owners). Sent-back images go to the front of their "
               "annotator's queue.", className="text-muted"),
        returned_to_me_section(pid, mine) if workspace else None,
        html.Div([html.H4(f"Waiting for review ({len(waiting)})", className="me-3 mb-0"),
                  dbc.Button("Review the oldest", href=review_url(first.image_id),
                             color="primary", size="sm", id=NEXT)
                  if can_review and first else None],
                 className="d-flex align-items-center mt-3 mb-2"),
        waiting_table(waiting, WAITING, can_review, me),
        html.H4(f"Sent back to the annotator ({len(sent_back)})", className="mt-3"),
        # the viewer, not the workspace: opening it there would lease it away from its annotator
        returned_table(sent_back, SENT_BACK, workspace=False),
        html.H4(f"Accepted ({len(accepted)})", className="mt-3"),
        accepted_table(accepted, ACCEPTED),
    ])

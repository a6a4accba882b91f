"""Review queue (/projects/<id>/review): annotations waiting for a reviewer, and those sent
back to their annotators. Each row opens the image in the annotation workspace, where
reviewers accept or send back."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from app.services import annotations, projects
from pages._common import call, error_page, to_int

dash.register_page(__name__, path_template="/projects/<project_id>/review",
                   title="Review · CellLoop")

STATES = [("submitted", "Waiting for review"), ("returned", "Sent back to the annotator"),
          ("accepted", "Accepted")]


def table(items: list[annotations.ReviewItem], table_id: str):
    if not items:
        return html.P("None.", className="text-muted", id=table_id)
    rows = [html.Tr([html.Td(dcc.Link(i.name, href=f"/annotate/{i.image_id}")),
                     html.Td(f"v{i.version}"), html.Td(i.author or "-"), html.Td(i.n_cells),
                     html.Td(f"{i.created_at:%Y-%m-%d %H:%M}")]) for i in items]
    head = html.Thead(html.Tr([html.Th(h) for h in ("Image", "Version", "Author", "Cells",
                                                    "Saved (UTC)")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, id=table_id)


def layout(project_id=None, **_query):
    pid = to_int(project_id)
    project, error = call(projects.get_project, pid)
    if error:
        return error_page(error)
    sections = []
    for state, title in STATES:
        items, _ = call(annotations.review_list, pid, state)
        sections += [html.H4(f"{title} ({len(items or [])})", className="mt-3"),
                     table(items or [], f"review-{state}")]
    return html.Div([
        html.Div([html.H2(f"Review · {project.name}", className="me-3"),
                  dcc.Link("project", href=f"/projects/{pid}")],
                 className="d-flex align-items-center"),
        html.P("Open an image to accept its annotation or send it back with a comment "
               "(reviewers and owners).", className="text-muted"),
        *sections,
    ])

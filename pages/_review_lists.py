"""Review lists shared by the Review page and the project page: sent-back images with the
reviewer's comment, and the annotator's "returned to me" list."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from app.queue_routes import review_url
from app.services import annotations
from app.states import ReviewState

RETURNED_TO_ME = "review-returned-to-me"
ANNOTATE_RETURNED = "review-annotate-returned"


def saved_at(item: annotations.ReviewItem) -> str:
    return f"{item.created_at:%Y-%m-%d %H:%M}"


def open_link(item: annotations.ReviewItem, label: str, workspace: bool, kind: str):
    """A link into the annotation workspace (or the viewer, for viewers)."""
    href = ((review_url(item.image_id) if kind == ReviewState.submitted
             else f"/annotate/{item.image_id}") if workspace else f"/images/{item.image_id}")
    return dcc.Link(label, href=href, id={"type": f"review-open-{kind}", "image": item.image_id})


def returned_table(items: list[annotations.ReviewItem], table_id: str, workspace: bool,
                   mine: bool = False):
    """Sent-back images with the reviewer's comment."""
    if not items:
        return html.P("Nothing was sent back to you." if mine else "None.",
                      className="text-muted", id=table_id)
    head = ["Image", "Version"] + ([] if mine else ["Annotator"]) + ["Reviewer", "Comment",
                                                                       "Saved (UTC)"]
    rows = [html.Tr([html.Td(open_link(i, i.name, workspace, ReviewState.returned)), html.Td(f"v{i.version}")]
                    + ([] if mine else [html.Td(i.author or "-")])
                    + [html.Td(i.reviewer or "-"),
                       html.Td(i.review_comment, className="review-comment"),
                       html.Td(saved_at(i))]) for i in items]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                     size="sm", hover=True, id=table_id)


def returned_to_me_section(pid: int, items: list[annotations.ReviewItem]) -> html.Div:
    """The annotator's "returned to me" list (also shown on the project page)."""
    return html.Div([
        html.Div([html.H4(f"Returned to me ({len(items)})", className="me-3 mb-0"),
                  dbc.Button("Annotate returned images", href=f"/projects/{pid}/annotate",
                             external_link=True, color="warning", size="sm",
                             id=ANNOTATE_RETURNED) if items else None],
                 className="d-flex align-items-center mt-3 mb-2"),
        returned_table(items, RETURNED_TO_ME, workspace=True, mine=True),
    ])

"""The project page's "Counts" section: cells per image, grouped by a pattern on the image
names (a condition, a plate, a treatment), as a plot and a table, with the CSV download
(app.services.project_counts; the route is app.api.counts_csv)."""
from __future__ import annotations

from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html

from app.context import get_config
from app.services import project_counts
from pages._common import alert, call

PATTERN = "project-counts-pattern"
FIGURE = "project-counts-figure"
TABLE = "project-counts-table"
DOWNLOAD = "project-counts-download"
NOTE = "project-counts-note"
PROJECT = "project-id"


def section(project_id: int) -> html.Div:
    """The section, drawn with the default pattern as the page is built (nothing moves
    under the members' form below it when the page opens); the callback redraws it when the
    pattern changes."""
    fig, summary, href, note = show(project_counts.DEFAULT_PATTERN, project_id)
    return html.Div([
        html.H4("Counts"),
        html.P("Cells per image: the annotated count where an image has been annotated, else "
               "the active model's (after Predict; a counting model's with its interval: 90%, "
               "calibrated on its validation images, or for older models the spread of its "
               "MC-dropout counts). Images are grouped by the part of their name the pattern matches "
               "(its group named 'group', e.g. ^(?P<group>[^_]+) takes \"ctrl\" from "
               "\"ctrl_03.tif\").", className="small text-muted"),
        dbc.Row([
            dbc.Col(dbc.InputGroup([
                dbc.InputGroupText("Group by"),
                dbc.Input(id=PATTERN, value=project_counts.DEFAULT_PATTERN, debounce=True,
                          maxLength=project_counts.MAX_PATTERN)]), md=6),
            dbc.Col(html.A("Download counts (CSV)", id=DOWNLOAD, className="btn btn-sm "
                           "btn-outline-primary", href=href), md="auto"),
        ], className="g-2 mb-2 align-items-center"),
        html.Div(note, id=NOTE),
        dcc.Graph(id=FIGURE, figure=fig, config={"displayModeBar": False},
                  style={"height": "280px"}),
        html.Div(summary, id=TABLE),
    ], className="mb-4", id="project-counts")


def _href(project_id: int, pattern: str) -> str:
    return f"/api/projects/{project_id}/counts.csv?{urlencode({'pattern': pattern or ''})}"


def figure(rows: list[project_counts.ImageCount]) -> go.Figure:
    fig = go.Figure()
    groups: dict[str, list] = {}
    for r in rows:
        if r.count is not None:
            groups.setdefault(r.group, []).append(r)
    for name in sorted(groups):
        items = groups[name]
        fig.add_trace(go.Box(
            y=[r.count for r in items], name=name, boxpoints="all", jitter=0.4, pointpos=0,
            text=[f"{r.name} ({r.source})" for r in items],
            hovertemplate="%{text}: %{y}<extra></extra>"))
    fig.update_layout(height=280, margin=dict(l=50, r=10, t=10, b=40), showlegend=False,
                      yaxis_title="cells per image")
    return fig


def table(summary: list[dict]) -> dbc.Table:
    head = html.Thead(html.Tr([html.Th(h) for h in
                               ("group", "images", "counted", "mean", "sd", "total")]))
    body = html.Tbody([html.Tr([html.Td(s["group"]), html.Td(s["n_images"]),
                                html.Td(s["n_counted"]),
                                *[html.Td("" if s[k] is None else s[k])
                                  for k in ("mean", "sd", "total")]]) for s in summary])
    return dbc.Table([head, body], size="sm", className="small", id="project-counts-groups")


@callback(Output(FIGURE, "figure"), Output(TABLE, "children"), Output(DOWNLOAD, "href"),
          Output(NOTE, "children"), Input(PATTERN, "value"), State(PROJECT, "data"),
          prevent_initial_call=True)
def show(pattern, project_id):
    rows, error = call(project_counts.project_counts, get_config(), project_id, pattern)
    if error:
        return go.Figure(), None, _href(project_id, project_counts.DEFAULT_PATTERN), \
            alert(error)
    uncounted = sum(1 for r in rows if r.count is None)
    note = (html.P(f"{uncounted} image(s) have no count yet: annotate them, or run Predict "
                   "with a trained model.", className="small text-muted") if uncounted else None)
    return (figure(rows), table(project_counts.group_summary(rows)),
            _href(project_id, pattern), note)

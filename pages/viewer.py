"""Image viewer: channels with colour and contrast (in image units, with a histogram; the
user's settings are remembered per project), z-slider, zoom/pan with square pixels when
zoomed in, the value under the cursor, the current annotation as an overlay (class colours,
points) with opacity, the uncertainty heat map with its colour scale, and marking an image
excluded.

Pixels never travel through callbacks: the figure's layout images point at the rendering
routes (`/api/images/<id>/render.jpg?...`), which the browser fetches and caches."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, callback, dcc, html

from flask import current_app

from app.background import run_as, sign_actor
from app.context import current_actor, get_config, state
from app.services import annotations, display, display_settings, gallery, prediction, projects
from app.states import ImageStatus
from app.wording import cells_and_points, plural
from pages import _display
from pages._history import history_table
from pages._common import alert, call, error_page, to_int, status_word

dash.register_page(__name__, path_template="/images/<image_id>", title="Viewer · CellLoop")

IMAGE_ID = "viewer-image-id"
GRAPH = "viewer-graph"
Z = "viewer-z"
OVERLAY = "viewer-overlay"
OPACITY = "viewer-opacity"
AUTO = "viewer-auto"
EXCLUDE = "viewer-exclude"
NOTE = "viewer-note"
MESSAGE = "viewer-message"
CHANNEL_IDS = _display.channel_ids("viewer")  # pattern id types, keyed by channel index
VISIBLE, COLOUR, RANGE = CHANNEL_IDS["visible"], CHANNEL_IDS["colour"], CHANNEL_IDS["range"]
SUGGEST = "viewer-suggest"
HEAT = "viewer-uncertainty"
HEAT_LEGEND = "viewer-heat-legend"
PREDICTION = "viewer-prediction"
READOUT = "viewer-pixel"               # the values under the cursor
SAVED = "viewer-display-saved"         # "Display settings remembered for this project."
DISPLAY_SIDE = 2048
GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False, "showTips": False}



def figure(image_id: int, width: int, height: int, z: int, views: list[dict],
           overlay: bool, opacity: float, version: int | None,
           predicted_by: int | None = None, heat: bool = False) -> go.Figure:
    side = min(DISPLAY_SIDE, max(width, height))
    query = urlencode({"z": z, "size": side, "views": json.dumps(views, separators=(",", ":"))})
    images = [dict(source=f"/api/images/{image_id}/render.jpg?{query}", xref="x", yref="y",
                   x=0, y=0, sizex=width, sizey=height, sizing="stretch", layer="below")]
    if overlay and version is not None:
        images.append(dict(source=f"/api/images/{image_id}/overlay.png?version={version}"
                                  f"&size={side}", xref="x", yref="y", x=0, y=0, sizex=width,
                           sizey=height, sizing="stretch", opacity=opacity, layer="above"))
    if overlay and predicted_by is not None:
        images.append(dict(source=f"/api/images/{image_id}/prediction.png?model={predicted_by}"
                                  f"&size={side}", xref="x", yref="y", x=0, y=0, sizex=width,
                           sizey=height, sizing="stretch", opacity=opacity, layer="above"))
    if heat:
        images.append(dict(source=f"/api/images/{image_id}/uncertainty.png", xref="x",
                           yref="y", x=0, y=0, sizex=width, sizey=height, sizing="stretch",
                           opacity=0.7, layer="above"))
    fig = go.Figure()
    # an invisible trace spanning the image gives hover coordinates and fixes the axes
    fig.add_trace(go.Scatter(x=[0, width], y=[0, height], mode="markers",
                             marker={"opacity": 0}, hoverinfo="none"))
    fig.update_layout(images=images, margin=dict(l=0, r=0, t=0, b=0), dragmode="pan",
                      plot_bgcolor="#000", paper_bgcolor="#fff", showlegend=False,
                      uirevision=f"image-{image_id}", autosize=True)
    fig.update_xaxes(range=[0, width], visible=False, constrain="domain")
    fig.update_yaxes(range=[height, 0], visible=False, scaleanchor="x", constrain="domain")
    return fig


def heat_legend(scale: display.HeatScale) -> html.Div:
    """The heat map's colour scale: its colours from 0 to the value drawn brightest."""
    return html.Div([
        html.Div(style={"backgroundImage": scale.css_gradient}, className="heat-scale-bar"),
        html.Div([html.Span("0"), html.Span(f"{scale.top:.3g}")],
                 className="d-flex justify-content-between small"),
        html.Div(f"{scale.title}, model #{scale.model_version_id} (brightest: 99th "
                 "percentile of this image)", className="small text-muted"),
    ], className="heat-scale")


def layout(image_id=None, **_query):
    iid = to_int(image_id)
    detail, error = call(gallery.get_image, iid)
    if error:
        return error_page(error)
    channels, _ = call(display_settings.channel_display, state().store, iid, 0)
    channels = channels or []
    project, _ = call(projects.get_project, detail.project_id)
    can_suggest = project is not None and project.role != "viewer"
    z_count, _c, height, width = detail.shape
    return html.Div([
        dcc.Store(id=IMAGE_ID, data={"id": iid, "width": width, "height": height,
                                     "token": sign_actor(current_app.secret_key,
                                                         current_actor()),
                                     "version": detail.annotation_version}),
        dcc.Store(id=PREDICTION),
        html.Div([html.H4(detail.name, className="me-3 mb-0 text-truncate", id="viewer-name"),
                  dbc.Badge(status_word(detail.status), color="secondary", id="viewer-status",
                            className="me-2"),
                  dbc.Button("Annotate", href=f"/annotate/{iid}", id="viewer-annotate", size="sm",
                             color="success", className="me-2") if can_suggest else None,
                  dcc.Link("← images", href=f"/projects/{detail.project_id}/images")],
                 className="d-flex align-items-center mb-2"),
        dbc.Row([
            dbc.Col(html.Div([
                dcc.Graph(id=GRAPH, config=GRAPH_CONFIG, className="viewer-graph",
                          figure=figure(iid, width, height, 0,
                                        [_display.view(ch) for ch in channels],
                                        True, 0.6, detail.annotation_version)),
                _display.readout(GRAPH, READOUT)], className="graph-frame"), lg=9),
            dbc.Col([
                html.H6("Channels"),
                *_display.channel_controls(channels, CHANNEL_IDS),
                html.Div([dbc.Button("Auto contrast", id=AUTO, size="sm",
                                     color="outline-secondary", className="me-2"),
                          html.Span(id=SAVED, className="small text-muted")],
                         className="d-flex align-items-center mb-3"),
                html.Div([html.H6("Z plane"),
                          dcc.Slider(id=Z, min=0, max=max(0, z_count - 1), step=1, value=0,
                                     marks=None, tooltip={"placement": "bottom"})],
                         style={} if z_count > 1 else {"display": "none"}),
                html.H6("Annotation overlay"),
                dbc.Switch(id=OVERLAY, value=True,
                           label=(f"version {detail.annotation_version}, "
                                  f"{cells_and_points(detail.n_cells, detail.n_points)}"
                                  if detail.annotation_version else "no annotation yet")),
                dcc.Slider(id=OPACITY, min=0, max=1, step=0.05, value=0.6, marks=None),
                dbc.Switch(id=HEAT, value=False,
                           label="Uncertainty heat map (active model, after scoring)"),
                html.Div(id=HEAT_LEGEND),
                html.Div([dbc.Button("Suggest (model)", id=SUGGEST, size="sm",
                                     color="outline-info"),
                          dcc.Loading(html.Div(id="viewer-suggest-status", className="small"),
                                      type="dot")], className="mt-2") if can_suggest else None,
                html.H6("Quality", className="mt-3"),
                dbc.Textarea(id=NOTE, value=detail.quality_note, placeholder="note (why excluded)",
                             size="sm", disabled=not can_suggest),     # viewers: look only
                dbc.Button("Include again" if detail.status == ImageStatus.excluded else "Exclude image",
                           id=EXCLUDE, size="sm", color="outline-warning", className="mt-1",
                           disabled=not can_suggest),
                html.Div(id=MESSAGE),
            ], lg=3, className="viewer-panel"),
        ]),
        history_table(call(annotations.history, iid)[0] or []),
    ])


@callback(Output(GRAPH, "figure"),
          Input({"type": VISIBLE, "channel": ALL}, "value"),
          Input({"type": COLOUR, "channel": ALL}, "value"),
          Input({"type": RANGE, "channel": ALL}, "value"),
          Input(Z, "value"), Input(OVERLAY, "value"), Input(OPACITY, "value"),
          Input(PREDICTION, "data"), Input(HEAT, "value"), State(IMAGE_ID, "data"),
          prevent_initial_call=True)
def update_figure(visible, colours, ranges, z, overlay, opacity, predicted, heat, info):
    views = [{"color": c, "low": r[0], "high": r[1], "visible": bool(v)}
             for v, c, r in zip(visible, colours, ranges)]
    return figure(info["id"], info["width"], info["height"], int(z or 0), views, bool(overlay),
                  float(opacity if opacity is not None else 0.6), info["version"],
                  (predicted or {}).get("model"), bool(heat))


@callback(Output(PREDICTION, "data"), Output("viewer-suggest-status", "children"),
          Input(SUGGEST, "n_clicks"), State(IMAGE_ID, "data"), prevent_initial_call=True,
          background=True, running=[(Output(SUGGEST, "disabled"), True, False)])
def suggest(_n, info):
    """A background callback (another process): the user is proved by the request's session
    cookie and the page's signed token (app.background.run_as)."""
    server = dash.get_app().server
    app_state = server.extensions["cellloop"]
    result, error = run_as(server, info.get("token", ""), dash.callback_context.cookies,
                           prediction.suggest, app_state.store,
                           app_state.config, info["id"])
    if error:
        return dash.no_update, html.Span(error, className="text-danger")
    return ({"model": result.model_version_id, "n_cells": result.n_cells},
            html.Span(f"model #{result.model_version_id}: "
                      f"{plural(result.n_cells, 'cell')} (cyan)",
                      className="text-info"))


@callback(Output(HEAT_LEGEND, "children"), Input(HEAT, "value"), State(IMAGE_ID, "data"),
          prevent_initial_call=True)
def show_heat_legend(heat, info):
    if not heat:
        return None
    scale, error = call(display.uncertainty_scale, get_config(), info["id"])
    if error:
        return html.Div(error, className="small text-warning")
    return heat_legend(scale)


_display.register(CHANNEL_IDS, IMAGE_ID, SAVED, AUTO, Z)


@callback(Output(MESSAGE, "children"), Output(EXCLUDE, "children"),
          Output("viewer-status", "children"),
          Input(EXCLUDE, "n_clicks"), State(NOTE, "value"), State("viewer-status", "children"),
          State(IMAGE_ID, "data"), prevent_initial_call=True)
def toggle_excluded(_n, note, status, info):
    exclude = status != ImageStatus.excluded
    detail, error = call(gallery.set_excluded, info["id"], exclude, note or "")
    if error:
        return alert(error), dash.no_update, dash.no_update
    label = "Include again" if detail.status == ImageStatus.excluded else "Exclude image"
    return alert(f"Status: {status_word(detail.status)}", "success"), label, status_word(detail.status)

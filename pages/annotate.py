"""The annotation workspace (/annotate/<image_id>): draw, correct and save cells, review.

Every edit goes to the server as it is made (`drafts.record_edit`), so the draft survives a
closed tab; the page only holds the draft's revision, the selected cell and its outline.
Callbacks each answer one control and call one service; the server checks the role."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, Patch, State, callback, clientside_callback, dcc, html

from flask import current_app

from app.background import run_as, sign_actor
from app.context import current_actor, get_config, state
from app.services import annotations, display, drafts, gallery, leases
from pages import _annotate_view as view
from pages._channels import channel_controls
from pages._common import alert, call, error_page, to_int

dash.register_page(__name__, path_template="/annotate/<image_id>", title="Annotate · CellLoop")

INFO, STATE, GRAPH, CLICK = "annotate-info", "annotate-state", "annotate-graph", "annotate-click"
SHAPE_EVENT, POLYGON_DONE = "annotate-shape-event", "annotate-polygon-done"
TOOL, CLS, BRUSH, OPACITY = "annotate-tool", "annotate-class", "annotate-brush", "annotate-opacity"
MESSAGE, COUNTS, LOCATION, VISITED = ("annotate-message", "annotate-counts", "annotate-location",
                                      "annotate-visited")
LEASE_TIMER, LEASE = "annotate-lease-timer", "annotate-lease"
B = {name: f"annotate-{name}" for name in (
    "undo", "redo", "delete", "deselect", "clear", "suggest", "whole", "save", "save-next",
    "empty", "force", "reload", "exclude", "note", "accept", "send-back", "comment", "next",
    "skip", "prev", "brush-down", "brush-up", "close-polygon", "cancel-suggest")}
SUGGEST_PROGRESS = "annotate-suggest-progress"
POLYGON_SNAP = 0.02            # a click this close to the first corner (fraction of the
                               # image's longer side) closes the polygon
IDS = {"tool": TOOL, "cls": CLS}
Z = "annotate-z"
CHANNEL_IDS = {"visible": "annotate-channel-visible", "colour": "annotate-channel-colour",
               "range": "annotate-channel-range"}


def _state(result: drafts.EditResult, selected: int = 0, path: str | None = None) -> dict:
    return {"rev": result.rev, "selected": selected, "path": path, "n_cells": result.n_cells,
            "n_points": result.n_points, "can_undo": result.can_undo,
            "can_redo": result.can_redo}


def _button(name: str, label: str, disabled: bool, color="outline-secondary", **kw):
    return dbc.Button(label, id=B[name], size="sm", color=color, disabled=disabled,
                      className="me-1 mb-1", **kw)


def _header(ws: annotations.Workspace) -> html.Div:
    latest = ws.latest
    version = (f"version {latest.version} by {latest.author} · {latest.source} · "
               f"{latest.review_state}" if latest else "not annotated yet")
    lease = (f"leased to {ws.lease_holder} until {ws.lease_expires_at:%H:%M} UTC"
             if ws.lease_holder else "")
    return html.Div([
        html.H4(ws.name, className="me-3 mb-0 text-truncate"),
        dbc.Badge(ws.status, color="secondary", className="me-2", id="annotate-status"),
        html.Span(version, className="small text-muted me-3", id="annotate-version"),
        html.Span(lease, className="small text-muted me-auto", id=LEASE),
        _button("prev", "← Previous", False), _button("skip", "Skip", not ws.can_edit),
        _button("next", "Next →", not ws.can_edit),
        dcc.Link("project", href=f"/projects/{ws.project_id}", className="ms-2 small"),
    ], className="d-flex align-items-center flex-wrap mb-2")


def _notices(ws: annotations.Workspace) -> list:
    out = []
    if ws.read_only_reason:
        out.append(dbc.Alert(ws.read_only_reason, color="secondary", className="py-2"))
    if ws.latest and ws.latest.review_state == "returned":
        out.append(dbc.Alert([html.B(f"Sent back by {ws.latest.reviewer}: "),
                              ws.latest.review_comment], color="warning", className="py-2",
                             id="annotate-returned"))
    if ws.draft_stale:
        out.append(dbc.Alert(
            f"Someone saved version {ws.latest.version} after you started this draft "
            f"(from version {ws.draft_base_version or 'none'}). Reload to start from theirs, "
            "or keep editing and save yours as a new version.", color="warning",
            className="py-2"))
    return out


def _display_controls(ws: annotations.Workspace, limits) -> html.Details:
    return html.Details([
        html.Summary("Display: channels, contrast, z", className="h6 mt-3"),
        *channel_controls(ws, limits or [], CHANNEL_IDS),
        html.Div([html.Span("Z plane", className="small"),
                  dcc.Slider(id=Z, min=0, max=max(0, ws.z_count - 1), step=1, value=0,
                             marks=None, tooltip={"placement": "bottom"})],
                 style={} if ws.z_count > 1 else {"display": "none"}),
    ], id="annotate-display")


def _first_tool(ws: annotations.Workspace) -> str:
    return "point" if ws.counting and ws.can_edit else "select"


def _panel(ws: annotations.Workspace, limits) -> list:
    ro = not ws.can_edit
    review = dbc.Card(dbc.CardBody([
        html.H6("Review"),
        dbc.Textarea(id=B["comment"], placeholder="what needs to change", size="sm"),
        _button("accept", "Accept", False, "success"),
        _button("send-back", "Send back", False, "warning"),
    ]), className="mt-3") if ws.can_review and ws.latest else None
    return [
        html.H6("Tools"), view.tool_buttons(IDS, ro, _first_tool(ws)),
        html.H6("Cell class", className="mt-2"), view.class_picker(IDS, ws.classes),
        html.Div([html.Span("Brush width (px)", className="small me-2"),
                  _button("brush-down", "−", ro), _button("brush-up", "+", ro)],
                 className="d-flex align-items-center mt-2"),
        dcc.Slider(id=BRUSH, min=1, max=60, step=1, value=8, marks=None, disabled=ro,
                   tooltip={"placement": "bottom"}),
        html.Div([_button("undo", "Undo", ro or not ws.can_undo),
                  _button("redo", "Redo", ro or not ws.can_redo),
                  _button("delete", "Delete cell", ro, "outline-danger"),
                  _button("deselect", "Deselect", False),
                  _button("close-polygon", "Close polygon", ro)], className="mt-2"),
        html.Div([_button("suggest", "Use model suggestion", ro, "outline-info"),
                  _button("cancel-suggest", "Cancel", ro, "outline-secondary",
                          style={"display": "none"}),
                  _button("clear", "Clear all", ro, "outline-danger"),
                  _button("whole", "Whole image annotated", ro)]),
        dbc.Progress(id=SUGGEST_PROGRESS, value=0, className="my-1", style={"height": "4px"}),
        dcc.Loading(html.Div(id=COUNTS, className="small my-2"), type="dot"),
        html.Div([_button("save", "Save (Ctrl+S)", ro, "primary"),
                  _button("save-next", "Save & next (N)", ro, "primary"),
                  _button("empty", "No cells", ro, "outline-secondary")]),
        html.Div(id=MESSAGE),
        html.H6("Overlay opacity", className="mt-3"),
        dcc.Slider(id=OPACITY, min=0, max=1, step=0.05, value=0.8, marks=None),
        _display_controls(ws, limits),
        html.H6("Quality", className="mt-2"),
        dbc.Textarea(id=B["note"], value=ws.quality_note, placeholder="why exclude (note)",
                     size="sm", disabled=ro),
        _button("exclude", "Exclude image", ro, "outline-warning"),
        review, view.shortcuts_help(),
    ]


def layout(image_id=None, **_query):
    ws, error = call(annotations.open_workspace, get_config(), to_int(image_id))
    if error:
        return error_page(error)
    color = (ws.classes[0].get("color") if ws.classes else None) or "#ffff00"
    limits, _ = call(display.auto_contrast, state().blobs, ws.image_id, 0)
    first = {"rev": ws.draft_rev, "selected": 0, "path": None,
             "n_cells": ws.n_cells, "n_points": ws.n_points}
    return html.Div([
        dcc.Store(id=INFO, data={"id": ws.image_id, "project": ws.project_id,
                                 "token": sign_actor(current_app.secret_key, current_actor()),
                                 "width": ws.width, "height": ws.height,
                                 "colors": [c.get("color") for c in ws.classes] or [color],
                                 "can_edit": ws.can_edit}),
        dcc.Store(id=STATE, data=first), dcc.Store(id=CLICK), dcc.Store(id=SHAPE_EVENT),
        dcc.Store(id=POLYGON_DONE),
        dcc.Store(id=VISITED, storage_type="session"),
        dcc.Location(id=LOCATION, refresh="callback-nav"),
        dcc.Interval(id=LEASE_TIMER, interval=5 * 60 * 1000, disabled=not ws.can_edit),
        _header(ws), *_notices(ws),
        dbc.Row([
            dbc.Col(view.graph(GRAPH, view.figure(ws.image_id, ws.width, ws.height,
                                                  ws.draft_rev, 0.8, _first_tool(ws), color,
                                                  8)),
                    lg=9),
            dbc.Col(_panel(ws, limits), lg=3, className="annotate-panel"),
        ]),
    ])


# ------------------------------------------------------------------ showing the draft
@callback(Output(GRAPH, "figure"), Input(STATE, "data"), Input(OPACITY, "value"),
          State(INFO, "data"), prevent_initial_call=True)
def show_draft(st, opacity, info):
    side = view.side_for(info["width"], info["height"])
    fig = Patch()
    fig["layout"]["images"][1]["source"] = view.draft_url(info["id"], st.get("rev"),
                                                          st.get("selected"), side)
    fig["layout"]["images"][1]["opacity"] = opacity
    fig["layout"]["shapes"] = (view.selected_shape(st.get("path"))
                               + view.polygon_preview(st.get("polygon")))
    return fig


@callback(Output(GRAPH, "figure", allow_duplicate=True),
          Input({"type": CHANNEL_IDS["visible"], "channel": ALL}, "value"),
          Input({"type": CHANNEL_IDS["colour"], "channel": ALL}, "value"),
          Input({"type": CHANNEL_IDS["range"], "channel": ALL}, "value"),
          Input(Z, "value"), State(INFO, "data"), prevent_initial_call=True)
def show_channels(visible, colours, ranges, z, info):
    views = [{"color": c, "low": r[0], "high": r[1], "visible": bool(v)}
             for v, c, r in zip(visible, colours, ranges)]
    fig = Patch()
    fig["layout"]["images"][0]["source"] = view.image_url(
        info["id"], int(z or 0), view.side_for(info["width"], info["height"]), views)
    return fig


@callback(Output(GRAPH, "figure", allow_duplicate=True), Input(TOOL, "value"),
          Input(BRUSH, "value"), Input(CLS, "value"), State(INFO, "data"),
          prevent_initial_call=True)
def choose_tool(tool, brush, cls, info):
    colors = info["colors"]
    fig = Patch()
    fig["layout"]["dragmode"] = view.DRAGMODE.get(tool, "pan")
    fig["layout"]["newshape"] = view.newshape(tool, colors[min(int(cls or 0), len(colors) - 1)],
                                              float(brush or 8))
    return fig


@callback(Output(COUNTS, "children"), Output(B["undo"], "disabled"),
          Output(B["redo"], "disabled"), Input(STATE, "data"), State(INFO, "data"),
          State(B["undo"], "disabled"), State(B["redo"], "disabled"))
def show_counts(st, info, undo_disabled, redo_disabled):
    text = "" if st.get("n_cells") is None else f"{st['n_cells']} cells"
    if st.get("n_points"):
        text += f" · {st['n_points']} points"
    if st.get("selected"):
        text += f" · cell {st['selected']} selected"
    text = text.strip(" ·")
    if "can_undo" not in st:             # the page just opened: the layout set the buttons
        return text, undo_disabled, redo_disabled
    ro = not info["can_edit"]
    return text, ro or not st.get("can_undo"), ro or not st.get("can_redo")


clientside_callback(
    "function(n, st) { return Object.assign({}, st, {selected: 0, path: null, polygon: null}); }",
    Output(STATE, "data", allow_duplicate=True), Input(B["deselect"], "n_clicks"),
    State(STATE, "data"), prevent_initial_call=True)
clientside_callback(
    "function(down, up, value) {"
    " var t = dash_clientside.callback_context.triggered_id;"
    " return Math.max(1, Math.min(60, (value || 8) + (t === 'annotate-brush-up' ? 2 : -2))); }",
    Output(BRUSH, "value"), Input(B["brush-down"], "n_clicks"), Input(B["brush-up"], "n_clicks"),
    State(BRUSH, "value"), prevent_initial_call=True)


# ------------------------------------------------------------------ edits
def _edit(info, st, edit, select_result=True):
    result, error = call(drafts.record_edit, get_config(), state().blobs, info["id"], edit)
    if error:
        return dash.no_update, alert(error)
    label = result.label if select_result else 0
    return _state(result, label or 0, None), None


def edit_for_drawing(relayout: dict, tool: str, cls: int, brush: float, st: dict) -> dict | None:
    """The edit a plotly relayout event stands for, or None (zoom, pan, nothing drawn)."""
    if not relayout:
        return None
    reshaped = [v for k, v in relayout.items() if k.startswith("shapes[0].path")]
    if reshaped and st.get("path") and st.get("selected"):
        return {"op": "replace", "label": st["selected"],
                "shape": {"type": "path", "path": reshaped[0]}}
    shapes = relayout.get("shapes")
    if not shapes:
        return None
    shape = shapes[-1]
    if tool in ("draw", "rect", "ellipse"):
        return {"op": "add", "shape": shape, "cls": cls}
    if tool == "brush":
        return {"op": "brush", "shape": shape, "width": brush, "label": st.get("selected") or None}
    if tool == "erase":
        return {"op": "erase", "shape": shape, "width": brush}
    if tool == "region":
        return {"op": "region", "shape": shape}
    return None


# Only relayout events that carry a shape go to the server. Zoom, pan and autosize events are
# dropped in the browser: sent to the server they would make the drawing callback run again
# while the request for a just-drawn shape is in flight, and Dash discards the answer of a
# callback that has been called again, so the cell count and overlay would miss the new shape.
clientside_callback(
    "function(r) { return r && Object.keys(r).some(function(k) { return k.startsWith('shapes'); })"
    " ? r : dash_clientside.no_update; }",
    Output(SHAPE_EVENT, "data"), Input(GRAPH, "relayoutData"), prevent_initial_call=True)


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(SHAPE_EVENT, "data"), State(TOOL, "value"), State(CLS, "value"),
          State(BRUSH, "value"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def drawn(relayout, tool, cls, brush, st, info):
    edit = edit_for_drawing(relayout, tool, int(cls or 0), float(brush or 8), st)
    if edit is None:
        raise dash.exceptions.PreventUpdate
    new, message = _edit(info, st, edit, select_result=tool not in ("erase", "region"))
    if edit["op"] == "replace" and new is not dash.no_update:
        new["selected"] = st["selected"]
    return new, message


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(CLICK, "data"), State(TOOL, "value"), State(CLS, "value"),
          State(STATE, "data"), State(INFO, "data"), prevent_initial_call=True)
def clicked(point, tool, cls, st, info):
    if not point or tool not in ("select", "point"):
        raise dash.exceptions.PreventUpdate
    if tool == "point":
        result, error = call(drafts.toggle_point, get_config(), state().blobs, info["id"],
                             point["x"], point["y"], int(cls or 0))
        return (dash.no_update, alert(error)) if error else (_state(result), None)
    found, error = call(drafts.cell_at, get_config(), state().blobs, info["id"],
                        point["x"], point["y"])
    if error:
        return dash.no_update, alert(error)
    label, path, _cls = found
    return {**st, "selected": label, "path": path if info["can_edit"] else None}, None


# Polygon corners are collected in the browser: a server round trip per corner would lose
# corners clicked faster than it answers (Dash keeps only the answer to the latest call).
# Closing the polygon (a click near the first corner) hands the corners to the server.
clientside_callback(
    f"""function(point, tool, st, info) {{
        var nu = dash_clientside.no_update;
        if (!point || tool !== 'polygon' || !info.can_edit) {{ return [nu, nu]; }}
        var corners = (st.polygon || []).slice();
        var snap = {POLYGON_SNAP} * Math.max(info.width, info.height);
        if (corners.length >= 3 && Math.abs(point.x - corners[0][0]) <= snap &&
                Math.abs(point.y - corners[0][1]) <= snap) {{
            return [nu, {{corners: corners, t: point.t}}];
        }}
        corners.push([Math.round(point.x * 100) / 100, Math.round(point.y * 100) / 100]);
        return [Object.assign({{}}, st, {{polygon: corners}}), nu];
    }}""",
    Output(STATE, "data", allow_duplicate=True), Output(POLYGON_DONE, "data"),
    Input(CLICK, "data"), State(TOOL, "value"), State(STATE, "data"), State(INFO, "data"),
    prevent_initial_call=True)


def _corners(value) -> list | None:
    """The polygon corners a request carries, or None if they are not a list of (x, y)."""
    if not isinstance(value, list) or len(value) > 10_000:
        return None
    ok = all(isinstance(c, list) and len(c) == 2
             and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c)
             for c in value)
    return value if ok else None


def _close_polygon(corners, cls, st, info):
    if len(corners) < 3:
        return dash.no_update, alert("A polygon needs at least three corners.", "info")
    new, message = _edit(info, st, {"op": "add", "cls": cls, "shape": {
        "type": "path", "path": view.polygon_path(corners, closed=True)}})
    if new is dash.no_update:
        return new, message
    return {**new, "polygon": None}, message


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["close-polygon"], "n_clicks"), State(CLS, "value"), State(STATE, "data"),
          State(INFO, "data"), prevent_initial_call=True)
def close_polygon(_n, cls, st, info):
    corners = _corners(list(st.get("polygon") or []))
    if corners is None:
        return dash.no_update, alert("These polygon corners are not valid.")
    return _close_polygon(corners, int(cls or 0), st, info)


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(POLYGON_DONE, "data"), State(CLS, "value"), State(STATE, "data"),
          State(INFO, "data"), prevent_initial_call=True)
def polygon_closed(done, cls, st, info):
    corners = _corners(done.get("corners")) if isinstance(done, dict) else None
    if corners is None:
        return dash.no_update, alert("These polygon corners are not valid.")
    return _close_polygon(corners, int(cls or 0), st, info)


def _op_callback(button: str, make_edit):
    @callback(Output(STATE, "data", allow_duplicate=True),
              Output(MESSAGE, "children", allow_duplicate=True),
              Input(B[button], "n_clicks"), State(CLS, "value"), State(STATE, "data"),
              State(INFO, "data"), prevent_initial_call=True)
    def _run(_n, cls, st, info):
        edit = make_edit(st, int(cls or 0))
        if edit is None:
            return dash.no_update, alert("Select a cell first (Select tool, click a cell).",
                                         "info")
        return _edit(info, st, edit, select_result=False)
    _run.__name__ = f"on_{button.replace('-', '_')}"
    return _run


on_delete = _op_callback("delete", lambda st, _c: {"op": "delete", "label": st["selected"]}
                         if st.get("selected") else None)
on_clear = _op_callback("clear", lambda _st, _c: {"op": "clear"})
on_whole = _op_callback("whole", lambda _st, _c: {"op": "region_all"})


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(CLS, "value"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def reclassify(cls, st, info):
    if not st.get("selected") or not info["can_edit"]:
        raise dash.exceptions.PreventUpdate
    new, message = _edit(info, st, {"op": "class", "label": st["selected"], "cls": int(cls or 0)})
    return new, message


def _undo_callback(button: str, redo: bool):
    @callback(Output(STATE, "data", allow_duplicate=True),
              Output(MESSAGE, "children", allow_duplicate=True),
              Input(B[button], "n_clicks"), State(INFO, "data"), prevent_initial_call=True)
    def _run(_n, info):
        result, error = call(drafts.undo, get_config(), state().blobs, info["id"], redo=redo)
        return (dash.no_update, alert(error, "info")) if error else (_state(result), None)
    _run.__name__ = f"on_{button}"
    return _run


on_undo = _undo_callback("undo", False)
on_redo = _undo_callback("redo", True)


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["suggest"], "n_clicks"), State(INFO, "data"), prevent_initial_call=True,
          background=True,
          running=[(Output(B["suggest"], "disabled"), True, False),
                   (Output(B["cancel-suggest"], "style"), {}, {"display": "none"})],
          cancel=[Input(B["cancel-suggest"], "n_clicks")],
          progress=[Output(SUGGEST_PROGRESS, "value"), Output(SUGGEST_PROGRESS, "label")])
def suggest(set_progress, _n, info):
    """Runs in the background-callback process: the user is proved by the request's session
    cookie and the page's signed token (app.background.run_as)."""
    server = dash.get_app().server
    app_state = server.extensions["cellloop"]
    set_progress((15, "predicting…"))
    result, error = run_as(server, info.get("token", ""), dash.callback_context.cookies,
                           drafts.use_suggestion,
                           app_state.config, app_state.blobs, info["id"])
    set_progress((100, "done"))
    if error:
        return dash.no_update, alert(error)
    return _state(result), alert(f"Model suggestion loaded: {result.n_cells} cells. Click a "
                                 "cell to reshape or delete it; draw to add.", "info")


# ------------------------------------------------------------------ saving and moving on
def _saved_message(version) -> html.Div:
    return alert(f"Saved version {version.version} ({version.n_cells} cells).", "success")


def _save_callback(button: str, **options):
    @callback(Output(STATE, "data", allow_duplicate=True),
              Output(MESSAGE, "children", allow_duplicate=True),
              Input(B[button], "n_clicks"), State(STATE, "data"), State(INFO, "data"),
              prevent_initial_call=True)
    def _run(_n, st, info):
        version, error = call(annotations.save, get_config(), state().blobs, info["id"],
                              **options)
        if error:
            return dash.no_update, _save_error(error)
        return {**st, "rev": f"v{version.version}", "selected": 0, "path": None,
                "n_cells": version.n_cells, "n_points": version.n_points,
                "can_undo": False, "can_redo": False}, _saved_message(version)
    _run.__name__ = f"on_{button.replace('-', '_')}"
    return _run


def _save_error(error: str):
    if "changed since you opened it" not in error:
        return alert(error)
    return dbc.Alert([error, html.Div([
        dbc.Button("Reload (drop my draft)", id=B["reload"], size="sm", color="secondary",
                   className="me-2 mt-2"),
        dbc.Button("Save mine as a new version", id=B["force"], size="sm", color="warning",
                   className="mt-2")])], color="warning", className="mt-2")


on_save = _save_callback("save")
on_force = _save_callback("force", force=True)
on_empty = _save_callback("empty", empty=True)


@callback(Output(LOCATION, "href", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["reload"], "n_clicks"), State(INFO, "data"), prevent_initial_call=True)
def reload_latest(n, info):
    if not n:
        raise dash.exceptions.PreventUpdate
    _, error = call(drafts.discard, get_config(), info["id"])
    return (dash.no_update, alert(error)) if error else (f"/annotate/{info['id']}", None)


def _go_next(info, skip: bool):
    skipped = [info["id"]] if skip else []
    image_id, error = call(leases.next_image, get_config(), info["project"], skipped,
                           info["id"] if info["can_edit"] else None)
    if error:
        return dash.no_update, alert(error, "info")
    return f"/annotate/{image_id}", None


@callback(Output(LOCATION, "href", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["save-next"], "n_clicks"), State(INFO, "data"),
          prevent_initial_call=True)
def save_and_next(_n, info):
    version, error = call(annotations.save, get_config(), state().blobs, info["id"])
    if error:
        return dash.no_update, _save_error(error)
    return _go_next(info, skip=False)


def _move_callback(button: str, skip: bool):
    @callback(Output(LOCATION, "href", allow_duplicate=True),
              Output(MESSAGE, "children", allow_duplicate=True),
              Input(B[button], "n_clicks"), State(INFO, "data"), prevent_initial_call=True)
    def _run(_n, info):
        return _go_next(info, skip=skip)
    _run.__name__ = f"on_{button}"
    return _run


on_next = _move_callback("next", skip=False)
on_skip = _move_callback("skip", skip=True)


clientside_callback(  # remember the images seen in this tab, for "Previous"
    "function(info, seen) { seen = (seen || []).filter(function (i) { return i !== info.id; });"
    " seen.push(info.id); return seen.slice(-50); }",
    Output(VISITED, "data"), Input(INFO, "data"), State(VISITED, "data"))
clientside_callback(
    "function(n, seen, info) { seen = (seen || []).filter(function (i) { return i !== info.id; });"
    " if (!seen.length) { return dash_clientside.no_update; }"
    " return '/annotate/' + seen[seen.length - 1]; }",
    Output(LOCATION, "href", allow_duplicate=True), Input(B["prev"], "n_clicks"),
    State(VISITED, "data"), State(INFO, "data"), prevent_initial_call=True)


@callback(Output(LEASE, "children"), Output(MESSAGE, "children", allow_duplicate=True),
          Input(LEASE_TIMER, "n_intervals"), State(INFO, "data"), prevent_initial_call=True)
def keep_lease(_n, info):
    lease, error = call(leases.renew, get_config(), info["id"])
    if error:
        return "", alert(error, "warning")
    return f"leased to you until {lease.expires_at:%H:%M} UTC", dash.no_update


@callback(Output(MESSAGE, "children", allow_duplicate=True),
          Output("annotate-status", "children"),
          Input(B["exclude"], "n_clicks"), State(B["note"], "value"), State(INFO, "data"),
          prevent_initial_call=True)
def exclude(_n, note, info):
    detail, error = call(gallery.set_excluded, info["id"], True, note or "")
    if error:
        return alert(error), dash.no_update
    return alert("Image excluded from training and the queue.", "success"), detail.status


def _review_callback(button: str, accept: bool):
    @callback(Output(MESSAGE, "children", allow_duplicate=True),
              Output("annotate-version", "children"),
              Input(B[button], "n_clicks"), State(B["comment"], "value"), State(INFO, "data"),
              prevent_initial_call=True)
    def _run(_n, comment, info):
        version, error = call(annotations.review, info["id"], accept, comment or "",
                              enqueue=state().enqueue)
        if error:
            return alert(error), dash.no_update
        return (alert("Accepted." if accept else "Sent back to the annotator.", "success"),
                f"version {version.version} by {version.author} · {version.review_state}")
    _run.__name__ = f"on_{button.replace('-', '_')}"
    return _run


on_accept = _review_callback("accept", True)
on_send_back = _review_callback("send-back", False)

"""The annotation workspace (/annotate/<image_id>): draw, correct and save cells, review.

Every edit goes to the server as it is made (`drafts.record_edit`), so the draft survives a
closed tab; the page only holds the draft's revision, the selected cell and its outline.
Callbacks each answer one control and call one service; the server checks the role.

Edits show at once (issue 26): the browser's edit queue (assets/annotate_edits.js) draws
the edit's result ahead of the server (the new outline, the deleted cell hidden, the count)
and sends the edits to their server callbacks one at a time, in order; each answer comes back
as an EDIT_ACK with the draft's new state, or the reason it was refused, and the browser
then keeps or rolls back what it showed. The figure and the counts are drawn in the browser.

Classes: the class picker and the keys 1…9 choose the class of the next cell drawn; the
selected cell's class changes only on "Set class" (or Shift+1…9). Suggestion, saving,
moving between images and review live in `pages._annotate_flow`."""
from __future__ import annotations

import importlib
import sys
import uuid

import dash
import dash_bootstrap_components as dbc
from dash import (ALL, ClientsideFunction, Input, Output, Patch, State, callback,
                  clientside_callback, dcc, html)

from flask import current_app

from app.background import sign_actor
from app.context import current_actor, get_config, state
from app.services import (annotations, cell_review, display_settings, drafts,
                          region_queue, starting_models)
from app.states import ReviewState
from pages import _annotate_view as view
from pages import _display
from pages._annotate_ids import (AUTO, B, BRUSH, BRUSH_BOX, CHANNEL_IDS, CLICK, CLS,
                                 COUNTS, DISPLAY_SAVED, EDIT_ACK, EDIT_SEND, GRAPH, IDS, INFO,
                                 LEASE, LEASE_TIMER, PENDING, PICKED, RECLASS_ASK,
                                 LOCATION, MESSAGE, OPACITY, POLYGON_DONE, READOUT, RECLASS,
                                 SCORE_GO, SCORED, SHAPE_EVENT, STATE, STATUS, SUGGEST_GO,
                                 SUGGEST_MODAL,
                                 SUGGEST_PROGRESS, SUGGEST_TEXT, TOOL, VERSION, VISITED, Z)
from app.queue_routes import QUEUED, REVIEWING
from pages._common import alert, call, error_page, to_int, status_word

dash.register_page(__name__, path_template="/annotate/<image_id>", title="Annotate · CellLoop")

POLYGON_SNAP = 0.02            # a click this close to the first corner (fraction of the
                               # image's longer side) closes the polygon


def _button(name: str, label: str, disabled: bool, color="outline-secondary", **kw):
    return dbc.Button(label, id=B[name], size="sm", color=color, disabled=disabled,
                      className="me-1 mb-1", **kw)


def _header(ws: annotations.Workspace, reviewing: bool = False) -> html.Div:
    """Name, status, version, lease and moving on. `reviewing` (opened from the review
    list): Skip and Next go through the review list, so they work on an image the reviewer
    cannot edit (leased to its annotator) too."""
    lease = (f"leased to {ws.lease_holder} until {ws.lease_expires_at:%H:%M} UTC"
             if ws.lease_holder else "")
    return html.Div([
        html.H5(ws.name, className="me-3 mb-0 text-truncate"),
        dbc.Badge(status_word(ws.status), color="secondary", className="me-2", id=STATUS),
        html.Span(view.version_text(ws.latest), className="small text-muted me-3", id=VERSION),
        html.Span(lease, className="small text-muted me-auto", id=LEASE),
        _button("prev", "← Previous", True),
        _button("skip", "Skip", not (ws.can_edit or reviewing)),
        _button("next", "Next →", not (ws.can_edit or reviewing)),
        dcc.Link("project", href=f"/projects/{ws.project_id}", className="ms-2 small"),
    ], className="d-flex align-items-center flex-wrap mb-2 annotate-header")


def _notices(ws: annotations.Workspace) -> list:
    out = []
    if ws.read_only_reason:
        out.append(dbc.Alert(ws.read_only_reason, color="secondary", className="py-2",
                             id="annotate-read-only"))
    if ws.latest and ws.latest.review_state == ReviewState.returned:
        out.append(dbc.Alert([html.B(f"Sent back by {ws.latest.reviewer}: "),
                              ws.latest.review_comment], color="warning", className="py-2",
                             id="annotate-returned"))
    if ws.focus is not None and ws.can_edit:
        y0, x0, y1, x1 = ws.focus
        out.append(dbc.Alert(
            f"Annotate the region the queue chose: {x1 - x0}×{y1 - y0} px at x {x0}, y {y0} "
            "(outside it is dimmed and not used for training). Outline every cell in it, "
            "then save; the rest of the image comes back to the queue region by region "
            "(scroll or the zoom tool shows more of it).", color="info", className="py-2",
            id="annotate-focus"))
    if ws.draft_stale:
        out.append(dbc.Alert(
            f"Someone saved version {ws.latest.version} after you started this draft "
            f"(from version {ws.draft_base_version or 'none'}). Reload to start from theirs, "
            "or keep editing and save yours as a new version.", color="warning",
            className="py-2"))
    return out


def _display_controls(ws: annotations.Workspace, channels) -> html.Details:
    return html.Details([
        html.Summary("Display: channels, contrast, z", className="h6 mt-3"),
        *_display.channel_controls(channels, CHANNEL_IDS),
        html.Div([dbc.Button("Auto contrast", id=AUTO, size="sm", color="outline-secondary",
                             className="me-2"),
                  html.Span(id=DISPLAY_SAVED, className="small text-muted")],
                 className="d-flex align-items-center mb-2"),
        html.Div([html.Span("Z plane", className="small"),
                  dcc.Slider(id=Z, min=0, max=max(0, ws.z_count - 1), step=1, value=0,
                             marks=None, tooltip={"placement": "bottom"})],
                 style={} if ws.z_count > 1 else {"display": "none"}),
    ], id="annotate-display")


def _first_tool(ws: annotations.Workspace) -> str:
    return "point" if ws.counting and ws.can_edit else "select"


def _suggest_modal() -> dbc.Modal:
    return dbc.Modal([
        dbc.ModalHeader(dbc.ModalTitle("Replace with the model's suggestion?")),
        dbc.ModalBody(html.P(id=SUGGEST_TEXT)),
        dbc.ModalFooter([
            dbc.Button("Keep my cells", id=B["suggest-keep"], color="secondary"),
            dbc.Button("Replace with suggestion", id=B["suggest-confirm"], color="info")]),
    ], id=SUGGEST_MODAL, is_open=False)


def _tools(ws: annotations.Workspace) -> list:
    """The left column: tools, brush width, class of new cells (all visible at 1280x720)."""
    ro, outlines = not ws.can_edit, not ws.counting
    hidden = {"display": "none"}
    return [
        html.H6("Tools"), view.tool_buttons(IDS, ro, _first_tool(ws), ws.counting),
        html.Div([
            html.Div([html.Span("Brush width (px)", className="small me-auto"),
                      _button("brush-down", "−", ro), _button("brush-up", "+", ro)],
                     className="d-flex align-items-center mt-1"),
            dcc.Slider(id=BRUSH, min=1, max=60, step=1, value=8, marks=None, disabled=ro,
                       tooltip={"placement": "bottom"}, allow_direct_input=False),
        ], id=BRUSH_BOX, style={} if outlines else hidden),
        html.H6("Class of new cells (1–9)", className="mt-2"),
        view.class_picker(IDS, ws.classes, ro),
        _button("set-class", "Set selected cell's class", True, title="Shift+1 … 9"),
    ]


def _panel(ws: annotations.Workspace, channels) -> list:
    """The right column: Save and the cell count always on top (sticky), then edits,
    suggestion, display, quality, review and the keyboard help (scrolls)."""
    ro, outlines = not ws.can_edit, not ws.counting
    hidden = {"display": "none"}
    review = dbc.Card(dbc.CardBody([
        html.H6("Review"),
        dbc.Textarea(id=B["comment"], placeholder="what needs to change", size="sm"),
        _button("accept", "Accept", False, "success"),
        _button("send-back", "Send back", False, "warning"),
    ]), className="mt-3") if ws.can_review and ws.latest else None
    return [
        html.Div([
            html.Div([_button("save", "Save (Ctrl+S)", ro, "primary"),
                      _button("save-next", "Save & next (N)", ro, "primary"),
                      _button("empty", "No cells", ro, "outline-secondary")]),
            dcc.Loading(html.Div(id=COUNTS, className="small"), type="dot"),
            html.Div(id=MESSAGE),
        ], className="annotate-save-bar"),
        view.review_box(ws.can_edit),
        html.Div([_button("undo", "Undo", ro or not ws.can_undo),
                  _button("redo", "Redo", ro or not ws.can_redo),
                  _button("delete", "Delete cell", ro, "outline-danger",
                          style={} if outlines else hidden),
                  _button("deselect", "Deselect", False),
                  _button("close-polygon", "Close polygon", ro,
                          style={} if outlines else hidden)], className="mt-2"),
        html.Div([_button("suggest", "Use model suggestion", ro, "outline-info"),
                  _button("cancel-suggest", "Cancel", ro, "outline-secondary", style=hidden),
                  _button("revert", "Revert to last saved", ro),
                  _button("clear", "Clear all", ro, "outline-danger"),
                  _button("whole", "Whole image annotated", ro)]),
        # shown only while the model is suggesting (pages._annotate_flow.suggest)
        dbc.Progress(id=SUGGEST_PROGRESS, value=0, className="my-1", style=hidden),
        html.Div("The model's points: a wide orange-and-white ring marks one it is unsure of "
                 "(found in under half of its MC-dropout samples); check those first.",
                 className="small text-muted", id="annotate-points-legend")
        if ws.counting else None,
        html.H6("Overlay opacity", className="mt-3"),
        dcc.Slider(id=OPACITY, min=0, max=1, step=0.05, value=0.8, marks=None),
        _display_controls(ws, channels),
        html.H6("Quality", className="mt-2"),
        dbc.Textarea(id=B["note"], value=ws.quality_note, placeholder="why exclude (note)",
                     size="sm", disabled=ro),
        _button("exclude", "Exclude image", ro, "outline-warning"),
        review, view.shortcuts_help(ws.counting),
    ]


def auto_suggests(ws: annotations.Workspace, n_cells, n_points) -> bool:
    """Whether the workspace shows the active model's cells on its own when it opens: an
    editable image nobody saved a version of, the user's draft untouched (no edits, nothing
    undone, no cells or points) and a model to ask. Never over cells already on screen, and
    not in counting projects (points are marked by hand; the button offers the model's
    points, or the centres of its cells when it draws outlines)."""
    if (not ws.can_edit or ws.counting or ws.latest is not None or ws.can_undo
            or ws.can_redo):
        return False
    if n_cells or n_points:
        return False
    ok, _ = call(starting_models.suggests_on_open, ws.project_id)
    return bool(ok)


def _zoom(ws: annotations.Workspace):
    """Open on the region the queue served (region mode), with some context around it."""
    return (None if ws.focus is None else
            region_queue.view_range(ws.focus, ws.width, ws.height))


def layout(image_id=None, **query):
    queued = query.get("from") == QUEUED          # handed out by the annotation queue
    ws, error = call(annotations.open_workspace, get_config(), to_int(image_id),
                     state().store, queued)
    if error:
        return error_page(error)
    color = (ws.classes[0].get("color") if ws.classes else None) or "#ffff00"
    channels, _ = call(display_settings.channel_display, state().store, ws.image_id, 0)
    channels = channels or []
    n_cells, n_points = ws.n_cells, ws.n_points
    if n_cells is None:       # not known from the versions alone: ask the draft
        counted, _ = call(drafts.counts, get_config(), state().store, ws.image_id)
        n_cells, n_points = counted or (None, None)
    first = {"rev": ws.draft_rev, "selected": 0, "selected_cls": 0, "path": None,
             "n_cells": n_cells, "n_points": n_points, "can_undo": ws.can_undo,
             "can_redo": ws.can_redo}
    return html.Div([
        dcc.Store(id=INFO, data={"id": ws.image_id, "project": ws.project_id,
                                 "page": uuid.uuid4().hex,     # this opening (edit queue)
                                 "token": sign_actor(current_app.secret_key, current_actor()),
                                 "width": ws.width, "height": ws.height,
                                 "colors": [c.get("color") for c in ws.classes] or [color],
                                 "classes": [c.get("name") for c in ws.classes] or ["cell"],
                                 "can_edit": ws.can_edit, "queued": queued,
                                 # opened from the review list: Next goes on through it
                                 "reviewing": query.get("from") == REVIEWING,
                                 "counting": ws.counting,      # a points project
                                 "auto_suggest": auto_suggests(ws, n_cells, n_points),
                                 "score_pending": ws.can_edit and bool(
                                     call(cell_review.pending, ws.image_id)[0])}),
        dcc.Store(id=STATE, data=first), dcc.Store(id=CLICK), dcc.Store(id=SHAPE_EVENT),
        dcc.Store(id=POLYGON_DONE), dcc.Store(id=RECLASS), dcc.Store(id=SUGGEST_GO),
        dcc.Store(id=SCORE_GO), dcc.Store(id=SCORED),
        dcc.Store(id=EDIT_SEND), dcc.Store(id=EDIT_ACK), dcc.Store(id=PENDING),
        dcc.Store(id=PICKED), dcc.Store(id=RECLASS_ASK),
        dcc.Store(id=VISITED, storage_type="session"),
        dcc.Location(id=LOCATION, refresh="callback-nav"),
        dcc.Interval(id=LEASE_TIMER, interval=5 * 60 * 1000, disabled=not ws.can_edit),
        _suggest_modal(), _header(ws, query.get("from") == REVIEWING), *_notices(ws),
        html.Div([
            html.Div(_tools(ws), className="annotate-tools"),
            html.Div([view.graph(GRAPH, view.figure(ws.image_id, ws.width, ws.height,
                                                    ws.draft_rev, 0.8, _first_tool(ws), color,
                                                    8, [_display.view(ch) for ch in channels],
                                                    _zoom(ws)),
                                 ws.can_edit),
                      _display.readout(GRAPH, READOUT)], className="graph-frame"),
            html.Div(_panel(ws, channels), className="annotate-panel"),
        ], className="annotate-main"),
    ], className="annotate-page")


# ------------------------------------------------------------------ showing the draft
# Drawn in the browser (no round trip): the overlay's address for the draft's revision and
# selection, the selected cell's editable outline, the polygon being clicked and the edits
# still on their way to the server (assets/annotate_edits.js).
clientside_callback(
    ClientsideFunction("cellloop_annotate", "render"),
    Output(GRAPH, "figure"), Input(STATE, "data"), Input(PENDING, "data"),
    Input(OPACITY, "value"), State(INFO, "data"), State(GRAPH, "figure"),
    prevent_initial_call=True)


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


_display.register(CHANNEL_IDS, INFO, DISPLAY_SAVED, AUTO, Z)


@callback(Output(GRAPH, "figure", allow_duplicate=True), Input(TOOL, "value"),
          Input(BRUSH, "value"), Input(CLS, "value"), State(INFO, "data"),
          prevent_initial_call=True)
def choose_tool(tool, brush, cls, info):
    if not info.get("can_edit") and tool not in view.VIEW_TOOLS:
        tool = "select"                  # a read-only page never gets a drawing drag mode
    colors = info["colors"]
    fig = Patch()
    fig["layout"]["dragmode"] = view.DRAGMODE.get(tool, "pan")
    fig["layout"]["newshape"] = view.newshape(tool, colors[min(int(cls or 0), len(colors) - 1)],
                                              float(brush or 8))
    return fig


# "12 cells · cell 5 selected (nucleus) · saving 1 edit…", drawn in the browser
clientside_callback(
    ClientsideFunction("cellloop_annotate", "counts"),
    Output(COUNTS, "children"), Output(B["undo"], "disabled"), Output(B["redo"], "disabled"),
    Output(B["set-class"], "disabled"), Input(STATE, "data"), Input(PENDING, "data"),
    State(INFO, "data"))


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
    result, error = call(drafts.record_edit, get_config(), state().store, info["id"], edit)
    if error:
        return dash.no_update, alert(error)
    label = result.label if select_result else 0
    cls = edit.get("cls", st.get("selected_cls", 0)) if label else 0
    return view.state_from(result, label or 0, None, int(cls or 0)), None


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
    if tool == "ellipse" and shape.get("type") == "rect":   # the box it was dragged in
        shape = {**shape, "type": "circle"}
    if tool in ("draw", "rect", "ellipse"):
        return {"op": "add", "shape": shape, "cls": cls}
    if tool == "brush":
        return {"op": "brush", "shape": shape, "width": brush, "label": st.get("selected") or None}
    if tool == "erase":
        return {"op": "erase", "shape": shape, "width": brush}
    if tool == "region":
        return {"op": "region", "shape": shape}
    return None


def acked(request, run) -> tuple:
    """(message, ack) for the browser's edit queue: `run()` is one edit's answer (new page
    state or no_update, message). The ack names the request's `seq` (the queue waits for it
    before it sends the next edit), says whether the server kept the edit and carries the
    draft's new state; a request that was no edit (PreventUpdate) is acknowledged too."""
    seq = request.get("seq", request.get("_seq")) if isinstance(request, dict) else None
    try:
        new, message = run()
    except dash.exceptions.PreventUpdate:
        return dash.no_update, {"seq": seq, "ok": True, "state": None}
    ok = new is not dash.no_update
    return message, {"seq": seq, "ok": ok, "state": new if ok else None}


ACKED = (Output(MESSAGE, "children", allow_duplicate=True),
         Output(EDIT_ACK, "data", allow_duplicate=True))

# Plotly relayout events: the edit queue (annotate_edits.js) shows a drawn shape at once and
# hands it to SHAPE_EVENT when the edits before it are answered. Zoom, pan and autosize
# events never leave the browser.
clientside_callback(
    ClientsideFunction("cellloop_annotate", "relayout"),
    Output(STATE, "data", allow_duplicate=True), Output(PENDING, "data", allow_duplicate=True),
    Input(GRAPH, "relayoutData"), State(TOOL, "value"), State(CLS, "value"),
    State(BRUSH, "value"), State(STATE, "data"), State(INFO, "data"),
    prevent_initial_call=True)


def drawn(relayout, tool, cls, brush, st, info):
    edit = edit_for_drawing(relayout, tool, int(cls or 0), float(brush or 8), st)
    if edit is None:
        raise dash.exceptions.PreventUpdate
    new, message = _edit(info, st, edit, select_result=tool not in ("erase", "region"))
    if edit["op"] == "replace" and new is not dash.no_update:
        new["selected"], new["selected_cls"] = st["selected"], st.get("selected_cls", 0)
    return new, message


@callback(*ACKED, Input(SHAPE_EVENT, "data"), State(TOOL, "value"), State(CLS, "value"),
          State(BRUSH, "value"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def on_drawn(relayout, tool, cls, brush, st, info):
    # the edit queue sends what the page was set to when the shape was drawn (`_ctx`): the
    # tool, class or selection may have changed while it waited its turn
    ctx = relayout.get("_ctx") if isinstance(relayout, dict) else None
    if isinstance(ctx, dict):
        tool, cls, brush = ctx.get("tool", tool), ctx.get("cls", cls), ctx.get("brush", brush)
        st = {**(st or {}), "selected": to_int(ctx.get("selected")) or 0,
              "path": ctx.get("path")}
    return acked(relayout, lambda: drawn(relayout, tool, cls, brush, st, info))


def clicked(point, tool, cls, st, info):
    if not point or tool not in ("select", "point"):
        raise dash.exceptions.PreventUpdate
    if tool == "point":
        result, error = call(drafts.toggle_point, get_config(), state().store, info["id"],
                             point["x"], point["y"], int(cls or 0))
        if error:
            return dash.no_update, alert(error)
        return view.state_from(result), None
    found, error = call(drafts.cell_at, get_config(), state().store, info["id"],
                        point["x"], point["y"])
    if error:
        return dash.no_update, alert(error)
    label, path, cls = found
    return {**st, "selected": label, "selected_cls": cls,
            "path": path if info["can_edit"] else None}, None


@callback(Output(PICKED, "data"), Output(MESSAGE, "children", allow_duplicate=True),
          Input(CLICK, "data"), State(TOOL, "value"), State(CLS, "value"),
          State(STATE, "data"), State(INFO, "data"), prevent_initial_call=True)
def on_click(point, tool, cls, st, info):
    """The selection a click found (only its fields: edits answered meanwhile keep theirs),
    or the points after a point click; merged into the page's state in the browser."""
    new, message = clicked(point, tool, cls, st, info)
    if new is not dash.no_update and tool == "select":
        new = {k: new.get(k) for k in ("selected", "selected_cls", "path")}
    return new, message


clientside_callback(
    "function(picked, st) { return picked ? Object.assign({}, st, picked)"
    " : dash_clientside.no_update; }",
    Output(STATE, "data", allow_duplicate=True), Input(PICKED, "data"), State(STATE, "data"),
    prevent_initial_call=True)


# Polygon corners are collected in the browser: a server round trip per corner would lose
# corners clicked faster than it answers (Dash keeps only the answer to the latest call).
# Closing the polygon (a click near the first corner, Enter or the button) puts the corners
# into the edit queue, which hands them to POLYGON_DONE in turn.
clientside_callback(
    f"""function(point, tool, st, info, cls) {{
        var nu = dash_clientside.no_update;
        if (!point || tool !== 'polygon' || !info.can_edit) {{ return [nu, nu]; }}
        var corners = (st.polygon || []).slice();
        var snap = {POLYGON_SNAP} * Math.max(info.width, info.height);
        if (corners.length >= 3 && Math.abs(point.x - corners[0][0]) <= snap &&
                Math.abs(point.y - corners[0][1]) <= snap) {{
            return window.CellLoopEdits.polygon(corners, cls, st, info);
        }}
        corners.push([Math.round(point.x * 100) / 100, Math.round(point.y * 100) / 100]);
        return [Object.assign({{}}, st, {{polygon: corners}}), nu];
    }}""",
    Output(STATE, "data", allow_duplicate=True), Output(PENDING, "data", allow_duplicate=True),
    Input(CLICK, "data"), State(TOOL, "value"), State(STATE, "data"), State(INFO, "data"),
    State(CLS, "value"), prevent_initial_call=True)
clientside_callback(
    "function(n, st, info, cls) {"
    " return window.CellLoopEdits.polygon((st && st.polygon) || [], cls, st, info); }",
    Output(STATE, "data", allow_duplicate=True), Output(PENDING, "data", allow_duplicate=True),
    Input(B["close-polygon"], "n_clicks"), State(STATE, "data"), State(INFO, "data"),
    State(CLS, "value"), prevent_initial_call=True)


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


def close_polygon(_n, cls, st, info):
    """The corners on the page's state as a cell (the browser sends them through
    POLYGON_DONE; kept for callers that hold the state)."""
    corners = _corners(list(st.get("polygon") or []))
    if corners is None:
        return dash.no_update, alert("These polygon corners are not valid.")
    return _close_polygon(corners, int(cls or 0), st, info)


def polygon_closed(done, cls, st, info):
    corners = _corners(done.get("corners")) if isinstance(done, dict) else None
    if corners is None:
        return dash.no_update, alert("These polygon corners are not valid.")
    return _close_polygon(corners, int(cls or 0), st, info)


@callback(*ACKED, Input(POLYGON_DONE, "data"), State(CLS, "value"), State(STATE, "data"),
          State(INFO, "data"), prevent_initial_call=True)
def on_polygon_closed(done, cls, st, info):
    if isinstance(done, dict) and "cls" in done:      # the class when it was closed
        cls = done["cls"]
    return acked(done, lambda: polygon_closed(done, to_int(cls) or 0, st, info))


# Delete, Clear, Whole image, Undo and Redo: the button puts the request into the edit queue
# (which shows its result at once), the queue hands it to EDIT_SEND in turn.
for _kind in ("delete", "clear", "whole", "undo", "redo"):
    clientside_callback(
        f"function(n, st, info) {{ return window.CellLoopEdits.op('{_kind}', st, info); }}",
        Output(STATE, "data", allow_duplicate=True),
        Output(PENDING, "data", allow_duplicate=True),
        Input(B[_kind], "n_clicks"), State(STATE, "data"), State(INFO, "data"),
        prevent_initial_call=True)


def _undo(info, redo: bool):
    result, error = call(drafts.undo, get_config(), state().store, info["id"], redo=redo)
    if error:
        return dash.no_update, alert(error, "info")
    return view.state_from(result), None


def run_request(request: dict, st: dict, info: dict):
    """One queued button edit: (new page state or no_update, message)."""
    kind = request.get("kind")
    if kind in ("undo", "redo"):
        return _undo(info, redo=kind == "redo")
    if kind == "clear":
        return _edit(info, st, {"op": "clear"}, select_result=False)
    if kind == "whole":
        return _edit(info, st, {"op": "region_all"}, select_result=False)
    if kind == "delete":
        label = to_int(request.get("label"))
        if not label:
            return dash.no_update, alert("Select a cell first (Select tool, click a cell).",
                                         "info")
        return _edit(info, st, {"op": "delete", "label": label}, select_result=False)
    return dash.no_update, alert("Unknown edit.")


@callback(*ACKED, Input(EDIT_SEND, "data"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def on_request(request, st, info):
    if not isinstance(request, dict):
        raise dash.exceptions.PreventUpdate
    return acked(request, lambda: run_request(request, st or {}, info))


# The queue's answers: keep or roll back what the screen shows, send the next edit.
clientside_callback(
    ClientsideFunction("cellloop_annotate", "ack"),
    Output(STATE, "data", allow_duplicate=True), Output(PENDING, "data", allow_duplicate=True),
    Input(EDIT_ACK, "data"), State(STATE, "data"), prevent_initial_call=True)


# Class keys and the picker choose the class of the next cell only; the selected cell's class
# changes on an explicit request: the "Set class" button (the picker's class) or Shift+1…9
# (annotate.js), both through RECLASS_ASK into the edit queue, which hands them to RECLASS.
clientside_callback(
    "function(n, cls) { return {cls: cls || 0, t: Date.now()}; }",
    Output(RECLASS_ASK, "data"), Input(B["set-class"], "n_clicks"),
    State(CLS, "value"), prevent_initial_call=True)
clientside_callback(
    "function(ask, st, info) { return window.CellLoopEdits.reclass(ask, st, info); }",
    Output(STATE, "data", allow_duplicate=True), Output(PENDING, "data", allow_duplicate=True),
    Input(RECLASS_ASK, "data"), State(STATE, "data"), State(INFO, "data"),
    prevent_initial_call=True)


def reclassify(request, st, info):
    cls = to_int((request or {}).get("cls")) if isinstance(request, dict) else None
    if cls is None:
        raise dash.exceptions.PreventUpdate
    if not st.get("selected"):
        return dash.no_update, alert("Select a cell first (Select tool, click a cell), then "
                                     "set its class.", "info")
    new, message = _edit(info, st, {"op": "class", "label": st["selected"], "cls": cls})
    if new is not dash.no_update:
        new["path"] = st.get("path")          # still selected, still reshapeable
    return new, message


@callback(*ACKED, Input(RECLASS, "data"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def on_reclassify(request, st, info):
    if isinstance(request, dict) and to_int(request.get("label")):
        st = {**(st or {}), "selected": to_int(request["label"])}   # selected when asked
    return acked(request, lambda: reclassify(request, st or {}, info))


# The suggestion, saving and moving callbacks live in a helper module. pages.init_dash
# re-executes page modules for every app it builds (tests build many), so the helper is
# re-executed with this module to register its callbacks with that app too.
for _helper in ("pages._annotate_flow", "pages._annotate_review"):
    if _helper in sys.modules:
        importlib.reload(sys.modules[_helper])
    else:
        importlib.import_module(_helper)

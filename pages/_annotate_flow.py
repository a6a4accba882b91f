"""The annotation workspace's callbacks beyond drawing: the model suggestion (asked for
when it would replace cells on screen, undoable), "Revert to last saved", saving (the header
follows), moving between images (Previous walks back through this tab's history like a
browser's Back), the lease, excluding and reviewing. Imported by `pages.annotate`."""
from __future__ import annotations

import time

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, html

from app.background import run_as
from app.context import get_config, state
from app.queue_routes import queued_url, review_url
from app.services import annotations, cell_review, drafts, gallery, leases
from app.wording import cells_and_points, plural
from pages import _annotate_view as view
from pages._annotate_ids import (B, INFO, LEASE, LEASE_TIMER, LOCATION, MESSAGE, SCORE_GO,
                                 STATE, STATUS,
                                 SUGGEST_GO, SUGGEST_MODAL, SUGGEST_PROGRESS, SUGGEST_TEXT,
                                 VERSION, VISITED)
from pages._common import alert, call, status_word


# ------------------------------------------------------------------ model suggestion
# With cells or points on screen the suggestion asks first (it replaces them; Undo brings
# them back); on an empty draft it runs at once. SUGGEST_GO starts the background callback.
# An untouched image of a project with a model starts it when the page opens
# (INFO.auto_suggest, decided by the layout), unless cells are on screen by then.
clientside_callback(
    """function(info, st) {
        var nu = dash_clientside.no_update;
        if (!info || !info.auto_suggest || (st && (st.n_cells || st.n_points))) { return nu; }
        return {t: Date.now(), auto: true};
    }""",
    Output(SUGGEST_GO, "data", allow_duplicate=True), Input(INFO, "data"), State(STATE, "data"),
    prevent_initial_call="initial_duplicate")
clientside_callback(
    """function(n, st, info) {
        // a counting project's suggestion replaces the points (outlines stay), an outline
        // project's the cells (points stay): ask only when it would replace something
        var nu = dash_clientside.no_update, counting = info && info.counting;
        var k = (counting ? (st && st.n_points) : (st && st.n_cells)) || 0;
        if (!k) { return [nu, nu, {t: Date.now()}]; }
        var word = counting ? (k === 1 ? ' point' : ' points') : (k === 1 ? ' cell' : ' cells');
        return [true, 'The suggestion replaces the ' + k + word + ' on screen with the ' +
                'model\\'s' + (counting ? ' points' : ' cells') +
                '. Undo (Ctrl+Z) brings yours back.', nu];
    }""",
    Output(SUGGEST_MODAL, "is_open"), Output(SUGGEST_TEXT, "children"),
    Output(SUGGEST_GO, "data"), Input(B["suggest"], "n_clicks"), State(STATE, "data"),
    State(INFO, "data"), prevent_initial_call=True)
clientside_callback(
    "function(n) { return [false, {t: Date.now()}]; }",
    Output(SUGGEST_MODAL, "is_open", allow_duplicate=True),
    Output(SUGGEST_GO, "data", allow_duplicate=True), Input(B["suggest-confirm"], "n_clicks"),
    prevent_initial_call=True)
clientside_callback(
    "function(n) { return false; }",
    Output(SUGGEST_MODAL, "is_open", allow_duplicate=True), Input(B["suggest-keep"], "n_clicks"),
    prevent_initial_call=True)


def suggest_untouched(session, actor, config, store, image_id: int):
    """The automatic suggestion: (draft state, True), or, when the user edited the draft
    while the model was predicting (the page opened untouched, so any edit besides the
    suggestion's is theirs), the suggestion taken back at once (Redo brings it): (state,
    False). Never leaves the model's cells over cells the user drew."""
    result = drafts.use_suggestion(session, actor, config, store, image_id, auto=True)
    draft = drafts.find_draft(session, actor, image_id)
    if draft is not None and len(draft.edits or []) > 1:
        return drafts.undo(session, actor, config, store, image_id), False
    return result, True


# How often the page asks whether the suggestion is ready (Dash's default, 1 s, was most of
# the wait for a small image: the prediction itself takes a fraction of that).
SUGGEST_POLL_MS = 200


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Output(SCORE_GO, "data", allow_duplicate=True),
          Input(SUGGEST_GO, "data"), State(INFO, "data"), prevent_initial_call=True,
          background=True,
          running=[(Output(B["suggest"], "disabled"), True, False),
                   (Output(B["cancel-suggest"], "style"), {}, {"display": "none"}),
                   (Output(SUGGEST_PROGRESS, "style"), {}, {"display": "none"})],
          cancel=[Input(B["cancel-suggest"], "n_clicks")],
          progress=[Output(SUGGEST_PROGRESS, "value"), Output(SUGGEST_PROGRESS, "label")],
          interval=SUGGEST_POLL_MS)
def suggest(set_progress, go, info):
    """Runs in the background-callback process: the user is proved by the request's session
    cookie and the page's signed token (app.background.run_as). `go.auto`: started by the
    page on opening an untouched image, not by the button."""
    server = dash.get_app().server
    app_state = server.extensions["cellloop"]
    set_progress((15, "predicting…"))
    auto = isinstance(go, dict) and go.get("auto")
    result, error = run_as(server, info.get("token", ""), dash.callback_context.cookies,
                           suggest_untouched if auto else drafts.use_suggestion,
                           app_state.config, app_state.store, info["id"])
    set_progress((100, "done"))
    if error:
        return dash.no_update, alert(f"The model could not suggest cells: {error}"
                                     if auto else error), dash.no_update
    # cells shown without their uncertainty are scored next (pages._annotate_review)
    pending, _ = run_as(server, info.get("token", ""), dash.callback_context.cookies,
                        cell_review.pending, info["id"])
    score = {"image": info["id"], "t": time.time()} if pending else dash.no_update
    if auto:
        result, applied = result
        if not applied:
            return view.state_from(result), alert(
                "The model's suggestion came after you started drawing, so it was set aside: "
                "Redo (Ctrl+Y) or Use model suggestion brings it.", "info"), dash.no_update
        return view.state_from(result), alert(
            f"These {plural(result.n_cells, 'cell')} are the model's suggestion, not yet "
            "checked: "
            "correct them (click a cell to reshape or delete it, draw to add one), then save. "
            "Undo (Ctrl+Z) clears them.", "info", id="annotate-auto-suggested"), score
    if info.get("counting"):                         # the model's points, or its cells' centres
        return view.state_from(result), alert(
            f"Model suggestion loaded: {plural(result.n_points, 'point')}. Click a point to "
            "remove it, click a cell it missed to add one; Undo (Ctrl+Z) brings back what was "
            "there before.", "info"), score
    return view.state_from(result), alert(
        f"Model suggestion loaded: {plural(result.n_cells, 'cell')}. Click a cell to reshape "
        "or delete it; draw to add; Undo (Ctrl+Z) brings back what was there before.", "info"
    ), score


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["revert"], "n_clicks"), State(INFO, "data"), prevent_initial_call=True)
def revert(_n, info):
    done, error = call(drafts.revert_to_saved, get_config(), state().store, info["id"])
    if error:
        return dash.no_update, alert(error, "info")
    result, version = done
    return view.state_from(result), alert(
        f"Back to saved version {version}. Undo (Ctrl+Z) returns to your edits.", "info")


# ------------------------------------------------------------------ saving
def _saved_message(version, image_id: int | None = None) -> html.Div:
    """"Saved version 3 (26 cells)", and how many uncertain suggested cells nobody checked
    (they are saved as the model drew them)."""
    saved = cells_and_points(version.n_cells, version.n_points)
    text = f"Saved version {version.version} ({saved})."
    if image_id is not None:
        summary, _ = call(cell_review.summary, get_config(), state().store, image_id)
        if summary is not None and summary.uncertain:
            n = summary.uncertain
            text += (f" {n} uncertain suggested {'cell was' if n == 1 else 'cells were'} "
                     "not checked (kept as the model drew them; U goes to them).")
    return alert(text, "success")


def _save_error(error: str):
    if "changed since you opened it" not in error:
        return alert(error)
    return dbc.Alert([error, html.Div([
        dbc.Button("Reload (drop my draft)", id=B["reload"], size="sm", color="secondary",
                   className="me-2 mt-2"),
        dbc.Button("Save mine as a new version", id=B["force"], size="sm", color="warning",
                   className="mt-2")])], color="warning", className="mt-2")


def _save_callback(button: str, **options):
    @callback(Output(STATE, "data", allow_duplicate=True),
              Output(MESSAGE, "children", allow_duplicate=True),
              Output(STATUS, "children", allow_duplicate=True),
              Output(VERSION, "children", allow_duplicate=True),
              Input(B[button], "n_clicks"), State(STATE, "data"), State(INFO, "data"),
              prevent_initial_call=True)
    def _run(_n, st, info):
        saved, error = call(annotations.save_in_workspace, get_config(), state().store,
                            info["id"], **options)
        if error:
            return dash.no_update, _save_error(error), dash.no_update, dash.no_update
        # The draft is kept with its edits (Undo still works) and looks the same: the overlay
        # keeps its address (loading it again held the "Saved" message up by 40-60 ms at
        # 5,000 cells) unless the save changed it.
        version, st = saved.version, st or {}
        new = {**st, "rev": f"v{version.version}" if saved.redraw else st.get("rev"),
               "selected": 0, "path": None,
               "n_cells": version.n_cells, "n_points": version.n_points,
               "can_undo": saved.can_undo, "can_redo": saved.can_redo}
        return (new, _saved_message(version, info["id"]), view.status_after_save(version),
                view.version_text(version))
    _run.__name__ = f"on_{button.replace('-', '_')}"
    return _run


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
    again = (queued_url(info["id"]) if info.get("queued") else review_url(info["id"])
             if info.get("reviewing") else f"/annotate/{info['id']}")
    return (dash.no_update, alert(error)) if error else (again, None)


# ------------------------------------------------------------------ moving between images
def _go_next(info, skip: bool):
    if info.get("reviewing"):     # a reviewer's Next: the next image waiting for review
        image_id, error = call(annotations.next_to_review, info["project"], info["id"],
                               release=bool(info["can_edit"]))
        if error:
            return dash.no_update, alert(error, "info")
        if image_id is None:
            return f"/projects/{info['project']}/review", None
        return review_url(image_id), None
    skipped = [info["id"]] if skip else []
    image_id, error = call(leases.next_image, get_config(), info["project"], skipped,
                           info["id"] if info["can_edit"] else None)
    if error:
        return dash.no_update, alert(error, "info")
    return queued_url(image_id), None


@callback(Output(LOCATION, "href", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["save-next"], "n_clicks"), State(INFO, "data"),
          prevent_initial_call=True)
def save_and_next(_n, info):
    version, error = call(annotations.save, get_config(), state().store, info["id"])
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

# This tab's history of workspace images, like a browser's: {stack: [ids], pos: index of the
# image on screen, back: the id "Previous" is going to}. Opening an image by any other way
# drops what lay ahead of the current one and adds it; "Previous" only moves `pos` back, so
# pressing it again keeps walking back (it used to bounce between the last two images).
HISTORY_JS = """
    function history(seen) {
        if (Array.isArray(seen)) { return {stack: seen.slice(), pos: seen.length - 1, back: null}; }
        if (!seen || !Array.isArray(seen.stack)) { return {stack: [], pos: -1, back: null}; }
        return {stack: seen.stack.slice(), pos: seen.pos, back: seen.back};
    }
"""
clientside_callback(
    f"""function(info, seen) {{ {HISTORY_JS}
        var h = history(seen);
        if (!(h.back === info.id && h.stack[h.pos] === info.id) && h.stack[h.pos] !== info.id) {{
            h.stack = h.stack.slice(0, h.pos + 1);
            h.stack.push(info.id);
            h.stack = h.stack.slice(-50);
            h.pos = h.stack.length - 1;
        }}
        h.back = null;
        return [h, h.pos <= 0];
    }}""",
    Output(VISITED, "data"), Output(B["prev"], "disabled"), Input(INFO, "data"),
    State(VISITED, "data"))
clientside_callback(
    f"""function(n, seen, info) {{ {HISTORY_JS}
        var h = history(seen);
        if (h.pos <= 0) {{ return [dash_clientside.no_update, dash_clientside.no_update]; }}
        h.pos -= 1;
        h.back = h.stack[h.pos];
        // a reviewer stays in review mode (their Next goes on through the review list)
        return [h, '/annotate/' + h.back + (info && info.reviewing ? '?from=review' : '')];
    }}""",
    Output(VISITED, "data", allow_duplicate=True),
    Output(LOCATION, "href", allow_duplicate=True), Input(B["prev"], "n_clicks"),
    State(VISITED, "data"), State(INFO, "data"), prevent_initial_call=True)


@callback(Output(LEASE, "children"), Output(MESSAGE, "children", allow_duplicate=True),
          Input(LEASE_TIMER, "n_intervals"), State(INFO, "data"), prevent_initial_call=True)
def keep_lease(_n, info):
    # always written: edits and opens keep a fresh lease without writing it, so this tick
    # (every few minutes) is what keeps a lease from running out while the page is open
    lease, error = call(leases.renew, get_config(), info["id"], always=True)
    if error:
        return "", alert(error, "warning")
    return f"leased to you until {lease.expires_at:%H:%M} UTC", dash.no_update


# ------------------------------------------------------------------ quality and review
@callback(Output(MESSAGE, "children", allow_duplicate=True),
          Output(STATUS, "children", allow_duplicate=True),
          Input(B["exclude"], "n_clicks"), State(B["note"], "value"), State(INFO, "data"),
          prevent_initial_call=True)
def exclude(_n, note, info):
    detail, error = call(gallery.set_excluded, info["id"], True, note or "")
    if error:
        return alert(error), dash.no_update
    return alert("Image excluded from training and the queue.", "success"), status_word(detail.status)


def _review_callback(button: str, accept: bool):
    @callback(Output(MESSAGE, "children", allow_duplicate=True),
              Output(VERSION, "children", allow_duplicate=True),
              Input(B[button], "n_clicks"), State(B["comment"], "value"), State(INFO, "data"),
              prevent_initial_call=True)
    def _run(_n, comment, info):
        version, error = call(annotations.review, info["id"], accept, comment or "",
                              enqueue=state().enqueue)
        if error:
            return alert(error), dash.no_update
        return (alert("Accepted." if accept else "Sent back to the annotator.", "success"),
                view.version_text(version))
    _run.__name__ = f"on_{button.replace('-', '_')}"
    return _run


on_accept = _review_callback("accept", True)
on_send_back = _review_callback("send-back", False)

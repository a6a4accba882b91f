"""The workspace's cell review of a model suggestion (app.services.cell_review): a legend of
the outline colours with what is left to check, "Next uncertain cell" (U) that selects and
frames the most uncertain unchecked cell, "Keep cell" (K) and "Accept confident cells".
The box is hidden when the draft's suggestion has no per-cell uncertainty (plain outlines).
Imported by `pages.annotate`, like `pages._annotate_flow`."""
from __future__ import annotations

import dash
from dash import Input, Output, Patch, State, callback, clientside_callback, html

from app.background import run_as
from app.context import get_config, state
from app.services import cell_review
from pages import _annotate_view as view
from pages._annotate_ids import B, GRAPH, INFO, MESSAGE, REVIEW, SCORE_GO, SCORED, STATE
from pages._annotate_view import HIDDEN
from pages._common import alert, call

FRAME_MIN = 64          # px: the smallest window a framed cell is shown in


def swatch(colour: str, filled: bool) -> html.Span:
    """A legend key drawn like the overlay: outline, light or stronger fill (and dashed)."""
    return html.Span(className="review-swatch" + (" review-swatch-dashed" if filled else ""),
                     style={
                         "borderColor": colour,
                         "backgroundColor": colour + ("70" if filled else "28")})


def legend(summary: cell_review.Summary) -> list:
    return [
        html.Div([swatch(cell_review.UNCERTAIN, True),
                  html.B(f"uncertain: {summary.uncertain} to check"), " (dashed)"],
                 id=f"{REVIEW}-uncertain"),
        html.Div([swatch(cell_review.CONFIDENT, False),
                  f"confident: {summary.confident} not yet accepted"],
                 id=f"{REVIEW}-confident"),
        html.Div([html.Span(className="review-swatch review-swatch-class"),
                  f"class colour: yours or checked ({summary.checked} suggested)"],
                 className="text-muted"),
        html.Div(f"Uncertain = the model's MC-dropout entropy over the cell ≥ "
                 f"{summary.uncertain_at:.2f} (0 sure … 1 no idea).",
                 className="text-muted fst-italic"),
    ]


@callback(Output(f"{REVIEW}-legend", "children"), Output(REVIEW, "style"),
          Output(B["keep-confident"], "disabled"), Output(B["next-uncertain"], "disabled"),
          Input(STATE, "data"), State(INFO, "data"))
def show_review(_st, info):
    summary, error = call(cell_review.summary, get_config(), state().store, info["id"])
    if error or summary is None:
        return [], HIDDEN, True, True
    return (legend(summary), {}, not info.get("can_edit") or not summary.confident,
            not summary.uncertain)


@callback(Output(SCORED, "data"), Input(SCORE_GO, "data"),
          State(INFO, "data"), prevent_initial_call=True, background=True)
def score_suggestion(go, info):
    """Runs in the background-callback process (it loads the model), as the user the
    request's session cookie and the page's signed token prove (app.background.run_as).
    Answers the draft's new revision, which the browser merges into the page's state (it
    may have changed meanwhile): the overlay reloads in the legend's colours."""
    server = dash.get_app().server
    app_state = server.extensions["cellloop"]
    result, error = run_as(server, info.get("token", ""), dash.callback_context.cookies,
                           cell_review.score_suggestion, app_state.config, app_state.store,
                           info["id"])
    if error or result is None:
        return dash.no_update
    return {"rev": result.rev}


clientside_callback(
    """function(scored, st) {
        if (!scored || !st) { return dash_clientside.no_update; }
        /* after a save the page's rev is "v<version>", which is no number */
        var rev = typeof st.rev === "number" ? Math.max(st.rev, scored.rev) : scored.rev;
        return Object.assign({}, st, {rev: rev});
    }""",
    Output(STATE, "data", allow_duplicate=True), Input(SCORED, "data"), State(STATE, "data"),
    prevent_initial_call=True)
# A draft opened on a suggestion still to be scored (made on an earlier opening whose page
# closed first, or before per-cell uncertainty existed) asks once when the page opens; a
# suggestion made on this page asks when it arrives (pages._annotate_flow.suggest). Not on
# every change of the page's state: that would make a loop of callbacks Dash does not run.
clientside_callback(
    """function(info) {
        return (info && info.score_pending) ? {image: info.id, t: Date.now()}
                                            : dash_clientside.no_update;
    }""",
    Output(SCORE_GO, "data", allow_duplicate=True), Input(INFO, "data"),
    prevent_initial_call="initial_duplicate")


def frame(box, width: int, height: int) -> Patch:
    """Zoom the figure onto a cell's box (x0, y0, x1, y1): a square window of four times the
    cell's size, at least a quarter of the image's longer side (and FRAME_MIN px), shifted
    to stay inside the image, so the neighbours that decide the outline are in view."""
    x0, y0, x1, y1 = box
    side = min(max(4 * max(x1 - x0, y1 - y0), max(width, height) / 4, FRAME_MIN),
               float(max(width, height)))

    def span(lo: float, hi: float, size: float) -> list[float]:
        start = min(max(0.0, (lo + hi - side) / 2), max(0.0, size - side))
        return [start, start + side]
    fig = Patch()
    fig["layout"]["xaxis"]["range"] = span(x0, x1, float(width))
    fig["layout"]["yaxis"]["range"] = span(y0, y1, float(height))[::-1]
    return fig


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Output(GRAPH, "figure", allow_duplicate=True),
          Input(B["next-uncertain"], "n_clicks"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def next_uncertain(_n, st, info):
    st = st or {}
    found, error = call(cell_review.next_uncertain, get_config(), state().store, info["id"],
                        int(st.get("selected") or 0))
    if error:
        return dash.no_update, alert(error, "info"), dash.no_update
    new = {**st, "selected": found.label, "selected_cls": found.cls, "polygon": None,
           "path": found.path if info.get("can_edit") else None}
    message = alert(f"Uncertain cell {found.label} (score {found.score:.2f}; "
                    f"{found.left} to check): reshape, delete or keep it (K).", "warning",
                    id="annotate-uncertain-cell")
    return new, message, frame(found.box, info["width"], info["height"])


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["keep-cell"], "n_clicks"), State(STATE, "data"), State(INFO, "data"),
          prevent_initial_call=True)
def keep_cell(_n, st, info):
    label = int((st or {}).get("selected") or 0)
    if not label:
        return dash.no_update, alert("Select a suggested cell first (U goes to the next "
                                     "uncertain one).", "info")
    result, error = call(cell_review.keep_cell, get_config(), state().store, info["id"], label)
    if error:
        return dash.no_update, alert(error, "info")
    return view.state_from(result), alert(f"Kept cell {label} as the model drew it.", "success")


@callback(Output(STATE, "data", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(B["keep-confident"], "n_clicks"), State(INFO, "data"),
          prevent_initial_call=True)
def accept_confident(_n, info):
    done, error = call(cell_review.accept_confident, get_config(), state().store, info["id"])
    if error:
        return dash.no_update, alert(error, "info")
    result, n = done
    return view.state_from(result), alert(
        f"Accepted {n} confident {'cell' if n == 1 else 'cells'} as the model drew them. "
        "Undo (Ctrl+Z) takes this back.", "success", id="annotate-accepted")

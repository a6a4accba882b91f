"""Channel display controls shared by the viewer and the annotation workspace (no callbacks
of their own: `register` adds them for a page's ids).

Per channel, as in Fiji's Brightness & Contrast and napari's layer controls: a visibility
switch, a colour, a histogram of the image's values with the contrast limits marked, a range
slider spanning the image's data (not 0..65535) and two number boxes that apply on Enter
(whole numbers for integer images). What the user sets is remembered for the project
(`display_settings.save_for_image`); limits left at the image's automatic values are saved
as "automatic", so the next image gets its own. The raw value under the cursor is read by
assets/display.js from `/api/images/<id>/pixel.json` into the `pixel-readout` element."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, MATCH, Input, Output, State, callback, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate

from app.context import state
from app.services import display, display_settings
from pages import _figures as figures
from pages._common import call

KINDS = ("visible", "colour", "range", "low", "high", "hist", "meta")
HIST_BAR, HIST_LIMIT = "#8a94a6", "#0d6efd"


def channel_ids(prefix: str) -> dict:
    """Pattern-id types of a page's channel controls, keyed by kind."""
    return {kind: f"{prefix}-channel-{kind}" for kind in KINDS}


def number(value: float, integer: bool):
    """A limit as the boxes show it: a whole number for integer images, else 5 digits."""
    return int(round(value)) if integer else float(f"{value:.5g}")


def view(ch: display_settings.ChannelDisplay) -> dict:
    """The rendering route's view of a channel (app.imaging.render.ChannelView fields)."""
    return {"color": ch.color, "low": ch.low, "high": ch.high, "visible": ch.visible}


def limit_lines(low: float, high: float) -> list[dict]:
    return [dict(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper",
                 line=dict(color=HIST_LIMIT, width=2)) for x in (low, high)]


def histogram_figure(ch: display_settings.ChannelDisplay) -> dict:
    """The channel's histogram (log counts) over the slider's range, limits marked (a
    plain figure, pages._figures: built for every channel on every open)."""
    edges = ch.edges
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    return figures.figure(
        [dict(type="bar", x=centres, y=[c or None for c in ch.counts], width=widths,
              marker=dict(color=HIST_BAR, line=dict(width=0)), hoverinfo="skip")],
        dict(margin=dict(l=0, r=0, t=0, b=0), height=44, bargap=0,
             paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#f1f3f5",
             shapes=limit_lines(ch.low, ch.high), showlegend=False,
             xaxis=dict(range=[ch.range_min, ch.range_max], visible=False, fixedrange=True),
             yaxis=dict(type="log", visible=False, fixedrange=True)))


def _limits_boxes(ch, ids: dict, c: int) -> dbc.InputGroup:
    step = 1 if ch.integer else "any"
    return dbc.InputGroup([
        dbc.InputGroupText("min"),
        dbc.Input(id={"type": ids["low"], "channel": c}, type="number", step=step,
                  value=number(ch.low, ch.integer), debounce=True, className="limit-box"),
        dbc.InputGroupText("max"),
        dbc.Input(id={"type": ids["high"], "channel": c}, type="number", step=step,
                  value=number(ch.high, ch.integer), debounce=True, className="limit-box"),
    ], size="sm", className="mt-1")


def channel_controls(channels: list[display_settings.ChannelDisplay], ids: dict) -> list:
    rows = []
    for c, ch in enumerate(channels):
        span = ch.range_max - ch.range_min
        rows.append(html.Div([
            dcc.Store(id={"type": ids["meta"], "channel": c},
                      data={"integer": ch.integer, "auto": [number(ch.auto_low, ch.integer),
                                                            number(ch.auto_high, ch.integer)]}),
            html.Div([
                dbc.Switch(id={"type": ids["visible"], "channel": c}, value=ch.visible,
                           label=ch.name, className="me-2 mb-0"),
                dbc.Input(id={"type": ids["colour"], "channel": c}, type="color",
                          value=ch.color, debounce=200, className="channel-colour"),
            ], className="d-flex align-items-center"),
            dcc.Graph(id={"type": ids["hist"], "channel": c}, figure=histogram_figure(ch),
                      config={"staticPlot": True}, className="channel-histogram"),
            dcc.RangeSlider(id={"type": ids["range"], "channel": c}, min=ch.range_min,
                            max=ch.range_max, step=1 if ch.integer else span / 1000,
                            value=[number(ch.low, ch.integer), number(ch.high, ch.integer)],
                            allowCross=False, allow_direct_input=False, marks=None,
                            className="channel-range"),
            _limits_boxes(ch, ids, c),
        ], className="mb-2 channel-control"))
    return rows


def settings_to_save(visible, colours, ranges, metas) -> list[dict]:
    """What `display_settings.save_for_image` keeps: limits equal to this image's automatic
    ones are saved as null (automatic), so other images get their own."""
    out = []
    for v, colour, rng, meta in zip(visible, colours, ranges, metas):
        auto = (meta or {}).get("auto") or [None, None]
        low, high = (None, None) if list(rng or []) == list(auto) else (rng[0], rng[1])
        out.append({"color": colour, "visible": bool(v), "low": low, "high": high})
    return out


SYNC = """
function(range, low, high, rmin, rmax, meta, fig) {
    var ctx = dash_clientside.callback_context, t = ctx.triggered_id || {};
    var no = dash_clientside.no_update, integer = !!(meta && meta.integer);
    var fmt = function (v) { return integer ? Math.round(v) : Number(Number(v).toPrecision(5)); };
    var lo = Number(range[0]), hi = Number(range[1]);
    var typed = t.type && t.type.endsWith("-low") ? low : t.type && t.type.endsWith("-high")
        ? high : null;
    if (typed !== null && (typed === "" || typed === undefined || isNaN(Number(typed)))) {
        return [no, no, no, fmt(lo), fmt(hi), no];     // not a number: show the limits again
    }
    if (t.type && t.type.endsWith("-low")) { lo = Number(low); }
    if (t.type && t.type.endsWith("-high")) { hi = Number(high); }
    lo = fmt(lo); hi = fmt(hi);
    var step = integer ? 1 : Math.max((rmax - rmin) / 1000, 1e-9);
    if (hi <= lo) {
        if (t.type && t.type.endsWith("-low")) { lo = fmt(hi - step); } else { hi = fmt(lo + step); }
    }
    var newMin = Math.min(rmin, lo), newMax = Math.max(rmax, hi);
    var figure = Object.assign({}, fig, {layout: Object.assign({}, fig.layout)});
    figure.layout.shapes = [lo, hi].map(function (x) {
        return {type: "line", x0: x, x1: x, y0: 0, y1: 1, yref: "paper",
                line: {color: "%s", width: 2}};
    });
    figure.layout.xaxis = Object.assign({}, fig.layout.xaxis, {range: [newMin, newMax]});
    var same = Number(range[0]) === lo && Number(range[1]) === hi;
    return [same ? no : [lo, hi], newMin === rmin ? no : newMin, newMax === rmax ? no : newMax,
            lo, hi, figure];
}
""" % HIST_LIMIT


def register(ids: dict, info_id: str, saved_id: str, auto_id: str, z_id: str) -> None:
    """The controls' callbacks for one page: slider and boxes kept in step in the browser
    (Enter in a box applies it; a value beyond the slider widens it), each change
    remembered for the project, and the Auto contrast button. `info_id` is a store whose
    data has the image's "id". Call it from the page module, so it runs per app."""
    clientside_callback(
        SYNC,
        Output({"type": ids["range"], "channel": MATCH}, "value"),
        Output({"type": ids["range"], "channel": MATCH}, "min"),
        Output({"type": ids["range"], "channel": MATCH}, "max"),
        Output({"type": ids["low"], "channel": MATCH}, "value"),
        Output({"type": ids["high"], "channel": MATCH}, "value"),
        Output({"type": ids["hist"], "channel": MATCH}, "figure"),
        Input({"type": ids["range"], "channel": MATCH}, "value"),
        Input({"type": ids["low"], "channel": MATCH}, "value"),
        Input({"type": ids["high"], "channel": MATCH}, "value"),
        State({"type": ids["range"], "channel": MATCH}, "min"),
        State({"type": ids["range"], "channel": MATCH}, "max"),
        State({"type": ids["meta"], "channel": MATCH}, "data"),
        State({"type": ids["hist"], "channel": MATCH}, "figure"),
        prevent_initial_call=True)

    @callback(Output({"type": ids["range"], "channel": ALL}, "value", allow_duplicate=True),
              Output({"type": ids["meta"], "channel": ALL}, "data"), Input(auto_id, "n_clicks"),
              State(z_id, "value"), State({"type": ids["meta"], "channel": ALL}, "data"),
              State(info_id, "data"), prevent_initial_call=True)
    def auto_contrast(_n, z, metas, info):
        """This plane's automatic limits, remembered as "automatic" for the project."""
        limits, error = call(display.auto_contrast, state().store, info["id"], int(z or 0))
        if error:
            raise PreventUpdate
        values = [[number(lo, m["integer"]), number(hi, m["integer"])]
                  for (lo, hi), m in zip(limits, metas)]
        return values, [{**m, "auto": v} for m, v in zip(metas, values)]

    @callback(Output(saved_id, "children"),
              Input({"type": ids["visible"], "channel": ALL}, "value"),
              Input({"type": ids["colour"], "channel": ALL}, "value"),
              Input({"type": ids["range"], "channel": ALL}, "value"),
              State({"type": ids["meta"], "channel": ALL}, "data"),
              State(info_id, "data"), prevent_initial_call=True)
    def remember(visible, colours, ranges, metas, info):
        _saved, error = call(display_settings.save_for_image, info["id"],
                             settings_to_save(visible, colours, ranges, metas))
        return (html.Span(error, className="text-danger") if error else
                "Display settings remembered for this project.")


def readout(graph_id: str, readout_id: str) -> html.Div:
    """Where assets/display.js writes the values under the cursor (over the figure)."""
    return html.Div(id=readout_id, className="pixel-readout", **{"data-graph": graph_id})

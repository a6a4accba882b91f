"""Pieces of the annotation workspace's page: the figure and the tool panel (no callbacks).

The figure holds no pixels and (almost) no shapes: the image and the current draft are two
layout images fetched from routes, so a suggestion with thousands of cells costs the browser
one PNG. Only the cell being reshaped is a plotly shape, and a shape the user draws lives in
the figure (dotted) just until the overlay of the draft that holds it is shown. After the
first drawing the figure is drawn in the browser (assets/annotate_edits.js `render`).

Rectangle and ellipse are both drawn from one corner to the opposite corner (napari, QuPath and
Label Studio do the same): the ellipse tool uses plotly's rectangle drag, `annotate.js` draws
the ellipse inside the box while dragging, and the server fills the ellipse inscribed in it.
Counting projects (points) show only the tools that make sense there."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import dcc, html

from app.services import gallery
from pages import _figures as figures
from pages._annotate_ids import B, REVIEW
from pages._common import status_word

DISPLAY_SIDE = 2048
TOOLS = [  # (value, label, shortcut, plotly dragmode)
    ("select", "Select / pan", "S", "pan"),
    ("draw", "Draw cell", "D", "drawclosedpath"),
    ("polygon", "Polygon", "L", "pan"),
    ("rect", "Rectangle", "R", "drawrect"),
    ("ellipse", "Ellipse", "O", "drawrect"),        # corner to corner, like the rectangle
    ("brush", "Brush", "B", "drawopenpath"),
    ("erase", "Eraser", "E", "drawopenpath"),
    ("region", "Annotated region", "G", "drawclosedpath"),
    ("point", "Point (count)", "P", "pan"),
    ("zoom", "Zoom box", "Z", "zoom"),
]
DRAGMODE = {value: mode for value, _label, _key, mode in TOOLS}
COUNTING_TOOLS = ("select", "point", "region", "zoom")     # no outlines in a counting project
VIEW_TOOLS = ("select", "zoom")                             # all a read-only user gets
HIDDEN = {"display": "none"}


def tools_for(counting: bool) -> list[tuple]:
    return [t for t in TOOLS if not counting or t[0] in COUNTING_TOOLS]


def shortcuts(counting: bool) -> list[tuple[str, str]]:
    """The keyboard help, built from the tools shown (so no tool's letter is left out)."""
    letters = " ".join(key for _v, _l, key, _m in tools_for(counting))
    rows = [(letters, "choose a tool (the letter is next to each tool)")]
    if not counting:
        rows += [("R / O", "rectangle / ellipse: drag from one corner to the opposite corner "
                           "(the ellipse fills the box)"),
                 ("L", "polygon: click the corners; Enter or a click on the first corner "
                       "closes it"),
                 ("Delete / Backspace", "delete the selected cell"),
                 ("U", "next uncertain suggested cell (selects and zooms to it)"),
                 ("K", "keep the selected suggested cell as the model drew it"),
                 ("[ and ]", "thinner / thicker brush")]
    rows += [("1 … 9", "class for the next cells you draw or points you click"),
             ("Shift+1 … 9", "set the selected cell's class"),
             ("Ctrl+Z / Ctrl+Y (or Ctrl+Shift+Z)", "undo / redo (also after saving)"),
             ("Ctrl+S", "save"), ("N", "save & next image"), ("Esc", "deselect"),
             ("wheel / drag", "zoom / pan (Select tool)")]
    return rows


def version_text(version) -> str:
    """The header's line for a saved version (annotations.Version), or for none."""
    if version is None:
        return "not annotated yet"
    return (f"version {version.version} by {version.author} · {version.source} · "
            f"{version.review_state}")


def status_after_save(version) -> str:
    """The image status a save leaves (as gallery.status_from_history derives it)."""
    return status_word(gallery.status_after_review(version.review_state))


def state_from(result, selected: int = 0, path: str | None = None, cls: int = 0) -> dict:
    """The page's state (STATE store) after a draft change (drafts.EditResult)."""
    return {"rev": result.rev, "selected": selected, "selected_cls": cls, "path": path,
            "n_cells": result.n_cells, "n_points": result.n_points,
            "can_undo": result.can_undo, "can_redo": result.can_redo}


def side_for(width: int, height: int) -> int:
    return min(DISPLAY_SIDE, max(width, height))


def image_url(image_id: int, z: int, side: int, views: list[dict] | None) -> str:
    query = {"z": z, "size": side}
    if views:
        query["views"] = json.dumps(views, separators=(",", ":"))
    return f"/api/images/{image_id}/render.jpg?{urlencode(query)}"


def draft_url(image_id: int, rev, selected: int, side: int) -> str:
    """The overlay's address (assets/annotate_edits.js `draftUrl` builds the same one)."""
    return f"/api/images/{image_id}/draft.png?rev={rev or 0}&selected={selected or 0}&size={side}"


def polygon_path(corners: list, closed: bool = False) -> str:
    return ("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in corners) + ("Z" if closed else "")
            if corners else "")


def newshape(tool: str, color: str, width: float) -> dict:
    if tool in ("brush", "erase"):
        return dict(line=dict(color="#ff4d4d" if tool == "erase" else color, width=width),
                    opacity=0.6, fillcolor="rgba(0,0,0,0)")
    if tool == "region":
        return dict(line=dict(color="#ffffff", width=2, dash="dash"),
                    fillcolor="rgba(255,255,255,0.1)", opacity=1)
    if tool == "ellipse":      # the drag box, dotted; annotate.js draws the ellipse inside it
        return dict(line=dict(color=color, width=1, dash="dot"), fillcolor="rgba(0,0,0,0)",
                    opacity=1)
    return dict(line=dict(color=color, width=2), fillcolor="rgba(0,0,0,0)", opacity=1)


def figure(image_id: int, width: int, height: int, rev, opacity: float, tool: str,
           color: str, brush: float, views: list[dict] | None = None,
           zoom: tuple[list, list] | None = None) -> dict:
    """`views`: the channels as the user left them (pages._display.view), None: defaults.
    `zoom`: the x and y ranges to open on (the region the queue served), None: all of it.
    A plain figure (pages._figures): built on every open."""
    side = side_for(width, height)
    images = [
        dict(source=image_url(image_id, 0, side, views), xref="x", yref="y", x=0, y=0,
             sizex=width, sizey=height, sizing="stretch", layer="below"),
        dict(source=draft_url(image_id, rev, 0, side), xref="x", yref="y", x=0, y=0,
             sizex=width, sizey=height, sizing="stretch", opacity=opacity, layer="above"),
    ]
    x_range, y_range = zoom or ([0, width], [height, 0])
    return figures.figure(
        [dict(type="scatter", x=[0, width], y=[0, height], mode="markers",
              marker={"opacity": 0}, hoverinfo="none")],
        dict(images=images, margin=dict(l=0, r=0, t=0, b=0),
             dragmode=DRAGMODE.get(tool, "pan"), newshape=newshape(tool, color, brush),
             plot_bgcolor="#000", paper_bgcolor="#fff", showlegend=False,
             uirevision=f"annotate-{image_id}", autosize=True,
             xaxis=dict(range=list(x_range), visible=False, constrain="domain"),
             yaxis=dict(range=list(y_range), visible=False, scaleanchor="x",
                        constrain="domain")))


def tool_buttons(ids: dict, disabled: bool, tool: str = "select",
                 counting: bool = False) -> dbc.RadioItems:
    """The tools (only those of the project's mode); a read-only user's edit tools are
    disabled, and annotate.js ignores the shortcut of a disabled or absent tool."""
    return dbc.RadioItems(
        id=ids["tool"], value=tool, inputClassName="btn-check",
        labelClassName="btn btn-outline-primary btn-sm mb-1 me-1",
        labelCheckedClassName="active", className="btn-group-tools",
        options=[{"label": f"{label} ({key})", "value": value,
                  "disabled": disabled and value not in VIEW_TOOLS}
                 for value, label, key, _mode in tools_for(counting)])


def class_picker(ids: dict, classes: list[dict], disabled: bool = False) -> dbc.RadioItems:
    """The class of the next cell drawn (not of the selected one: that is "Set class")."""
    classes = classes or [{"name": "cell", "color": "#ffff00"}]
    return dbc.RadioItems(
        id=ids["cls"], value=0, inline=True,
        options=[{"label": html.Span([html.Span("■ ", style={"color": c.get("color")}),
                                      f"{i + 1} {c.get('name', 'cell')}"]), "value": i,
                  "disabled": disabled}
                 for i, c in enumerate(classes)])


def shortcuts_help(counting: bool = False) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        html.H6("Keyboard shortcuts", className="card-title"),
        html.Table([html.Tr([html.Td(html.Kbd(key), className="pe-2"), html.Td(what)])
                    for key, what in shortcuts(counting)], className="small"),
    ]), className="mt-3", id="annotate-shortcuts")


def review_box(can_edit: bool) -> html.Div:
    """The cell review of a suggestion (pages._annotate_review), hidden until its callback
    finds per-cell uncertainty in the draft and fills the legend."""
    ro = not can_edit
    return html.Div([
        html.H6("Check the model's cells", className="mb-1"),
        html.Div(id=f"{REVIEW}-legend", className="small"),
        html.Div([
            dbc.Button("Next uncertain cell (U)", id=B["next-uncertain"], size="sm",
                       color="warning", className="me-1 mb-1"),
            dbc.Button("Keep cell (K)", id=B["keep-cell"], size="sm", disabled=ro,
                       color="outline-secondary", className="me-1 mb-1",
                       title="accept the selected suggested cell as it is"),
            dbc.Button("Accept confident cells", id=B["keep-confident"], size="sm",
                       disabled=ro, color="outline-primary", className="mb-1",
                       title="accept every blue cell as it is, in one step (Undo takes it back)"),
        ], className="mt-1"),
    ], id=REVIEW, className="annotate-review mt-2", style=HIDDEN)


def graph(graph_id: str, fig: dict, editable: bool = True) -> dcc.Graph:
    """The figure fills its frame (sized to the viewport by assets/style.css); no plotly
    tips ("double-click to zoom back out" covered the header's Next button)."""
    return dcc.Graph(id=graph_id, figure=fig, className="annotate-graph",
                     config={"scrollZoom": True, "displaylogo": False, "showTips": False,
                             "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
                             "edits": {"shapePosition": editable}})

"""An image's annotation history on the viewer page: every saved version, newest first, with
who saved it, how it was made, what it holds and what review made of it (the versions are
kept; before this only the API listed them)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

HISTORY = "viewer-history"
REVIEW_WORDS = {"submitted": "waiting for review", "accepted": "accepted",
                "returned": "sent back"}


def review_word(version, newest: bool) -> str:
    """What review made of a version; an older one saved over before anyone reviewed it
    will never be: "not reviewed", not "waiting for review"."""
    if version.review_state == "submitted" and not newest:
        return "not reviewed"
    return REVIEW_WORDS.get(version.review_state, version.review_state)


def history_table(versions: list) -> html.Div:
    """`versions`: app.services.annotations.history (annotations.Version, newest first)."""
    if not versions:
        return html.Div([html.H6("History"),
                         html.P("No saved version yet.", className="small text-muted")],
                        id=HISTORY, className="mt-3")
    points = any(v.n_points for v in versions)
    head = ["Version", "Saved (UTC)", "By", "Made", "Cells"] + (["Points"] if points else []) \
        + ["Review", "Reviewer", "Comment"]
    rows = [html.Tr([html.Td(f"v{v.version}"), html.Td(f"{v.created_at:%Y-%m-%d %H:%M}"),
                     html.Td(v.author or "-"), html.Td(v.source), html.Td(v.n_cells)]
                    + ([html.Td(v.n_points)] if points else [])
                    + [html.Td(review_word(v, newest=k == 0)),
                       html.Td(v.reviewer or "-"), html.Td(v.review_comment or "")])
            for k, v in enumerate(versions)]
    return html.Div([
        html.H6(f"History ({len(versions)} saved version{'s' if len(versions) != 1 else ''})"),
        dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                  size="sm", hover=True, className="small")], id=HISTORY, className="mt-3")

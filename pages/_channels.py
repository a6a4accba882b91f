"""Channel display controls shared by the viewer and the annotation workspace."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from app.services import display


def channel_controls(detail, limits, ids: dict) -> list:
    """A switch, a colour and a contrast range slider (image units) per channel; `ids` names
    the pattern-id types {"visible", "colour", "range"} so pages keep their own."""
    low, high = display.value_range(detail.dtype)
    step = 1 if detail.dtype.startswith(("uint", "int")) else (high - low) / 1000
    rows = []
    for c, channel in enumerate(detail.channels):
        lo, hi = limits[c] if c < len(limits) else (low, high)
        rows.append(html.Div([
            dbc.Row([
                dbc.Col(dbc.Switch(id={"type": ids["visible"], "channel": c}, value=True,
                                   label=channel["name"]), width="auto"),
                dbc.Col(dbc.Input(id={"type": ids["colour"], "channel": c}, type="color",
                                  value=channel["color"], style={"width": "3rem"}),
                        width="auto"),
            ], className="align-items-center g-2"),
            dcc.RangeSlider(id={"type": ids["range"], "channel": c}, min=low, max=high, step=step,
                            value=[round(lo, 3), round(hi, 3)], allowCross=False,
                            tooltip={"placement": "bottom"}, marks=None),
        ], className="mb-2 channel-control"))
    return rows

"""Plotly figures as plain dicts, for the figures built on every workspace open.

A `go.Figure` validates each property as it is set: about 20 ms for the workspace's
figure and 10 ms for a channel's histogram, each time a page opens. These builders write
the JSON such a figure sends (the default template included, resolved once per process),
so the browser draws the same thing; tests/pages/test_plain_figures.py holds them to
`go.Figure(...).to_plotly_json()`."""
from __future__ import annotations

import functools

import plotly.io as pio


@functools.lru_cache(maxsize=1)
def _template() -> dict:
    return pio.templates[pio.templates.default].to_plotly_json()


def figure(data: list[dict], layout: dict) -> dict:
    """{"data", "layout"} as `go.Figure(data, layout).to_plotly_json()` gives them; each
    trace names its "type"."""
    return {"data": data, "layout": {**layout, "template": _template()}}

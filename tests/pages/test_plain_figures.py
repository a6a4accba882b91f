"""The workspace's figure and the channel histograms are built as plain dicts
(pages._figures) to skip plotly's validation on every open; they must be the JSON that
go.Figure would send, so the browser draws the same thing."""
import json

import plotly.graph_objects as go
import plotly.utils

from app.services.display_settings import ChannelDisplay
from pages import _annotate_view as view
from pages import _display


def _json(fig) -> dict:
    return json.loads(json.dumps(fig, cls=plotly.utils.PlotlyJSONEncoder))


def test_workspace_figure_is_what_go_figure_sends():
    fig = view.figure(7, 640, 480, "v3", 0.6, "polygon", "#00ff00", 9,
                      zoom=([100, 356], [300, 44]))
    expected = go.Figure()
    expected.add_trace(go.Scatter(x=[0, 640], y=[0, 480], mode="markers",
                                  marker={"opacity": 0}, hoverinfo="none"))
    expected.update_layout(images=fig["layout"]["images"], shapes=[],  # plotly drops it
                           margin=dict(l=0, r=0, t=0, b=0), dragmode=view.DRAGMODE["polygon"],
                           newshape=view.newshape("polygon", "#00ff00", 9),
                           plot_bgcolor="#000", paper_bgcolor="#fff", showlegend=False,
                           uirevision="annotate-7", autosize=True)
    expected.update_xaxes(range=[100, 356], visible=False, constrain="domain")
    expected.update_yaxes(range=[300, 44], visible=False, scaleanchor="x", constrain="domain")
    assert _json(fig) == _json(expected.to_plotly_json())
    assert [im["layer"] for im in fig["layout"]["images"]] == ["below", "above"]


def test_histogram_figure_is_what_go_figure_sends():
    ch = ChannelDisplay(0, "DAPI", "#0000ff", True, 110.0, 180.0, 105.0, 190.0, 100.0, 200.0,
                        True, [0, 3, 9, 4], [100.0, 125.0, 150.0, 175.0, 200.0])
    fig = _display.histogram_figure(ch)
    expected = go.Figure(go.Bar(x=[112.5, 137.5, 162.5, 187.5], y=[None, 3, 9, 4],
                                width=[25.0] * 4,
                                marker=dict(color=_display.HIST_BAR, line=dict(width=0)),
                                hoverinfo="skip"))
    expected.update_layout(margin=dict(l=0, r=0, t=0, b=0), height=44, bargap=0,
                           paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#f1f3f5",
                           shapes=_display.limit_lines(110.0, 180.0), showlegend=False)
    expected.update_xaxes(range=[100.0, 200.0], visible=False, fixedrange=True)
    expected.update_yaxes(type="log", visible=False, fixedrange=True)
    assert _json(fig) == _json(expected.to_plotly_json())

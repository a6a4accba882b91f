"""Shared display of a background job: state, progress bar, message, times, error."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from app.services.jobs import JobInfo

STATE_COLOURS = {"queued": "secondary", "running": "primary", "done": "success",
                 "failed": "danger", "cancelled": "warning"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def job_progress(job: JobInfo) -> html.Div:
    pct = round(100 * job.progress)
    active = job.state in ("queued", "running")
    return html.Div([
        html.Div([dbc.Badge(job.state, color=STATE_COLOURS.get(job.state, "light"),
                            className="me-2 job-state"),
                  html.Strong(f"{job.kind} #{job.id}", className="me-2"),
                  html.Span(f"by {job.username}", className="small text-muted")]),
        dbc.Progress(value=pct, label=f"{pct}%", striped=active, animated=active,
                     className="my-1"),
        html.Div(job.message, className="small job-message"),
        html.Div(f"elapsed {_duration(job.elapsed_s)}"
                 + (f" · about {_duration(job.remaining_s)} left" if job.remaining_s else ""),
                 className="small text-muted"),
        dbc.Alert(job.error, color="danger", className="small mt-1 mb-0") if job.error else None,
    ], className="job-progress")

"""Shared display of a background job: state, progress bar, what it is doing now (a running
training says "step k/N"), elapsed time and the estimate of the time left, what a queued
job waits for, and, once over, its outcome or error.

The words come from `app.services.jobs.JobInfo.message`, which the service works out when
the job is read: a queued job names the job it waits behind, a finished one states its
outcome, so nothing here shows a stale progress message. CSS classes (stable, for tests):
job-state, job-message, job-times, job-eta, job-error."""
from __future__ import annotations

import datetime as dt

import dash_bootstrap_components as dbc
from dash import html

from app.services.jobs import JobInfo
from app.states import ACTIVE_JOB_STATES, JobState

STATE_COLOURS = {JobState.queued: "secondary", JobState.running: "primary",
                 JobState.done: "success", JobState.failed: "danger",
                 JobState.cancelled: "warning"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _times(job: JobInfo) -> list:
    if job.state == JobState.queued:
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return [f"queued for {duration((now - job.created_at).total_seconds())}"]
    if job.state == JobState.running:
        left = job.remaining_s
        return [f"elapsed {duration(job.elapsed_s)} · ",
                html.Span(f"about {duration(left)} left" if left is not None
                          else "estimating the time left", className="job-eta")]
    return [f"{'took' if job.state == JobState.done else 'ran for'} {duration(job.elapsed_s)}"]


def job_progress(job: JobInfo) -> html.Div:
    active = job.state in ACTIVE_JOB_STATES
    pct = 100 if job.state == JobState.done else round(100 * job.progress)
    return html.Div([
        html.Div([dbc.Badge(job.state, color=STATE_COLOURS.get(job.state, "light"),
                            className="me-2 job-state"),
                  html.Strong(f"{job.kind} #{job.id}", className="me-2"),
                  html.Span(f"by {job.username}", className="small text-muted")]),
        dbc.Progress(value=pct, label=f"{pct}%", striped=active, animated=active,
                     color=STATE_COLOURS.get(job.state), className="my-1 job-bar",
                     style={"height": "1.25rem"}),
        html.Div(job.message, className="small job-message"),
        html.Div(_times(job), className="small text-muted job-times"),
        dbc.Alert(job.error, color="danger", className="small mt-1 mb-0 job-error")
        if job.error else None,
    ], className="job-progress")

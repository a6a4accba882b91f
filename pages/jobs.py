"""Jobs (/projects/<id>/jobs): every background job of the project, with state,
progress, step message, elapsed and remaining time, what a queued job waits behind, the
outcome of a finished job, the error of a failed one, and cancel.
The list is read from the database every two seconds, so it is the same in every tab and
gunicorn worker and survives reloads and restarts."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html

from app.services import jobs as svc
from app.states import ACTIVE_JOB_STATES
from pages._common import alert, call, error_page, to_int
from pages._jobs import job_progress

dash.register_page(__name__, path_template="/projects/<project_id>/jobs",
                   title="Jobs · CellLoop")

SCOPE, LIST, POLL, MESSAGE = "jobs-scope", "jobs-list", "jobs-poll", "jobs-message"
CANCEL = "jobs-cancel"      # pattern id type, keyed by job


def job_cards(items: list[svc.JobInfo]) -> list:
    if not items:
        return [html.P("No jobs yet.", className="text-muted", id="jobs-empty")]
    cards = []
    for job in items:
        cancel = (dbc.Button("Cancel", id={"type": CANCEL, "job": job.id}, size="sm",
                             color="outline-danger", className="mt-1")
                  if job.state in ACTIVE_JOB_STATES and not job.cancel_requested else None)
        cards.append(dbc.Card(dbc.CardBody([
            job_progress(job),
            html.Div(f"project #{job.project_id} · {job.queue} queue · submitted "
                     f"{job.created_at:%Y-%m-%d %H:%M} UTC", className="small text-muted"),
            cancel]), className="mb-2 job-card", id=f"job-{job.id}"))
    return cards


def layout(project_id=None, **_query):
    pid = to_int(project_id)
    items, error = call(svc.list_jobs, pid) if pid is not None else (None, "No such project.")
    if error:
        return error_page(error)
    title = f"Jobs of project #{pid}"
    return html.Div([
        dcc.Store(id=SCOPE, data=pid),
        dcc.Interval(id=POLL, interval=2000),
        html.Div([html.H2(title, className="me-3"),
                  dcc.Link("project", href=f"/projects/{pid}")],
                 className="d-flex align-items-center"),
        html.Div(id=MESSAGE),
        html.Div(job_cards(items or []), id=LIST),
    ])


@callback(Output(LIST, "children"), Input(POLL, "n_intervals"), State(SCOPE, "data"),
          prevent_initial_call=True)
def refresh(_n, project_id):
    items, error = call(svc.list_jobs, to_int(project_id))
    if error:
        raise dash.exceptions.PreventUpdate
    return job_cards(items or [])


@callback(Output(MESSAGE, "children"), Input({"type": CANCEL, "job": ALL}, "n_clicks"),
          prevent_initial_call=True)
def cancel(clicks):
    if not ctx.triggered_id or not any(clicks):
        raise dash.exceptions.PreventUpdate
    job, error = call(svc.cancel_job, int(ctx.triggered_id["job"]))
    if error:
        return alert(error)
    return alert(f"Asked job #{job.id} to stop.", "info")

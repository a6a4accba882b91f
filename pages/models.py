"""Models page: train (with live progress and cancel), versions with their metrics,
activate or roll back, compare curves, export, and predict every image.

The training form's numbers are sent as typed and checked on the server as they change
(`training_params.check_training_form`): a field that would be refused is marked invalid
with the reason under it and the Train button is disabled, so a budget is never dropped
silently (browsers report a number input they consider invalid as empty)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html

from app.context import state
from app.services import (counting, jobs, model_versions, prediction, projects, starting_models,
                          training, training_params)
from app.states import ACTIVE_JOB_STATES
from pages._common import alert, call, error_page, to_int
from pages._jobs import job_progress

dash.register_page(__name__, path_template="/projects/<project_id>/models",
                   title="Models · CellLoop")

PROJECT_ID = "models-project-id"
EPOCHS = "models-epochs"
MINUTES = "models-max-minutes"
EPOCHS_FEEDBACK = "models-epochs-feedback"
MINUTES_FEEDBACK = "models-max-minutes-feedback"
MINUTES_HELP = "models-max-minutes-help"
FINE_TUNE = "models-fine-tune"
TRAIN = "models-train"
PREDICT_ALL = "models-predict-all"
JOB = "models-job"
POLL = "models-poll"
JOB_VIEW = "models-job-view"
CANCEL = "models-cancel"
MESSAGE = "models-message"
VERSIONS = "models-versions"
REFRESH = "models-refresh"
ACTIVATE = "models-activate-id"
ACTIVATE_BUTTON = "models-activate"
COMPARE = "models-compare"
CURVES = "models-curves"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")



def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _score(metrics: dict) -> float | None:
    """The validation score the version was judged by: F1 (instances) or Dice (semantic)."""
    value = metrics.get("f1", metrics.get("dice"))
    return value if isinstance(value, (int, float)) else None


def _n_val(metrics: dict) -> str:
    n = metrics.get("n_images")
    return f"{n} validation image{'s' if n != 1 else ''}" if isinstance(n, int) else ""


def f1_cell(metrics: dict):
    """The validation score and the number of validation images it was measured on (for a
    starting model, where: the built-in model's test images, or the project it came from);
    for a counting model, its mean absolute count error."""
    n = " ".join(t for t in (_n_val(metrics), metrics.get("measured_on")) if t)
    if isinstance(metrics.get("mae"), (int, float)):
        return html.Td([f"count error {metrics['mae']:.2f}",
                        html.Span(f" cells/image on {n}", className="small text-muted"),
                        _interval_text(metrics.get("interval"))], className="models-f1")
    return html.Td([_fmt(starting_models.version_score(metrics)),
                    html.Span(f" on {n}", className="small text-muted") if n else None],
                   className="models-f1")


def _interval_text(interval: dict | None):
    """A counting model's calibrated interval, as a relative range and what it rests on."""
    if not interval:
        return None
    units = interval["units"]
    side = interval.get("unit_side")
    what = f"{units} {'tile' if side else 'image'}{'s' if units != 1 else ''}" + \
        (f" of {side} px" if side else "")
    sure = "" if interval.get("guaranteed") else ", too few for the level to hold"
    return html.Div(f"{100 * interval['level']:.0f}% interval: count {100 * interval['low']:+.0f}% "
                    f"to {100 * interval['high']:+.0f}% (calibrated on {what}{sure})",
                    className="small text-muted")


def _post_text(post: dict) -> str:
    """The post-processing a version cuts cells with (chosen on annotated images)."""
    if not post or "fg_threshold" not in post:
        return "-"
    split = post.get("split", 0)
    return (f"fg > {post['fg_threshold']:.1f} · " + (f"split h {split:g}" if split else "no split")
            + f" · ≥ {post.get('min_size', 12)} px")


def _cells_text(settings: dict) -> str:
    """How a version finds cells: a counting model's output and input, or the
    post-processing an outline model cuts cells with."""
    if settings.get("kind") == counting.KIND:
        out = "heat-map peaks" if settings.get("target") == "centres" else "density"
        return f"{out} · reads {counting.describe_input(settings.get('input_mapping'))}"
    return _post_text(settings.get("postprocess", {}))


def _origin(v: model_versions.VersionInfo) -> str:
    """Where a version started: its parent (and the pull back to it), a starting model
    (built-in, copied) or scratch."""
    if v.parent_id:
        pull = v.settings.get("pull") or 0
        return f"#{v.parent_id}" + (f" · pull {pull:g}" if pull else "")
    return starting_models.describe(v.settings) or "scratch"


def versions_table(items: list[model_versions.VersionInfo]):
    if not items:
        return dbc.Alert("No model yet. Annotate a few images, then train.", color="light",
                         id="models-none")
    rows = []
    for v in items:
        m = v.metrics
        rows.append(html.Tr([
            html.Td(f"#{v.id}"), html.Td(v.created_at.strftime("%Y-%m-%d %H:%M")),
            html.Td(v.created_by or "-"),
            html.Td(dbc.Badge("active", color="success") if v.is_active else ""),
            f1_cell(m), html.Td(_fmt(m.get("dice"))),
            html.Td(str(v.n_training_images)),
            html.Td(f"{m.get('seconds', 0) / 60:.1f} min" if m.get("seconds") else "-"),
            html.Td(_origin(v)),
            html.Td(_cells_text(v.settings), className="small",
                    title="outlines: foreground threshold, seed splitting and smallest cell, "
                          "chosen on the validation and fully annotated training images after "
                          "training; counting: what the model outputs and reads"),
            html.Td(export_links(v)),
        ]))
    head = ["version", "trained", "by", "", "val F1", "val Dice", "images", "time", "from",
            "cells", "export"]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                     size="sm", hover=True, id="models-table")


def export_links(v: model_versions.VersionInfo) -> list:
    """Download links: native .cellloop, TorchScript .pt and ONNX .onnx, for outline and
    counting models alike (a counting model's .pt / .onnx outputs its map, a centre heat-map
    or a cell density; the model card inside says how to count and find the points)."""
    counting = v.settings.get("kind") == "counting"
    centres = v.settings.get("target") == "centres"
    out = ("a heat-map of the cell centres (1 at a centre; count = its peaks above the card's "
           "threshold)" if centres else
           "the cell density per pixel (count = its sum x the card's count_factor)") \
        if counting else "class logits"
    titles = {"cellloop": "CellLoop's own format (the app, the CLI, the Python API)",
              "pt": f"TorchScript, with its model card: outputs {out}",
              "onnx": f"ONNX (opset 17), with its model card: outputs {out}"}
    return [html.A(ext, href=f"/api/models/{v.id}/export.{ext}", className="me-2 small",
                   title=title) for ext, title in titles.items()]


def rollback_options(items: list[model_versions.VersionInfo]) -> list[dict]:
    """The versions an owner can make active, newest first, with what tells them apart."""
    options = []
    for v in items:
        f1 = starting_models.version_score(v.metrics)
        mae = v.metrics.get("mae")
        label = " · ".join([f"#{v.id}", v.created_at.strftime("%Y-%m-%d %H:%M"),
                            f"count error {mae:.2f}" if isinstance(mae, (int, float))
                            else f"val F1 {_fmt(f1)}",
                            starting_models.describe(v.settings)
                            or f"{v.n_training_images} images"]
                           + (["active"] if v.is_active else []))
        options.append({"label": label, "value": v.id, "disabled": v.is_active})
    return options


def _why_empty(items) -> str:
    if not items:
        return "Choose versions to compare (none yet? train a model first)."
    if any((v.settings or {}).get("kind") == counting.KIND for v in items):
        return "Counting models are compared by their count error, in the table above."
    return ("No validation scores to plot: a starting model (e.g. the built-in one) was not "
            "trained in this project. Train one to see its curve here.")


def curves_figure(items: list[model_versions.VersionInfo]) -> go.Figure:
    """Per version: the validation score after each epoch (dotted: measured with the
    default way of cutting cells, before training chose its own) and, as a large marker at
    the epoch kept, the score the versions table shows (with the cutting the model uses)."""
    fig = go.Figure()
    for k, v in enumerate(items):
        colour = COLOURS[k % len(COLOURS)]
        per_epoch = [e for e in v.curve if "epoch" in e]     # a counting model's is per step
        xs = [e["epoch"] for e in per_epoch]
        ys = [e.get("val_f1", e.get("val_dice")) for e in per_epoch]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"#{v.id} per epoch",
                                     line=dict(color=colour, dash="dot"), legendgroup=str(v.id),
                                     marker=dict(size=5)))
        final = _score(v.metrics)
        if final is not None:
            kept = v.metrics.get("best_epoch") or (xs[-1] if xs else 0)
            n = _n_val(v.metrics)
            fig.add_trace(go.Scatter(
                x=[kept], y=[final], mode="markers+text", name=f"#{v.id} final",
                text=[f"{final:.3f}"], textposition="top center", legendgroup=str(v.id),
                marker=dict(color=colour, size=13, symbol="star"),
                hovertemplate=f"model #{v.id}: validation %{{y:.3f}}"
                              + (f" on {n}" if n else "") + "<extra></extra>"))
    fig.update_layout(xaxis_title="epoch", yaxis_title="validation F1 / Dice", height=320,
                      margin=dict(l=40, r=10, t=10, b=40), yaxis_range=[0, 1.08])
    if not fig.data:        # e.g. only the built-in model: it was not trained here
        fig.add_annotation(text=_why_empty(items), x=0.5, y=0.5, xref="paper", yref="paper",
                           showarrow=False)
    return fig


def layout(project_id=None, **_query):
    pid = to_int(project_id)
    project, error = call(projects.get_project, pid)
    if error:
        return error_page(error)
    items, _ = call(model_versions.list_versions, pid)
    can_train = project.role in ("reviewer", "owner")
    can_predict = project.role != "viewer"
    running = [j for j in (call(jobs.list_jobs, pid)[0] or [])
               if j.kind in ("train", "predict") and j.state in ACTIVE_JOB_STATES]
    return html.Div([
        dcc.Store(id=PROJECT_ID, data=pid),
        dcc.Store(id=JOB, data=running[0].id if running else None),
        dcc.Store(id=REFRESH, data=0),
        dcc.Interval(id=POLL, interval=1500, disabled=not running),
        html.Div([html.H2(["Models · ", dcc.Link(project.name, href=f"/projects/{pid}")],
                          className="me-auto"),
                  dbc.Badge(project.role, color="info")],
                 className="d-flex align-items-center mb-3"),
        dbc.Card(dbc.CardBody([
            dbc.Row([
                dbc.Col([dbc.Label("Epochs", html_for=EPOCHS),
                         dbc.Input(id=EPOCHS, type="text", inputMode="numeric", value="40",
                                   debounce=False, autoComplete="off"),
                         dbc.FormFeedback(id=EPOCHS_FEEDBACK, type="invalid")], md=2),
                dbc.Col([dbc.Label("Time budget (minutes)", html_for=MINUTES),
                         dbc.Input(id=MINUTES, type="text", inputMode="decimal", value="10",
                                   debounce=False, autoComplete="off"),
                         dbc.FormFeedback(id=MINUTES_FEEDBACK, type="invalid"),
                         dbc.FormText(budget_help("10", "40"), id=MINUTES_HELP)],
                        md=3),
                dbc.Col(dbc.Checkbox(id=FINE_TUNE, value=True,
                                     label="fine-tune the active model"), md=3,
                        className="pt-4"),
                dbc.Col(dbc.Button("Train", id=TRAIN, color="primary"), md="auto",
                        className="pt-4"),
                dbc.Col(dbc.Button("Predict all images", id=PREDICT_ALL,
                                   color="outline-primary"), md="auto", className="pt-4")
                if can_predict else None,
            ], className="g-2"),
        ]), className="mb-3") if can_train else None,
        html.Div(id=MESSAGE),
        html.Div([html.Div(id=JOB_VIEW),
                  # shown by `poll` while a job runs, to those who may cancel it
                  dbc.Button("Cancel", id=CANCEL, color="outline-danger", size="sm",
                             className="mt-1", style={"display": "none"})],
                 className="mb-3"),
        html.H4("Versions"),
        html.Div(versions_table(items or []), id=VERSIONS),
        dbc.Row([
            dbc.Col(dcc.Dropdown(id=ACTIVATE, options=rollback_options(items or []),
                                 placeholder="choose a version to make active",
                                 clearable=False), md=5),
            dbc.Col(dbc.Button("Activate (roll back)", id=ACTIVATE_BUTTON, color="outline-success",
                               size="sm"), md="auto"),
        ], className="g-2 mb-3") if project.role == "owner" else None,
        html.H4("Compare"),
        dcc.Dropdown(id=COMPARE, multi=True, value=[v.id for v in (items or [])[:3]],
                     options=[{"label": f"#{v.id}", "value": v.id} for v in items or []]),
        dcc.Graph(id=CURVES, figure=curves_figure((items or [])[:3])),
        html.P("Dotted: the validation score after each epoch, with the default way of "
               "cutting cells. Star: the final score, the one in the table, with the cutting "
               "chosen after training on the annotated images.", id="models-curves-note",
               className="small text-muted"),
    ])


def budget_help(minutes, epochs) -> str:
    epochs = str(epochs or "").strip() or "the project's"
    if not str(minutes or "").strip():
        return f"No time limit: trains up to {epochs} epochs."
    return (f"Stops after about {str(minutes).strip()} min or {epochs} epochs, whichever "
            "comes first (at least one epoch).")


@callback(Output(EPOCHS, "invalid"), Output(EPOCHS_FEEDBACK, "children"),
          Output(MINUTES, "invalid"), Output(MINUTES_FEEDBACK, "children"),
          Output(MINUTES_HELP, "children"), Output(TRAIN, "disabled"),
          Input(EPOCHS, "value"), Input(MINUTES, "value"), State(PROJECT_ID, "data"))
def check_form(epochs, minutes, project_id):
    """Mark the fields the server would refuse, say why, and block Train until fixed."""
    errors, error = call(training_params.check_training_form, to_int(project_id),
                         {"epochs": epochs, "max_minutes": minutes})
    if error:
        return False, None, False, None, error, True
    return (bool(errors.get("epochs")), errors.get("epochs"), bool(errors.get("max_minutes")),
            errors.get("max_minutes"), budget_help(minutes, epochs), bool(errors))


@callback(Output(JOB, "data"), Output(POLL, "disabled"), Output(MESSAGE, "children"),
          Input(TRAIN, "n_clicks"), State(PROJECT_ID, "data"), State(EPOCHS, "value"),
          State(MINUTES, "value"), State(FINE_TUNE, "value"), prevent_initial_call=True)
def start_training(_n, project_id, epochs, minutes, fine_tune):
    job, error = call(training.start_training, to_int(project_id),
                      {"epochs": epochs, "max_minutes": minutes, "fine_tune": bool(fine_tune)},
                      state().enqueue)
    if error:
        return dash.no_update, dash.no_update, alert(error)
    return job.id, False, None


@callback(Output(JOB, "data", allow_duplicate=True), Output(POLL, "disabled", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Input(PREDICT_ALL, "n_clicks"), State(PROJECT_ID, "data"), prevent_initial_call=True)
def predict_all(_n, project_id):
    job, error = call(prediction.start_project_prediction, to_int(project_id), state().enqueue)
    if error:
        return dash.no_update, dash.no_update, alert(error)
    return job.id, False, None


@callback(Output(JOB_VIEW, "children"), Output(POLL, "disabled", allow_duplicate=True),
          Output(REFRESH, "data"), Output(CANCEL, "style"), Input(POLL, "n_intervals"),
          State(JOB, "data"), State(REFRESH, "data"), prevent_initial_call="initial_duplicate")
def poll(_n, job_id, refresh):
    hidden = {"display": "none"}
    if job_id is None:
        return None, True, dash.no_update, hidden
    job, error = call(jobs.get_job, int(job_id))
    if error:
        return alert(error), True, dash.no_update, hidden
    done = job.state not in ACTIVE_JOB_STATES
    may_cancel = not done and bool(call(jobs.may_cancel, int(job_id))[0])
    return (job_progress(job), done,
            (refresh or 0) + 1 if done else dash.no_update, {} if may_cancel else hidden)


@callback(Output(MESSAGE, "children", allow_duplicate=True), Input(CANCEL, "n_clicks"),
          State(JOB, "data"), prevent_initial_call=True)
def cancel(_n, job_id):
    if job_id is None:
        return alert("No job to cancel.", "warning")
    _, error = call(jobs.cancel_job, int(job_id))
    return alert(error) if error else alert("Cancelling at the next step.", "info")


@callback(Output(VERSIONS, "children"), Output(MESSAGE, "children", allow_duplicate=True),
          Output(ACTIVATE, "options"),
          Input(ACTIVATE_BUTTON, "n_clicks"), State(ACTIVATE, "value"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def activate(_n, version_id, project_id):
    if version_id is None:
        return dash.no_update, alert("Choose a version first.", "warning"), dash.no_update
    info, error = call(model_versions.activate, to_int(version_id))
    if error:
        return dash.no_update, alert(error), dash.no_update
    items, _ = call(model_versions.list_versions, to_int(project_id))
    return (versions_table(items or []), alert(f"Model #{info.id} is now active.", "success"),
            rollback_options(items or []))


@callback(Output(ACTIVATE, "options", allow_duplicate=True), Input(REFRESH, "data"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def refresh_rollback(_refresh, project_id):
    """A finished training adds a version to choose from."""
    items, _ = call(model_versions.list_versions, to_int(project_id))
    return rollback_options(items or [])


@callback(Output(VERSIONS, "children", allow_duplicate=True), Output(COMPARE, "options"),
          Output(COMPARE, "value"), Input(REFRESH, "data"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def refresh_versions(_refresh, project_id):
    """A job ended: the table, and the plot with the newest versions (the new one first)."""
    items, error = call(model_versions.list_versions, to_int(project_id))
    if error:
        return alert(error), [], dash.no_update
    return (versions_table(items), [{"label": f"#{v.id}", "value": v.id} for v in items],
            [v.id for v in items[:3]])


@callback(Output(CURVES, "figure"), Input(COMPARE, "value"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def compare(selected, project_id):
    items, _ = call(model_versions.list_versions, to_int(project_id))
    chosen = [v for v in items or [] if v.id in (selected or [])]
    return curves_figure(chosen)

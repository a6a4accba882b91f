"""Active learning (/projects/<id>/learning): the selection strategy and its settings, the
ranked queue of unannotated images, the learning progress across model versions, and
simulations (learning curves per strategy with the ground truth as the oracle)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html

from app.context import state
from app.queue_routes import queued_url
from app.services import (learning_loop, model_versions, project_settings, projects, scoring,
                          simulation, training)
from app.services.project_settings import LOOP_LIMITS, SIMULATION_LIMITS
from pages._common import alert, call, error_page, to_int, status_word

dash.register_page(__name__, path_template="/projects/<project_id>/learning",
                   title="Active learning · CellLoop")

PID, MESSAGE, QUEUE, POLL = "learning-project", "learning-message", "learning-queue", "learning-poll"
STRATEGY, PASSES, ENSEMBLE, BATCH, RETRAIN, SAVE = (
    "learning-strategy", "learning-passes", "learning-ensemble", "learning-batch",
    "learning-retrain", "learning-save")
UNIT, REGION = "learning-unit", "learning-region"
UNIT_LABELS = {"image": "whole images", "region": "regions of images"}
RESCORE, TRAIN = "learning-rescore", "learning-train"
SIM = {k: f"learning-sim-{k}" for k in ("strategies", "initial", "batch", "rounds", "seeds",
                                        "test", "start", "figure", "unit", "from", "cost")}
SIM_CHOICES = {"unit": ("Unit", {"image": "whole images", "region": "regions (256 px)"}),
               "from": ("Start", {"scratch": "from scratch", "builtin": "built-in model"}),
               "cost": ("Cost", {"images": "images / regions", "cells": "cells drawn",
                                 "corrections": "corrections"})}
STRATEGY_LABELS = {"random": "Random", "stratified": "Stratified random (no model)",
                   "stratified-cheap": "Stratified random, fewer cells first (no model)",
                   "entropy": "MC-dropout entropy", "bald": "BALD",
                   "power": "BALD, power sampling", "ensemble": "Ensemble disagreement",
                   "diversity": "Entropy + diversity", "coverage": "Coverage (k-centre)"}


def _number(cid, value, limits, disabled, step=1):
    lo, hi = limits
    return dbc.Input(id=cid, type="number", value=value, min=lo, max=hi, step=step, size="sm",
                     disabled=disabled, style={"maxWidth": "7rem"})


def settings_card(s: project_settings.LoopSettings, owner: bool, counting: bool = False
                  ) -> dbc.Card:
    """The loop's settings; a counting project's queue serves whole images (no unit)."""
    ro = not owner
    rows = [("Strategy", dcc.Dropdown(id=STRATEGY, value=s.strategy, clearable=False,
                                      disabled=ro, options=[{"label": v, "value": k} for k, v
                                                            in STRATEGY_LABELS.items()])),
            ("MC-dropout passes T", _number(PASSES, s.passes, LOOP_LIMITS["passes"], ro)),
            ("Ensemble size N", _number(ENSEMBLE, s.ensemble_size,
                                        LOOP_LIMITS["ensemble_size"], ro)),
            ("Batch per round", _number(BATCH, s.batch, LOOP_LIMITS["batch"], ro)),
            ("Retrain after K accepted (0: off)", _number(RETRAIN, s.retrain_after,
                                                          LOOP_LIMITS["retrain_after"], ro)),
            ("The queue serves", dcc.Dropdown(id=UNIT, value=s.unit, clearable=False,
                                              disabled=ro, options=[
                                                  {"label": v, "value": k}
                                                  for k, v in UNIT_LABELS.items()])),
            ("Region side (px)", _number(REGION, s.region, LOOP_LIMITS["region"], ro, step=32))]
    # a counting project's queue serves whole images: its unit controls are hidden
    hidden = {"The queue serves", "Region side (px)"} if counting else set()
    wide = {"Strategy"}     # its label above it: the longest strategy name is shown whole
    return dbc.Card(dbc.CardBody([
        html.H5("Selection strategy"),
        *[dbc.Row([dbc.Col(html.Label(label, className="small"), md=12 if label in wide else 6),
                   dbc.Col(control, md=12 if label in wide else 6)],
                  className="mb-2 align-items-center",
                  style={"display": "none"} if label in hidden else None)
          for label, control in rows],
        dbc.Button("Save settings", id=SAVE, size="sm", color="primary", disabled=ro),
        html.Span(" Changing the strategy or the unit rescores the pool. By region, each "
                  "image is annotated one square region at a time (its most useful first); "
                  "training uses the annotated regions. New outline projects that start from "
                  "a model queue regions ranked by stratified random; those that start from "
                  "none, and counting projects, whole images, fewer cells first (the best "
                  "measured for each start).",
                  className="small text-muted", id="learning-defaults-note"),
    ]))


def region_text(region: list | None) -> str:
    if not region:
        return "whole image"
    y0, x0, y1, x1 = region
    return f"x {x0}–{x1}, y {y0}–{y1}"


def queue_table(items: list[scoring.QueueItem]):
    if not items:
        return html.P("No unannotated images.", className="text-muted", id="learning-queue-empty")
    head = html.Thead(html.Tr([html.Th(h) for h in ("", "Image", "Region", "Score", "Status",
                                                     "Leased to")]))
    rows = [html.Tr([
        html.Td(html.Img(src=f"/api/images/{i.image_id}/thumbnail.jpg", className="thumb",
                         style={"width": "48px"})),
        html.Td([dcc.Link(i.name, href=queued_url(i.image_id)), " · ",
                 dcc.Link("viewer", href=f"/images/{i.image_id}", className="small")]),
        html.Td(region_text(i.region), className="small"),
        html.Td("-" if i.score is None else f"{i.score:.4f}"), html.Td(status_word(i.status)),
        html.Td(i.leased_to or "")]) for i in items]
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, id="learning-queue-table")


def progress_figure(points: list[dict]) -> go.Figure:
    fig = go.Figure()
    for key, name in (("f1", "validation F1@0.5"), ("dice", "validation Dice")):
        pts = [p for p in points if p.get(key) is not None]
        fig.add_trace(go.Scatter(
            x=[p["n_images"] for p in pts], y=[p[key] for p in pts], mode="lines+markers",
            name=name, text=[f"model #{p['version']}{' (active)' if p['active'] else ''}"
                             + _on_images(p) for p in pts]))
    fig.update_layout(xaxis_title="annotated images the model learned from",
                      yaxis_title="score", template="plotly_white", height=320,
                      margin=dict(l=40, r=10, t=30, b=40),
                      title="Learning progress across model versions")
    return fig


def _on_images(point: dict) -> str:
    n = point.get("n_val")
    return f" on {n} validation image{'s' if n != 1 else ''}" if isinstance(n, int) else ""


def with_validation_counts(points: list[dict], versions) -> list[dict]:
    """Each point with "n_val": how many validation images its score was measured on."""
    n_val = {v.id: v.metrics.get("n_images") for v in versions or []}
    return [{**p, "n_val": n_val.get(p["version"])} for p in points or []]


def rounds_table(points: list[dict]):
    """One row per model; a counting model's score is its count error (cells per image,
    lower is better), in its own column, never beside F1."""
    counting = any(p.get("mae") is not None for p in points)
    names = ("Model", "Images", "F1", "Dice") + (("Count error",) if counting else ()) + (
        "Active model before", "Active")
    head = html.Thead(html.Tr([html.Th(h) for h in names]))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    rows = [html.Tr([html.Td(f"#{p['version']}"), html.Td(p["n_images"]),
                     html.Td([fmt(p["f1"]), html.Span(_on_images(p), className="small "
                                                      "text-muted")], className="learning-f1"),
                     html.Td(fmt(p["dice"])),
                     *([html.Td("-" if p.get("mae") is None else f"{p['mae']:.2f}")]
                       if counting else []),
                     html.Td(("-" if p["previous_active"] is None else
                              f"count error {p['previous_active']:.2f}")
                             if p.get("mae") is not None else fmt(p["previous_active"])),
                     html.Td("✓" if p["active"] else "")]) for p in points]
    return dbc.Table([head, html.Tbody(rows)], size="sm", id="learning-rounds")


def simulation_card(can_run: bool, rows: list[dict], plan: dict | None = None) -> dbc.Card:
    form = project_settings.SimulationSettings()
    initial = {"unit": form.unit, "from": form.start, "cost": form.cost}
    return dbc.Card(dbc.CardBody([
        html.H5("Simulation (uses this project's annotated images as ground truth)"),
        dbc.Checklist(id=SIM["strategies"], value=list(form.strategies), inline=True,
                      options=[{"label": v, "value": k} for k, v in STRATEGY_LABELS.items()]),
        dbc.Row([dbc.Col([html.Label(key, className="small"),
                          _number(SIM[key], getattr(form, key), SIMULATION_LIMITS[key],
                                  not can_run)], md=2)
                 for key in ("initial", "batch", "rounds", "seeds")]
                + [dbc.Col([html.Label("test fraction", className="small"),
                            _number(SIM["test"], form.test_fraction,
                                    SIMULATION_LIMITS["test_fraction"], not can_run,
                                    step=0.05)], md=2)],
                className="my-2"),
        dbc.Row([dbc.Col([html.Label(label, className="small"),
                          dcc.Dropdown(id=SIM[key], value=initial[key], clearable=False,
                                       disabled=not can_run,
                                       options=[{"label": v, "value": k}
                                                for k, v in choices.items()])], md=3)
                 for key, (label, choices) in SIM_CHOICES.items()], className="mb-2"),
        dbc.Button("Run simulation", id=SIM["start"], size="sm", color="secondary",
                   disabled=not can_run),
        html.Span(" Runs as a background job; see Jobs.", className="small text-muted"),
        dcc.Graph(id=SIM["figure"], figure=simulation.curves_figure(rows, plan)) if rows else
        html.P("No finished simulation yet.", className="text-muted mt-2", id=SIM["figure"]),
    ]), className="mt-3")


def layout(project_id=None, **_query):
    pid = to_int(project_id)
    project, error = call(projects.get_project, pid)
    if error:
        return error_page(error)
    settings = learning_loop.loop_settings(project)
    items, _ = call(scoring.queue, pid, 20)
    points, _ = call(scoring.learning_progress, pid)
    points = with_validation_counts(points, call(model_versions.list_versions, pid)[0])
    sim_job, rows = call(simulation.latest_result, pid)[0] or (None, [])
    can_train = project.role in ("reviewer", "owner")
    return html.Div([
        dcc.Store(id=PID, data=pid),
        dcc.Interval(id=POLL, interval=5000),
        html.Div([html.H2(f"Active learning · {project.name}", className="me-3"),
                  dcc.Link("project", href=f"/projects/{pid}", className="me-3"),
                  dcc.Link("jobs", href=f"/projects/{pid}/jobs")],
                 className="d-flex align-items-center mb-2"),
        html.Div(id=MESSAGE),
        dbc.Row([
            dbc.Col([settings_card(settings, project.role == "owner",
                                   (project.settings or {}).get("annotation_mode") == "points"),
                     html.Div([dbc.Button("Rescore now", id=RESCORE, size="sm",
                                          color="outline-primary", className="me-2",
                                          disabled=not can_train),
                               dbc.Button("Train now, then rescore", id=TRAIN, size="sm",
                                          color="outline-primary", disabled=not can_train)],
                              className="my-3")], lg=5),
            dbc.Col([dcc.Graph(figure=progress_figure(points or []), id="learning-progress"),
                     rounds_table(points or [])], lg=7),
        ]),
        html.H4("Queue: next images to annotate", className="mt-3"),
        html.Div(queue_table(items or []), id=QUEUE),
        simulation_card(can_train, rows, sim_job.result.get("plan") if sim_job else None),
    ])


@callback(Output(QUEUE, "children"), Input(POLL, "n_intervals"), State(PID, "data"),
          prevent_initial_call=True)
def refresh_queue(_n, pid):
    items, error = call(scoring.queue, to_int(pid), 20)
    if error:
        raise dash.exceptions.PreventUpdate
    return queue_table(items or [])


@callback(Output(MESSAGE, "children", allow_duplicate=True), Input(SAVE, "n_clicks"),
          State(PID, "data"), State(STRATEGY, "value"), State(PASSES, "value"),
          State(ENSEMBLE, "value"), State(BATCH, "value"), State(RETRAIN, "value"),
          State(UNIT, "value"), State(REGION, "value"), prevent_initial_call=True)
def save_settings(_n, pid, strategy, passes, ensemble, batch, retrain, unit, region):
    saved, error = call(learning_loop.set_settings, to_int(pid),
                        {"strategy": strategy, "passes": passes, "ensemble_size": ensemble,
                         "batch": batch, "retrain_after": retrain, "unit": unit,
                         "region": region}, state().enqueue)
    if error:
        return alert(error)
    unit_text = ("whole images" if saved["unit"] == "image" else f"regions of {saved['region']} px")
    return alert(f"Saved: {STRATEGY_LABELS[saved['strategy']]}, the queue serves {unit_text}.",
                 "success")


@callback(Output(MESSAGE, "children", allow_duplicate=True), Input(RESCORE, "n_clicks"),
          State(PID, "data"), prevent_initial_call=True)
def rescore(_n, pid):
    job, error = call(scoring.start_scoring, to_int(pid), state().enqueue)
    return alert(error) if error else alert(f"Scoring job #{job.id} started.", "info")


@callback(Output(MESSAGE, "children", allow_duplicate=True), Input(TRAIN, "n_clicks"),
          State(PID, "data"), prevent_initial_call=True)
def train_now(_n, pid):
    job, error = call(training.start_training, to_int(pid), {"rescore": True},
                      state().enqueue)
    return alert(error) if error else alert(f"Training job #{job.id} started; it rescores "
                                            "the pool when it ends.", "info")


@callback(Output(MESSAGE, "children", allow_duplicate=True), Input(SIM["start"], "n_clicks"),
          State(PID, "data"), State(SIM["strategies"], "value"), State(SIM["initial"], "value"),
          State(SIM["batch"], "value"), State(SIM["rounds"], "value"),
          State(SIM["seeds"], "value"), State(SIM["test"], "value"), State(SIM["unit"], "value"),
          State(SIM["from"], "value"), State(SIM["cost"], "value"), prevent_initial_call=True)
def start_simulation(_n, pid, strategies, initial, batch, rounds, seeds, test, unit, start,
                     cost):
    job, error = call(simulation.start_simulation, to_int(pid),
                      {"strategies": strategies or [], "initial": initial, "batch": batch,
                       "rounds": rounds, "seeds": seeds, "test_fraction": test,
                       "unit": unit or "image", "start": start or "scratch",
                       "cost": cost or "images"},
                      state().enqueue)
    return alert(error) if error else alert(f"Simulation job #{job.id} started.", "info")

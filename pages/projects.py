"""Projects page: the projects the user is a member of, and a form to create one (for
those the site's PROJECT_CREATORS setting allows)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from app.context import current_actor, get_config, state
from app.services import projects as svc
from app.services import starting_models
from pages._common import alert, call

dash.register_page(__name__, path="/projects", title="Projects · CellLoop")

LIST = "projects-list"
NEW_TOGGLE = "projects-new-toggle"
NEW_COLLAPSE = "projects-new-collapse"
NAME = "projects-new-name"
DESCRIPTION = "projects-new-description"
CHANNELS = "projects-new-channels"
CLASSES = "projects-new-classes"
STARTING = "projects-new-starting-model"
CREATE = "projects-create"
MESSAGE = "projects-message"
REDIRECT = "projects-redirect"


def project_card(p: svc.ProjectSummary) -> dbc.Card:
    pct = round(100 * p.progress)
    return dbc.Card(dbc.CardBody([
        html.H5(dcc.Link(p.name, href=f"/projects/{p.id}", className="stretched-link"),
                className="card-title"),
        html.P(p.description or "No description.", className="card-text text-muted small"),
        html.Div([dbc.Badge(p.role, color="info", className="me-2"),
                  html.Span(f"{p.n_images} images · {p.n_annotated} annotated",
                            className="small")]),
        dbc.Progress(value=pct, label=f"{pct}%" if pct else "", className="mt-2"),
    ]), className="project-card h-100")


def project_grid(items: list[svc.ProjectSummary], may_create: bool = True):
    if not items:
        return dbc.Alert("You are not a member of any project yet. "
                         + ("Create one, or ask a project owner to add you." if may_create else
                            "Ask a project owner to add you, or a site admin to create a "
                            "project for you."), color="light", id="projects-empty")
    return dbc.Row([dbc.Col(project_card(p), md=6, lg=4, className="mb-3") for p in items])


def starting_model_field(choices: list) -> html.Div:
    """The "Starting model" dropdown: the default (the built-in model when installed) first."""
    options = [{"label": c.label, "value": c.value} for c in choices]
    return html.Div([
        dbc.Label("Starting model", html_for=STARTING, className="mt-2"),
        dcc.Dropdown(id=STARTING, options=options, clearable=False,
                     value=options[0]["value"] if options else starting_models.NONE),
        dbc.FormText("The first images open with this model's cells as suggestions to correct, "
                     "and the first training fine-tunes it. With a model the queue serves "
                     "256 px regions of each image; with none, whole images (the Learning "
                     "page changes it; counting projects always queue whole images)."),
    ])


def create_form(choices: list | None = None) -> dbc.Collapse:
    return dbc.Collapse(dbc.Card(dbc.CardBody([
        dbc.Label("Name", html_for=NAME),
        dbc.Input(id=NAME, placeholder="e.g. HeLa nuclei 2026", maxLength=120),
        dbc.Label("Description", html_for=DESCRIPTION, className="mt-2"),
        dbc.Textarea(id=DESCRIPTION, placeholder="What is imaged, what counts as a cell"),
        dbc.Row([
            dbc.Col([dbc.Label("Channels (name:colour, comma separated)", html_for=CHANNELS),
                     dbc.Input(id=CHANNELS, value="nuclei:#ffffff")], md=6),
            dbc.Col([dbc.Label("Cell classes (name:colour)", html_for=CLASSES),
                     dbc.Input(id=CLASSES, value="cell:#ff3b30")], md=6),
        ], className="mt-2"),
        starting_model_field(choices or []),
        dbc.Button("Create project", id=CREATE, color="primary", className="mt-3"),
    ])), id=NEW_COLLAPSE, is_open=False, className="mb-3")


def layout(**_query):
    items, error = call(svc.list_projects)
    actor = current_actor()
    may_create = actor is not None and svc.may_create_projects(actor,
                                                               get_config().project_creators)
    return html.Div([
        dcc.Location(id=REDIRECT, refresh=True),
        html.Div([html.H2("Projects", className="me-auto"),
                  dbc.Button("New project", id=NEW_TOGGLE, color="success")
                  if may_create else None],
                 className="d-flex align-items-center mb-3"),
        create_form(call(starting_models.choices)[0]) if may_create else None,
        html.Div(id=MESSAGE, children=alert(error)),
        html.Div(project_grid(items or [], may_create), id=LIST),
    ])


# Opening the form needs nothing from the server (creating checks permission there): toggle it
# in the browser, without a round trip.
clientside_callback("function (_n, isOpen) { return !isOpen; }",
                    Output(NEW_COLLAPSE, "is_open"), Input(NEW_TOGGLE, "n_clicks"),
                    State(NEW_COLLAPSE, "is_open"), prevent_initial_call=True)


@callback(Output(MESSAGE, "children"), Output(REDIRECT, "href"),
          Input(CREATE, "n_clicks"),
          State(NAME, "value"), State(DESCRIPTION, "value"), State(CHANNELS, "value"),
          State(CLASSES, "value"), State(STARTING, "value"), prevent_initial_call=True)
def create_project(_n, name, description, channels, classes, starting=None):
    project, error = call(svc.create_project, name or "", description or "",
                          svc.parse_named_colours(channels or ""),
                          svc.parse_named_colours(classes or ""),
                          creators=get_config().project_creators,
                          starting_model=starting or None, store=state().store)
    if error:
        return alert(error), dash.no_update
    return None, f"/projects/{project.id}"

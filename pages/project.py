"""Project page: progress, image counts and (for owners) members and their roles."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import MATCH, Input, Output, State, callback, dcc, html

from app.permissions import ROLE_NAMES
from app.services import projects as svc
from pages._common import alert, call, error_page, to_int

dash.register_page(__name__, path_template="/projects/<project_id>", title="Project · CellLoop")

PROJECT_ID = "project-id"
MEMBERS = "project-members"
ADD_USER = "project-add-username"
ADD_ROLE = "project-add-role"
ADD = "project-add-member"
MESSAGE = "project-message"
ROLE = "project-member-role"        # pattern id type, keyed by user
REMOVE = "project-member-remove"    # pattern id type
ROW_STATUS = "project-member-status"  # pattern id type
MODE, MODE_STATUS = "project-annotation-mode", "project-annotation-mode-status"



def stats(p: svc.ProjectSummary) -> dbc.Row:
    pct = round(100 * p.progress)
    cards = [("Images", p.n_images, "project-n-images"),
             ("Annotated", p.n_annotated, "project-n-annotated"),
             ("Excluded", p.status_counts.get("excluded", 0), "project-n-excluded")]
    cols = [dbc.Col(dbc.Card(dbc.CardBody([html.Div(label, className="text-muted small"),
                                           html.Div(str(value), className="stat", id=cid)])),
                    md=3) for label, value, cid in cards]
    cols.append(dbc.Col(dbc.Card(dbc.CardBody([
        html.Div("Annotation progress", className="text-muted small"),
        dbc.Progress(value=pct, label=f"{pct}%", className="mt-2", id="project-progress")])),
        md=3))
    return dbc.Row(cols, className="mb-4 g-3")


def member_rows(members: list[svc.MemberInfo], can_manage: bool):
    rows = []
    for m in members:
        if can_manage:
            role = dcc.Dropdown(ROLE_NAMES, m.role, id={"type": ROLE, "user": m.user_id},
                                clearable=False, style={"minWidth": "10rem"})
            action = dbc.Button("Remove", id={"type": REMOVE, "user": m.user_id}, size="sm",
                                color="outline-danger")
        else:
            role, action = dbc.Badge(m.role, color="info"), None
        rows.append(html.Tr([html.Td(m.username), html.Td(role), html.Td(action),
                             html.Td(id={"type": ROW_STATUS, "user": m.user_id},
                                     className="small")]))
    return dbc.Table([html.Thead(html.Tr([html.Th("User"), html.Th("Role"), html.Th(""),
                                          html.Th("")])),
                      html.Tbody(rows)], hover=True, size="sm", id="project-members-table")


def add_member_form() -> dbc.Row:
    return dbc.Row([
        dbc.Col(dbc.Input(id=ADD_USER, placeholder="username"), md=4),
        dbc.Col(dcc.Dropdown(ROLE_NAMES, "annotator", id=ADD_ROLE, clearable=False), md=3),
        dbc.Col(dbc.Button("Add member", id=ADD, color="primary"), md="auto"),
    ], className="g-2 mb-2")


def mode_setting(project) -> html.Div:
    mode = (project.settings or {}).get("annotation_mode", "outlines")
    return html.Div([
        html.H5("Annotation mode"),
        dbc.RadioItems(id=MODE, value=mode, inline=True, options=[
            {"label": "Outlines (segmentation)", "value": "outlines"},
            {"label": "Points (counting)", "value": "points"}]),
        html.Div(id=MODE_STATUS, className="small"),
    ], className="mb-4")


def layout(project_id=None, queue=None, **_query):
    pid = to_int(project_id)
    project, error = call(svc.get_project, pid)
    if error:
        return error_page(error)
    members, _ = call(svc.list_members, pid)
    can_manage = project.role == "owner"
    return html.Div([
        dcc.Store(id=PROJECT_ID, data=pid),
        html.Div([html.H2(project.name, className="me-3", id="project-name"),
                  dbc.Badge(project.role, color="info", id="project-role")],
                 className="d-flex align-items-center"),
        html.P(project.description, className="text-muted"),
        dbc.Alert("No images are waiting to be annotated.", color="info", id="project-queue-empty")
        if queue == "empty" else None,
        html.Div([dbc.Button("Annotate", href=f"/projects/{pid}/annotate", color="success",
                             className="me-2", id="project-annotate-link", external_link=True)
                  if project.role != "viewer" else None,
                  dbc.Button("Review", href=f"/projects/{pid}/review", color="info",
                             className="me-2", id="project-review-link"),
                  dbc.Button("Images", href=f"/projects/{pid}/images", color="primary",
                             className="me-2", id="project-images-link"),
                  dbc.Button("Active learning", href=f"/projects/{pid}/learning",
                             color="secondary", className="me-2", id="project-learning-link"),
                  dbc.Button("Jobs", href=f"/projects/{pid}/jobs", color="secondary",
                             className="me-2", id="project-jobs-link"),
                  dbc.Button("Models", href=f"/projects/{pid}/models", color="secondary",
                             className="me-2", id="project-models-link")], className="mb-3"),
        html.Div([dbc.Badge(c["name"], color=c["color"],
                            className="me-1 class-badge") for c in project.classes],
                 className="mb-3"),
        stats(project),
        mode_setting(project) if can_manage else None,
        html.H4("Members"),
        add_member_form() if can_manage else None,
        html.Div(id=MESSAGE),
        html.Div(member_rows(members or [], can_manage), id=MEMBERS),
    ])


@callback(Output(MEMBERS, "children"), Output(MESSAGE, "children"),
          Input(ADD, "n_clicks"),
          State(PROJECT_ID, "data"), State(ADD_USER, "value"), State(ADD_ROLE, "value"),
          prevent_initial_call=True)
def add_member(_n, project_id, username, role):
    member, error = call(svc.set_member, to_int(project_id), username or "", role or "")
    if error:
        return dash.no_update, alert(error)
    members, _ = call(svc.list_members, to_int(project_id))
    return member_rows(members or [], True), alert(
        f"{member.username} is now {member.role}.", color="success")


@callback(Output({"type": ROW_STATUS, "user": MATCH}, "children"),
          Input({"type": ROLE, "user": MATCH}, "value"),
          State({"type": ROLE, "user": MATCH}, "id"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def change_role(role, component_id, project_id):
    member, error = call(svc.set_role, to_int(project_id), to_int(component_id.get("user")),
                         role or "")
    if error:
        return html.Span(error, className="text-danger")
    return html.Span(f"saved: {member.role}", className="text-success")


@callback(Output({"type": REMOVE, "user": MATCH}, "children"),
          Output({"type": REMOVE, "user": MATCH}, "disabled"),
          Input({"type": REMOVE, "user": MATCH}, "n_clicks"),
          State({"type": REMOVE, "user": MATCH}, "id"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def remove_member(_n, component_id, project_id):
    _, error = call(svc.remove_member, to_int(project_id), to_int(component_id.get("user")))
    if error:
        return error, False
    return "Removed", True


@callback(Output(MODE_STATUS, "children"), Input(MODE, "value"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def change_mode(mode, project_id):
    saved, error = call(svc.set_annotation_mode, to_int(project_id), mode or "")
    if error:
        return html.Span(error, className="text-danger")
    return html.Span(f"saved: {saved}", className="text-success")

"""Site administration: create users, deactivate them, reset passwords (site admins only)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import MATCH, Input, Output, State, callback, html

from app.services import users as svc
from pages._common import alert, call, error_page

dash.register_page(__name__, path="/admin/users", title="Users · CellLoop")

TABLE = "admin-users-table"
NEW_NAME = "admin-new-username"
NEW_PASSWORD = "admin-new-password"
NEW_ADMIN = "admin-new-is-admin"
CREATE = "admin-create-user"
MESSAGE = "admin-message"
ACTIVE = "admin-user-active"        # pattern id type, keyed by user
RESET_PW = "admin-user-reset-pw"    # pattern id type
RESET = "admin-user-reset"          # pattern id type
RESET_STATUS = "admin-user-reset-status"


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


def users_table(items: list[svc.UserInfo]) -> dbc.Table:
    rows = [html.Tr([
        html.Td(u.username),
        html.Td("admin" if u.is_admin else ""),
        html.Td(dbc.Switch(id={"type": ACTIVE, "user": u.id}, value=u.is_active,
                           label="active")),
        html.Td(_when(u.last_login_at), className="small"),
        html.Td(dbc.InputGroup([
            dbc.Input(id={"type": RESET_PW, "user": u.id}, type="password", size="sm",
                      placeholder="new password", autoComplete="new-password"),
            dbc.Button("Reset", id={"type": RESET, "user": u.id}, size="sm",
                       color="outline-secondary")], size="sm")),
        html.Td(id={"type": RESET_STATUS, "user": u.id}, className="small"),
    ]) for u in items]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in
                                          ("User", "Role", "Active", "Last login",
                                           "Password", "")])),
                      html.Tbody(rows)], hover=True, size="sm")


def layout(**_query):
    items, error = call(svc.list_users)
    if error:
        return error_page(error)
    return html.Div([
        html.H2("Users"),
        dbc.Card(dbc.CardBody(dbc.Row([
            dbc.Col(dbc.Input(id=NEW_NAME, placeholder="username", autoComplete="off"), md=3),
            dbc.Col(dbc.Input(id=NEW_PASSWORD, placeholder="initial password", type="password",
                              autoComplete="new-password"), md=3),
            dbc.Col(dbc.Checkbox(id=NEW_ADMIN, label="site admin", value=False), md="auto"),
            dbc.Col(dbc.Button("Create user", id=CREATE, color="primary"), md="auto"),
        ], className="g-2 align-items-center")), className="mb-3"),
        html.Div(id=MESSAGE),
        html.Div(users_table(items), id=TABLE),
    ])


@callback(Output(TABLE, "children"), Output(MESSAGE, "children"),
          Output(NEW_PASSWORD, "value"),
          Input(CREATE, "n_clicks"),
          State(NEW_NAME, "value"), State(NEW_PASSWORD, "value"), State(NEW_ADMIN, "value"),
          prevent_initial_call=True)
def create_user(_n, username, password, is_admin):
    user, error = call(svc.create_user, username or "", password or "", bool(is_admin))
    if error:
        return dash.no_update, alert(error), dash.no_update
    items, _ = call(svc.list_users)
    return users_table(items or []), alert(f"Created {user.username}.", "success"), ""


@callback(Output({"type": RESET_STATUS, "user": MATCH}, "children", allow_duplicate=True),
          Input({"type": ACTIVE, "user": MATCH}, "value"),
          State({"type": ACTIVE, "user": MATCH}, "id"), prevent_initial_call=True)
def set_active(active, component_id):
    user, error = call(svc.set_active, component_id.get("user"), bool(active))
    if error:
        return html.Span(error, className="text-danger")
    return html.Span("activated" if user.is_active else "deactivated", className="text-success")


@callback(Output({"type": RESET_STATUS, "user": MATCH}, "children"),
          Output({"type": RESET_PW, "user": MATCH}, "value"),
          Input({"type": RESET, "user": MATCH}, "n_clicks"),
          State({"type": RESET_PW, "user": MATCH}, "value"),
          State({"type": RESET, "user": MATCH}, "id"), prevent_initial_call=True)
def reset_password(_n, password, component_id):
    _, error = call(svc.reset_password, component_id.get("user"), password or "")
    if error:
        return html.Span(error, className="text-danger"), dash.no_update
    return html.Span("password reset", className="text-success"), ""

"""Account page: change your own password."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, html

from app.context import current_actor
from app.services import users as svc
from pages._common import alert, call

dash.register_page(__name__, path="/account", title="Account · CellLoop")

OLD = "account-old-password"
NEW = "account-new-password"
NEW2 = "account-new-password2"
SAVE = "account-change-password"
MESSAGE = "account-message"


def layout(**_query):
    user = current_actor()
    return html.Div([
        html.H2("Account"),
        html.P(["Logged in as ", html.Strong(user.username if user else "?"),
                " (site admin)" if user is not None and user.is_admin else ""]),
        dbc.Card(dbc.CardBody([
            html.H5("Change password"),
            dbc.Label("Current password", html_for=OLD),
            dbc.Input(id=OLD, type="password", autoComplete="current-password"),
            dbc.Label("New password (8 characters or more)", html_for=NEW, className="mt-2"),
            dbc.Input(id=NEW, type="password", autoComplete="new-password"),
            dbc.Label("New password again", html_for=NEW2, className="mt-2"),
            dbc.Input(id=NEW2, type="password", autoComplete="new-password"),
            dbc.Button("Change password", id=SAVE, color="primary", className="mt-3"),
            html.Div(id=MESSAGE),
        ]), style={"maxWidth": "28rem"}),
    ])


@callback(Output(MESSAGE, "children"), Input(SAVE, "n_clicks"),
          State(OLD, "value"), State(NEW, "value"), State(NEW2, "value"),
          prevent_initial_call=True)
def change_password(_n, old, new, new2):
    if (new or "") != (new2 or ""):
        return alert("The two new passwords differ.")
    _, error = call(svc.change_password, old or "", new or "")
    if error:
        return alert(error)
    return alert("Password changed. Other sessions of yours are logged out; log in again "
                 "with the new password.", "success")

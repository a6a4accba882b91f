"""Account page: change your own password; create, list and revoke your API tokens (for
`/api/v1` and `cellloop_client`; a new token is shown once)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import MATCH, Input, Output, State, callback, dcc, html

from app.context import current_actor, get_config
from app.services import tokens as token_svc
from app.services import users as svc
from pages._common import alert, call, to_int

dash.register_page(__name__, path="/account", title="Account · CellLoop")

OLD = "account-old-password"
NEW = "account-new-password"
NEW2 = "account-new-password2"
SAVE = "account-change-password"
MESSAGE = "account-message"
TOKEN_NAME = "account-token-name"
TOKEN_WRITE = "account-token-write"
TOKEN_EXPIRY = "account-token-expiry"
TOKEN_CREATE = "account-token-create"
TOKEN_NEW = "account-token-new"          # the new token, shown once
TOKEN_TABLE = "account-token-table"
TOKEN_REVOKE = "account-token-revoke"    # pattern id type, keyed by token
TOKEN_STATE = "account-token-state"      # pattern id type
EXPIRY_OPTIONS = [{"label": "never expires", "value": "never"}] + [
    {"label": f"expires in {d} days", "value": str(d)} for d in (7, 30, 90, 365)]


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


def tokens_table(items: list[token_svc.TokenInfo]):
    if not items:
        return html.P("No tokens yet.", className="text-muted")
    rows = [html.Tr([
        html.Td(t.name), html.Td(html.Code(t.prefix + "…")),
        html.Td("read-write" if t.scope == "write" else "read"),
        html.Td(_when(t.created_at), className="small"),
        html.Td(_when(t.expires_at) if t.expires_at else "never", className="small"),
        html.Td(_when(t.last_used_at), className="small"),
        html.Td(t.state if t.state != "active" else dbc.Button(
            "Revoke", id={"type": TOKEN_REVOKE, "token": t.id}, size="sm",
            color="outline-danger"), id={"type": TOKEN_STATE, "token": t.id}),
    ]) for t in items]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in (
        "Name", "Token", "Scope", "Created", "Expires", "Last used", "")])),
        html.Tbody(rows)], hover=True, size="sm")


def write_choice(writes: bool):
    """The read-write box, or (for someone who is no more than a viewer anywhere and may not
    create projects) a note that a token of theirs reads only."""
    if writes:
        return dbc.Checkbox(id=TOKEN_WRITE, label="read-write", value=False)
    return html.Div([dbc.Checkbox(id=TOKEN_WRITE, value=False, disabled=True,
                                  style={"display": "none"}),
                     html.Span("read only (your roles allow no changes)",
                               className="small text-muted")])


def tokens_card(items, writes: bool = True) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        html.H5("API tokens"),
        html.P(["Scripts and notebooks use the HTTP API (",
                html.A("/api/v1/docs", href="/api/v1/docs"), ") or ",
                html.Code("cellloop_client"), " with a token: it acts as you, in the projects "
                "you are a member of. A read token can only read."], className="small"),
        dbc.Row([
            dbc.Col(dbc.Input(id=TOKEN_NAME, placeholder="what it is for, e.g. microscope",
                              maxLength=100, autoComplete="off"), md=4),
            dbc.Col(write_choice(writes), md="auto"),
            dbc.Col(dcc.Dropdown(id=TOKEN_EXPIRY, options=EXPIRY_OPTIONS, value="90",
                                 clearable=False), md=3),
            dbc.Col(dbc.Button("Create token", id=TOKEN_CREATE, color="primary"), md="auto"),
        ], className="g-2 align-items-center"),
        html.Div(id=TOKEN_NEW),
        html.Div(tokens_table(items), id=TOKEN_TABLE, className="mt-3"),
    ]), className="mt-4")


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
        tokens_card(call(token_svc.list_tokens)[0] or [],
                    bool(call(token_svc.write_would_act, get_config().project_creators)[0])),
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


@callback(Output(TOKEN_NEW, "children"), Output(TOKEN_TABLE, "children"),
          Output(TOKEN_NAME, "value"),
          Input(TOKEN_CREATE, "n_clicks"),
          State(TOKEN_NAME, "value"), State(TOKEN_WRITE, "value"), State(TOKEN_EXPIRY, "value"),
          prevent_initial_call=True)
def create_token(_n, name, write, expiry):
    # a forged value that is not a number reaches the service as it is, which refuses it
    days = None if expiry in (None, "never") else (to_int(expiry) or expiry)
    new, error = call(token_svc.create_token, name or "", bool(write), days)
    if error:
        return alert(error), dash.no_update, dash.no_update
    items, _ = call(token_svc.list_tokens)
    shown = dbc.Alert([
        html.Div(f"Your new token {new.info.name!r} ({'read-write' if write else 'read'}). "
                 "Copy it now: it is not shown again."),
        html.Code(new.token, id=f"{TOKEN_NEW}-value", className="user-select-all d-block mt-2"),
    ], color="success", className="mt-3")
    return shown, tokens_table(items or []), ""


@callback(Output({"type": TOKEN_STATE, "token": MATCH}, "children"),
          Input({"type": TOKEN_REVOKE, "token": MATCH}, "n_clicks"),
          State({"type": TOKEN_REVOKE, "token": MATCH}, "id"), prevent_initial_call=True)
def revoke_token(_n, component_id):
    info, error = call(token_svc.revoke_token, component_id.get("token"))
    if error:
        return html.Span(error, className="text-danger")
    return info.state

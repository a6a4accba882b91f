"""The page shell: navbar and the page container."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html
from flask import has_request_context

from app.auth import CSRF_FIELD, csrf_token
from app.context import current_actor


def navbar(user) -> dbc.Navbar:
    links = []
    if user is not None:
        links.append(dbc.NavItem(dbc.NavLink("Projects", href="/projects", id="nav-projects")))
        if user.is_admin:
            links.append(dbc.NavItem(dbc.NavLink("Users", href="/admin/users", id="nav-admin")))
        links.append(dbc.NavItem(dbc.NavLink(user.username, href="/account", id="nav-account")))
        links.append(html.Form(  # logout is a POST; the button sends the CSRF token
            html.Button("Log out", id="nav-logout", type="submit",
                        name=CSRF_FIELD, value=csrf_token(),
                        className="btn btn-outline-light btn-sm ms-2"),
            action="/logout", method="POST", className="d-flex align-items-center"))
    return dbc.Navbar(
        dbc.Container([
            dbc.NavbarBrand([html.Span("●", className="brand-mark me-1"), "CellLoop"],
                            href="/projects"),
            dbc.Nav(links, className="ms-auto align-items-center", navbar=True),
        ], fluid=True),
        color="dark", dark=True, className="mb-3",
    )


def shell_layout():
    user = current_actor() if has_request_context() else None
    return html.Div([
        navbar(user),
        dbc.Container(dash.page_container, fluid=True, className="page-body"),
    ])

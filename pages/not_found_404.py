"""The 404 page."""
import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, title="Not found · CellLoop")


def layout(**_query):
    return html.Div([html.H2("Page not found"),
                     html.P("There is nothing at this address."),
                     dbc.Button("Back to projects", href="/projects", color="secondary")],
                    className="py-4", id="not-found")

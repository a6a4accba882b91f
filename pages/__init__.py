"""The Dash UI, mounted on the Flask server by `init_dash`.

One module per page (`register_page`, a `layout` function, its own callbacks); modules
starting with `_` are helpers, not pages. Pages only call `app.services`.
"""
from __future__ import annotations

from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash._callback import GLOBAL_CALLBACK_LIST, GLOBAL_CALLBACK_MAP
from flask import Flask

PAGES_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PAGES_DIR.parent / "assets"


def init_dash(server: Flask) -> dash.Dash:
    from pages._shell import shell_layout

    # Page modules register their callbacks in Dash's process-wide list each time an app is
    # built; start from an empty list so a process that builds several apps (tests) gets
    # each callback once.
    GLOBAL_CALLBACK_LIST.clear()
    GLOBAL_CALLBACK_MAP.clear()
    app = dash.Dash(
        __name__,
        server=server,
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        external_stylesheets=["/vendor/bootstrap.min.css"],
        suppress_callback_exceptions=True,
        title="CellLoop",
        update_title=None,
        serve_locally=True,
    )
    app.layout = shell_layout
    with server.test_request_context("/"):
        app._setup_server()  # take this app's callbacks now, before another app is built
    server.extensions["dash_app"] = app
    assert dbc  # the components are registered with Dash by importing the package
    return app

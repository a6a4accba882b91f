"""The Dash UI, mounted on the Flask server by `init_dash`.

One module per page (`register_page`, a `layout` function, its own callbacks); modules
starting with `_` are helpers, not pages. Pages only call `app.services`.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash._callback import GLOBAL_CALLBACK_LIST, GLOBAL_CALLBACK_MAP
from flask import Flask

PAGES_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PAGES_DIR.parent / "assets"
PAGE_MODULES = ("projects", "project", "images", "viewer", "annotate", "review", "learning", "jobs", "models", "admin_users", "account",
                "not_found_404")


def _load_pages() -> None:
    """Import (or re-execute, for a second app in the same process) each page module, so
    it registers its page and callbacks with the app being built, under its normal name."""
    for name in PAGE_MODULES:
        module = f"{__name__}.{name}"
        if module in sys.modules:
            loaded = importlib.reload(sys.modules[module])
        else:
            loaded = importlib.import_module(module)
        dash.page_registry[module]["layout"] = loaded.layout
    _order_routes()


def _route_key(page: dict) -> tuple:
    """Most specific route first: plain paths, then templates with more path segments."""
    template = (page.get("path_template") or "").strip("/")
    return (bool(template), -template.count("/"), page["module"])


def _order_routes() -> None:
    """Dash tries pages in registry order (sorted by module name) and matches a template's
    `<var>` with fnmatch's `*`, which also matches "/": `/projects/<project_id>` therefore
    swallowed `/projects/3/review` ("No such project"), because `pages.project` sorts before
    `pages.review`. Reorder the registry so longer templates are tried first."""
    registry = dash.page_registry
    for page in sorted(registry.values(), key=_route_key):
        registry.move_to_end(page["module"])


def _background_manager(server: Flask):
    """Where background callbacks run: Celery with Redis when REDIS_URL is set (every web
    worker and machine shares it), else a disk cache in the data directory (shared by the
    gunicorn workers of one machine)."""
    config = server.extensions["cellloop"].config
    if config.redis_url:
        from app.jobs.celery_app import make_celery
        return dash.CeleryManager(make_celery(config))
    import diskcache
    folder = config.cache_dir / "dash-background"
    folder.mkdir(parents=True, exist_ok=True)
    return dash.DiskcacheManager(diskcache.Cache(str(folder)))


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
        background_callback_manager=_background_manager(server),
        use_pages=True,
        pages_folder="",  # pages are imported by _load_pages, not scanned
        assets_folder=str(ASSETS_DIR),
        external_stylesheets=["/vendor/bootstrap.min.css"],
        suppress_callback_exceptions=True,
        title="CellLoop",
        update_title=None,
        serve_locally=True,
    )
    _load_pages()
    app.layout = shell_layout
    with server.test_request_context("/"):
        app._setup_server()  # take this app's callbacks now, before another app is built
    server.extensions["dash_app"] = app
    assert dbc  # the components are registered with Dash by importing the package
    return app

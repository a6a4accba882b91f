"""The Dash UI, mounted on the Flask server by `init_dash` (called by `app.wsgi`, the only
module that imports `pages`).

One module per page (`register_page`, a `layout` function, its own callbacks); modules
starting with `_` are helpers, not pages. Pages only call `app.services`.

Dash keeps registered pages and `dash.callback`s in process-wide lists, and the first app to
serve a request takes the callbacks out of them. So the UI is built once per process: page
modules are imported once (they register their callbacks at import), one Dash app is built,
and a second `init_dash` in the same process is refused rather than left without callbacks.
Tests share that one server and point it at each test's dependencies
(`app.server.configure`).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from flask import Flask

PAGES_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PAGES_DIR.parent / "assets"
PAGE_MODULES = ("projects", "project", "images", "viewer", "annotate", "review", "learning", "jobs", "models", "admin_users", "account",
                "not_found_404")


def _load_pages() -> None:
    """Import each page module under its normal name (`pages.account`; Dash's own folder
    scan would name it `pages..account`), so it registers its page and its callbacks."""
    not_found = importlib.import_module(f"{__name__}.not_found_404").layout
    for name in PAGE_MODULES:
        module = f"{__name__}.{name}"
        loaded = importlib.import_module(module)
        page = dash.page_registry[module]
        page["layout"] = (_one_segment(loaded.layout, _path_variables(page), not_found)
                          if page.get("path_template") else loaded.layout)
    _order_routes()


def _path_variables(page: dict) -> set[str]:
    template = page.get("path_template") or ""
    return {part[1:-1] for part in template.split("/") if part.startswith("<")}


def _one_segment(layout, names: set[str], not_found):
    """A template's `<var>` matches across "/" (see `_order_routes`): `/projects/1/settings`
    reached the project page with project_id "1/settings" and said "No such project, or you
    are not a member of it" to a member. A variable with a "/" in it is the 404 page."""
    def guarded(**kwargs):
        if any("/" in str(kwargs.get(name) or "") for name in names):
            return not_found()
        return layout(**kwargs)
    guarded.__name__ = getattr(layout, "__name__", "layout")
    guarded.__doc__ = layout.__doc__
    return guarded


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
    gunicorn workers of one machine) and, per worker, a job server that forks the jobs
    (`pages._background`: never a fork of the threaded worker itself)."""
    config = server.extensions["cellloop"].config
    if config.redis_url:
        from app.jobs.celery_app import make_celery
        return dash.CeleryManager(make_celery(config))
    import diskcache
    from pages._background import JobServerManager
    folder = config.cache_dir / "dash-background"
    folder.mkdir(parents=True, exist_ok=True)
    manager = JobServerManager(diskcache.Cache(str(folder)), config,
                               current_config=lambda: server.extensions["cellloop"].config)
    warmed = []

    @server.before_request
    def _warm_job_server():
        """The worker's first request starts its job server, which builds the app while the
        user logs in: the first suggestion does not wait for it."""
        if not warmed:
            warmed.append(True)
            manager.warm()
    return manager


def init_dash(server: Flask) -> dash.Dash:
    """Mount the Dash UI on `server` (once per process; see the module docstring)."""
    from pages._shell import shell_layout

    if dash.page_registry:
        raise RuntimeError("the Dash UI is built once per process and already exists; "
                           "reuse its server (app.server.configure points it at other "
                           "dependencies)")
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
        app._setup_server()  # take the callbacks now: a failure shows here, not on a request
    server.extensions["dash_app"] = app
    assert dbc  # the components are registered with Dash by importing the package
    return app

"""The composition root of the web process: builds the dependencies (`app.deps.Deps`), the
Flask server (`app.server`) and the Dash UI (`pages`), and is the only module that imports
`pages`.

gunicorn serves `app.wsgi:application`; it is built on first access (module `__getattr__`),
so `from app.wsgi import create_app` builds nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import Config

if TYPE_CHECKING:
    from flask import Flask

    from app.deps import Deps


def web_deps(config: Config) -> Deps:
    """The web process's dependencies for `config`, after the process-wide settings it
    names (logging, inference precision) are applied and its data directory exists."""
    from app.db import Database
    from app.deps import Deps
    from app.logging_setup import configure_logging

    configure_logging(config.log_level)
    config.apply_to_models()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return Deps(config=config, db=Database(config.sqlalchemy_url, *config.db_pool))


def create_app(config: Config | None = None) -> Flask:
    """The Flask server with the Dash UI mounted (`server.extensions["dash_app"]`) and
    `web_deps(config)` in `server.extensions["cellloop"]`. Once per process: Dash keeps its
    callbacks in process-wide lists (see `pages`)."""
    from app.server import build_server, configure
    from pages import init_dash

    server = configure(build_server(), web_deps(config or Config.from_env()))
    init_dash(server)
    return server


def __getattr__(name: str):
    if name == "application":            # gunicorn's `app.wsgi:application`, built once
        application = globals()["application"] = create_app()
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

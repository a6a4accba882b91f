"""CellLoop server: the application factory.

`create_app(config)` builds the Flask server, wires the database, authentication,
logging and routes, and mounts the Dash UI from `pages/`. Nothing heavy happens at import
time: no database connection, no torch, no images.
"""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, jsonify, redirect, request, send_from_directory
from sqlalchemy import text
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config
from app.context import AppState, close_session, get_session, state
from app.db import Database

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Config | None = None) -> Flask:
    """Build the Flask server with the Dash UI mounted; the Dash app is
    `server.extensions["dash_app"]`."""
    from app.auth import init_auth
    from app.logging_setup import configure_logging, init_request_log

    config = config or Config.from_env()
    configure_logging(config.log_level)
    config.apply_to_models()
    config.data_dir.mkdir(parents=True, exist_ok=True)

    server = Flask(__name__, template_folder="templates")
    if config.proxy_fix_count:  # behind N reverse proxies: client address from X-Forwarded-For
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=config.proxy_fix_count,
                                   x_proto=config.proxy_fix_count)
    server.config.update(
        SECRET_KEY=config.resolve_secret_key(),
        MAX_CONTENT_LENGTH=config.max_content_length,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=config.is_production,
    )
    server.extensions["cellloop"] = AppState(config=config, db=Database(config.sqlalchemy_url))
    server.teardown_appcontext(close_session)
    init_request_log(server)
    init_auth(server)
    _register_routes(server)
    from app.api import bp as api_bp
    server.register_blueprint(api_bp)
    from app.queue_routes import bp as queue_bp
    server.register_blueprint(queue_bp)

    from pages import init_dash  # composition root: the UI is mounted last
    init_dash(server)
    return server


def _register_routes(server: Flask) -> None:
    import flask_bootstrap

    vendor_css = Path(flask_bootstrap.__file__).parent / "static" / "bootstrap5" / "css"

    @server.get("/healthz")
    def healthz():
        """200 only when the database answers a read and would accept a write within 2 s."""
        from app.db import probe_write
        try:
            get_session().execute(text("SELECT 1"))
            get_session().rollback()
            probe_write(state().db.engine, timeout_s=2.0)
        except Exception as exc:  # noqa: BLE001 - the health check reports any failure
            log.error("health check failed: %s", exc)
            return jsonify(status="error", database=str(exc)), 503
        return jsonify(status="ok")

    @server.get("/vendor/bootstrap.min.css")
    def bootstrap_css():
        return send_from_directory(vendor_css, "bootstrap.min.css", max_age=86400)

    @server.before_request
    def _home():
        if request.path == "/":  # Dash owns the "/" route; the home page is the project list
            return redirect("/projects")
        return None

    @server.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

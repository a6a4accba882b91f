"""The Flask server: routes, authentication, the request log, one database session per
request. No Dash here: `app.wsgi` (the composition root) mounts the pages on it.

`build_server()` makes the parts that do not depend on the configuration; `configure(server,
deps)` points it at one process's `app.deps.Deps` (kept in `server.extensions["cellloop"]`)
and applies the Flask settings that come from the configuration. The web process does both
once; the tests build one server per process and configure it per test.
"""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, jsonify, redirect, request, send_from_directory
from sqlalchemy import text
from werkzeug.middleware.proxy_fix import ProxyFix

from app.context import close_session, get_session, state
from app.deps import Deps

log = logging.getLogger(__name__)
PLAIN_WSGI = "cellloop.plain_wsgi_app"     # extensions key: the WSGI app before ProxyFix


def build_server() -> Flask:
    """Flask with authentication, the request log, `/healthz`, the pixel API, the HTTP API
    (`/api/v1`) and the queue redirect; `configure` must be called before it serves a request."""
    from app.api import bp as api_bp
    from app.api_v1 import init_api_v1
    from app.auth import init_auth
    from app.logging_setup import init_request_log
    from app.queue_routes import bp as queue_bp

    server = Flask("app", template_folder="templates")
    server.extensions[PLAIN_WSGI] = server.wsgi_app
    server.teardown_appcontext(close_session)
    init_request_log(server)
    init_auth(server)
    _register_routes(server)
    server.register_blueprint(api_bp)
    init_api_v1(server)
    server.register_blueprint(queue_bp)
    return server


def configure(server: Flask, deps: Deps) -> Flask:
    """Serve `deps` (config, database, blob store, job sender) from `server`, with the
    configuration's secret key, cookie flags, upload limit and trusted proxies."""
    config = deps.config
    server.extensions["cellloop"] = deps
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
    plain = server.extensions[PLAIN_WSGI]
    # behind N reverse proxies: the client address comes from X-Forwarded-For
    server.wsgi_app = (ProxyFix(plain, x_for=config.proxy_fix_count,
                                x_proto=config.proxy_fix_count)
                       if config.proxy_fix_count else plain)
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

"""Login, logout, registration and the guard that every request passes.

Login is a plain HTML form (POST /login with `username` and `password`), so scripts,
tests and password managers work. The guard lets anonymous users reach only the login
page, health check and static files; every Dash callback needs an active account, and
each service then checks the user's role in the project it touches.
"""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, jsonify, redirect, render_template, request, url_for)
from flask_login import LoginManager, login_user, logout_user

from app.context import current_actor, get_config, get_session
from app.errors import RateLimited, ServiceError
from app.services import users

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.session_protection = "basic"

PUBLIC_PATHS = {"/login", "/register", "/healthz", "/favicon.ico", "/_favicon.ico"}
PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/", "/vendor/")
API_PREFIXES = ("/_dash-", "/api/")


@login_manager.user_loader
def _load_user(session_id: str):
    return users.load_session_user(get_session(), session_id)


def _safe_next(target: str | None) -> str:
    """Only local paths are allowed as a redirect target (no open redirects)."""
    if not target:
        return "/projects"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/projects"
    return target


def client_ip() -> str:
    return request.remote_addr or "unknown"


def guard():
    """before_request: anonymous requests reach only public paths."""
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if current_actor() is not None:
        return None
    if path.startswith(API_PREFIXES):
        return jsonify(error="Your session has ended; log in again."), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


@bp.route("/login", methods=["GET", "POST"])
def login():
    cfg = get_config()
    error, status = None, 200
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "")
        try:
            user = users.authenticate(get_session(), username, request.form.get("password", ""),
                                      client_ip(), max_failures=cfg.login_max_failures)
        except RateLimited as exc:
            error, status = str(exc), 429
        except ServiceError as exc:
            error, status = str(exc), 401
        else:
            login_user(user)
            log.info("login ok: %s from %s", user.username, client_ip())
            return redirect(_safe_next(request.args.get("next") or request.form.get("next")))
    elif current_actor() is not None:
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, username=username,
                           next=request.args.get("next", ""),
                           allow_registration=cfg.allow_registration), status


@bp.route("/logout", methods=["POST", "GET"])
def logout():
    logout_user()
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    cfg = get_config()
    if not cfg.allow_registration:
        return render_template("login.html", error="Self-registration is switched off; ask an "
                               "admin for an account.", username="", next="",
                               allow_registration=False), 403
    error = None
    if request.method == "POST":
        session = get_session()
        if request.form.get("password") != request.form.get("password2"):
            error = "The two passwords differ."
        else:
            try:
                users.register(session, request.form.get("username", ""),
                               request.form.get("password", ""), cfg.allow_registration)
                session.commit()
                return redirect(url_for("auth.login"))
            except ServiceError as exc:
                session.rollback()
                error = str(exc)
    return render_template("register.html", error=error), 400 if error else 200


def init_auth(server: Flask) -> None:
    login_manager.init_app(server)
    login_manager.login_view = "auth.login"
    server.register_blueprint(bp)
    server.before_request(guard)

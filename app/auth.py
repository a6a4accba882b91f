"""Login, logout, registration and the guard that every request passes.

Login is a plain HTML form (POST /login with `username`, `password` and the form's
`csrf_token`), so scripts, tests and password managers work. Each login is a server-side
session row (`users.start_session`); the signed session cookie carries only its random
token, so logout (POST, with the CSRF token) ends it on the server and a copied cookie
stops working. The guard lets anonymous users reach only the login page, health check and
static files; every Dash callback needs a live session of an active account, and each
service then checks the user's role in the project it touches.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, jsonify, redirect, render_template, request, url_for)
from flask import session as cookie_session
from flask_login import LoginManager, login_user, logout_user

from app.context import current_actor, get_config, get_session
from app.errors import PermissionDenied, RateLimited, ServiceError
from app.services import users

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.session_protection = "basic"

PUBLIC_PATHS = {"/login", "/logout", "/register", "/healthz", "/favicon.ico", "/_favicon.ico"}
PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/", "/vendor/")
API_PREFIXES = ("/_dash-", "/api/")
API_V1_BLUEPRINT = "api_v1"   # authenticates its own requests (bearer tokens): app.api_v1.auth
CSRF_FIELD = "csrf_token"
EXPIRED_FORM = "This form has expired; reload the page and try again."


@login_manager.user_loader
def _load_user(token: str):
    return users.load_session_user(get_session(), token)


class _NewLogin:
    """The user as handed to flask-login at login: its id is the session token."""

    def __init__(self, user, token: str):
        self._user, self._token = user, token

    def get_id(self) -> str:
        return self._token

    def __getattr__(self, name):
        return getattr(self._user, name)


def csrf_token() -> str:
    """This browser session's CSRF token (made on first use), for hidden form fields."""
    token = cookie_session.get("_csrf")
    if not token:
        token = cookie_session["_csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    """Whether the POSTed form carries this session's CSRF token."""
    sent, known = request.form.get(CSRF_FIELD, ""), cookie_session.get("_csrf", "")
    return bool(known) and hmac.compare_digest(sent.encode(), known.encode())


def current_session_token() -> str | None:
    """The login-session token of this request (None when not logged in)."""
    return cookie_session.get("_user_id")


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
    if request.blueprint == API_V1_BLUEPRINT:   # routed to /api/v1 (not any path under it:
        return None                             # /api/v1/ itself was the Dash shell)
    if current_actor() is not None:
        return None
    if path.startswith(API_PREFIXES):
        return jsonify(error="Your session has ended; log in again."), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _login_page(error=None, status=200, username=""):
    return render_template("login.html", error=error, username=username,
                           next=request.args.get("next", ""),
                           allow_registration=get_config().allow_registration), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    cfg = get_config()
    if request.method == "GET":
        if current_actor() is not None:
            return redirect(_safe_next(request.args.get("next")))
        return _login_page()
    username = request.form.get("username", "")
    if not csrf_ok():
        return _login_page(EXPIRED_FORM, 400, username)
    db = get_session()
    published = None
    if cfg.is_production:
        from app.demo import published_passwords
        published = published_passwords()
    try:
        user = users.authenticate(db, username, request.form.get("password", ""), client_ip(),
                                  max_failures=cfg.login_max_failures, published=published)
    except RateLimited as exc:
        page, status = _login_page(str(exc), 429, username)
        return page, status, {"Retry-After": str(getattr(exc, "retry_after", 60))}
    except ServiceError as exc:  # wrong credentials 401; a refused demo account 403
        return _login_page(str(exc), 403 if isinstance(exc, PermissionDenied) else 401,
                           username)
    token = users.start_session(db, user, client_ip(), request.user_agent.string)
    db.commit()
    cookie_session.clear()          # nothing from before the login carries over
    login_user(_NewLogin(user, token))
    cookie_session["_csrf"] = secrets.token_urlsafe(32)
    log.info("login ok: %s from %s", user.username, client_ip())
    return redirect(_safe_next(request.args.get("next") or request.form.get("next")))


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """POST with the CSRF token ends the session; GET only shows the button that does."""
    if current_actor() is None:
        cookie_session.pop("_user_id", None)
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("logout.html", error=None)
    if not csrf_ok():
        return render_template("logout.html", error=EXPIRED_FORM), 400
    db = get_session()
    users.end_session(db, current_session_token())
    db.commit()
    logout_user()
    cookie_session.pop("_csrf", None)
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
        if not csrf_ok():
            error = EXPIRED_FORM
        elif request.form.get("password") != request.form.get("password2"):
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
    server.jinja_env.globals["csrf_token"] = csrf_token
    server.before_request(guard)

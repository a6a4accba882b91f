"""Per-process and per-request access to the app's parts, for Flask routes and Dash pages.

`state()` is the process's `app.deps.Deps` (`server.extensions["cellloop"]`, put there by
`app.server.configure`); `get_session()` opens one SQLAlchemy session per request (closed at
teardown); `current_actor()` is the logged-in `User`, attached to that session.
"""
from __future__ import annotations

from flask import current_app, g
from flask_login import current_user
from sqlalchemy.orm import Session

from app.config import Config
from app.deps import Deps
from app.tables import User


def state() -> Deps:
    return current_app.extensions["cellloop"]


def get_config() -> Config:
    return state().config


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = state().db.session()
    return g.db_session


def close_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def current_actor() -> User | None:
    """The logged-in, active user, or None."""
    user = current_user._get_current_object() if current_user else None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user

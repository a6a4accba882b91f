"""Helpers shared by pages: call a service as the logged-in user, show results."""
from __future__ import annotations

import logging
from typing import Any, Callable

import dash_bootstrap_components as dbc
from dash import html

from app.context import current_actor, get_session
from app.errors import ServiceError

log = logging.getLogger(__name__)
SESSION_ENDED = "Your session has ended; log in again."


def call(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, str | None]:
    """Run `fn(session, actor, *args, **kwargs)`; commit on success.

    Returns (result, None) or (None, message) when the service refused the action.
    """
    actor = current_actor()
    if actor is None:
        return None, SESSION_ENDED
    session = get_session()
    try:
        result = fn(session, actor, *args, **kwargs)
        session.commit()
        return result, None
    except ServiceError as exc:
        session.rollback()
        log.info("refused %s for %s: %s", fn.__name__, actor.username, exc)
        return None, str(exc)


def alert(message: str | None, color: str = "danger", **kwargs) -> Any:
    if not message:
        return None
    return dbc.Alert(message, color=color, dismissable=True, className="mt-2", **kwargs)


def error_page(message: str) -> html.Div:
    return html.Div([html.H2("Not available"), dbc.Alert(message, color="warning"),
                     dbc.Button("Back to projects", href="/projects", color="secondary")],
                    className="py-4")


def to_int(value) -> int | None:
    """An id from a URL or a store, or None when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def status_word(status) -> str:
    """An image status as a person reads it: "in progress", not the stored "in_progress"."""
    return str(status or "").replace("_", " ")

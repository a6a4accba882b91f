"""Who is calling `/api/v1`, checked before every view (`authenticate`, a before_request of
the blueprint; the site-wide guard in `app.auth` leaves /api/v1 to it).

- `Authorization: Bearer <token>`: a personal access token (`app.services.tokens`), counted
  against its rate limit; a "read" token may only GET. No CSRF token is needed: a browser
  never adds this header by itself, so another site cannot forge such a request.
- No header, but a logged-in browser session (the cookie): reads only. A cookie is sent by
  the browser on its own, so a cookie-authenticated write could be forged by another site;
  writes therefore need a token (403 `token_required`), and there is no CSRF to check.

The caller is then `actor()`, the token's account with its own project roles: every view
hands it to the same services the pages call, which check the role."""
from __future__ import annotations

import logging

from flask import g, request

from app.api_v1.errors import CHALLENGE, error
from app.api_v1.registry import current_endpoint
from app.auth import client_ip
from app.context import current_actor, get_config, get_session
from app.services import tokens
from app.tables import User

log = logging.getLogger("cellloop.api")


def actor() -> User:
    return g.api_actor


def authenticate():
    ep = current_endpoint()
    if ep is None or ep.public:
        return None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "unauthorized", "Send the token as 'Authorization: Bearer <token>'.",
                         headers={"WWW-Authenticate": CHALLENGE})
        config = get_config()
        user, info = tokens.authenticate(get_session(), token.strip(), client_ip(),
                                         config.login_max_failures, config.api_rate_per_minute)
        g.api_actor, g.api_token = user, info
        if ep.write and info.scope != "write":
            return error(403, "read_only_token", f"The token {info.name!r} can only read; create "
                         "a read-write token on your account page to change things.")
        return None
    user = current_actor()
    if user is None:
        return error(401, "unauthorized", "Authenticate with 'Authorization: Bearer <token>' "
                     "(create a token on your account page).",
                     headers={"WWW-Authenticate": CHALLENGE})
    if ep.write:
        return error(403, "token_required", "Changes through the API need a token "
                     "('Authorization: Bearer <token>'); a browser session may only read.")
    g.api_actor, g.api_token = user, None
    return None


def log_use(response):
    """after_request: one line per token request (who, which token, what, the answer)."""
    info = g.get("api_token")
    if info is not None:
        log.info("api token %s (%r) of %s: %s %s -> %s", info.id, info.name, info.username,
                 request.method, request.path, response.status_code)
    return response

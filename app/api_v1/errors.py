"""JSON errors of `/api/v1`: every refusal is `{"error": {"code": ..., "message": ...}}`
with a stable, machine-readable `code` and a message for people (plus `details` for
invalid input). The codes are part of the API: add new ones, never rename them.

| status | code |
|---|---|
| 400 | `invalid` (bad parameters or body; `details` lists them), `bad_request` |
| 401 | `unauthorized` (no token, or a bad, revoked or expired one) |
| 403 | `forbidden` (the role is too low), `read_only_token`, `token_required` |
| 404 | `not_found` (also: a project the account is not a member of) |
| 405 | `method_not_allowed` |
| 409 | `conflict` |
| 413 | `too_large` |
| 429 | `rate_limited` (with `Retry-After`) |
| 500 | `internal`, `export_failed` |
"""
from __future__ import annotations

import logging

import pydantic
from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from app.context import get_session
from app.errors import (ConfigurationError, Conflict, NotFound, PermissionDenied, RateLimited,
                        ServiceError, ValidationError)

log = logging.getLogger(__name__)
PREFIX = "/api/v1/"
CHALLENGE = 'Bearer realm="cellloop"'    # WWW-Authenticate of every 401

CODES = {
    RateLimited: "rate_limited", NotFound: "not_found", PermissionDenied: "forbidden",
    Conflict: "conflict", ValidationError: "invalid", ConfigurationError: "configuration",
}
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large",
              429: "rate_limited"}
ALL_CODES = ("invalid", "bad_request", "unauthorized", "forbidden", "read_only_token",
             "token_required", "not_found", "method_not_allowed", "conflict", "too_large",
             "rate_limited", "configuration", "internal", "export_failed")


def error(status: int, code: str, message: str, details=None, headers=None):
    body = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify(error=body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _rollback() -> None:
    try:
        get_session().rollback()
    except Exception:  # noqa: BLE001 - an error reply must not fail on the rollback
        log.exception("rollback after an API error failed")


def service_error(exc: ServiceError):
    _rollback()
    code = getattr(exc, "api_code", None) or next(
        (c for cls, c in CODES.items() if isinstance(exc, cls)), None)
    if code is None:
        code = "export_failed" if type(exc).__name__ == "ExportFailed" else \
            HTTP_CODES.get(exc.http_status, "bad_request" if exc.http_status < 500 else "internal")
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else {}
    if exc.http_status == 401:       # a refused token: say how to authenticate (RFC 7235)
        headers["WWW-Authenticate"] = CHALLENGE
    return error(exc.http_status, code, str(exc), headers=headers)


def invalid_input(exc: pydantic.ValidationError):
    _rollback()
    details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
               for e in exc.errors()]
    first = details[0] if details else {"field": "", "message": "invalid"}
    return error(400, "invalid", f"{first['field'] or 'input'}: {first['message']}", details)


def http_error(exc: HTTPException):
    """Routing and protocol errors as JSON under /api/v1 (the HTML default elsewhere)."""
    if not request.path.startswith(PREFIX):
        return exc
    status = exc.code or 500
    return error(status, HTTP_CODES.get(status, "internal" if status >= 500 else "bad_request"),
                 exc.description or exc.name)


def internal_error(exc: Exception):
    if not request.path.startswith(PREFIX):
        raise exc
    _rollback()
    log.exception("api error on %s %s", request.method, request.path)
    return error(500, "internal", "Something went wrong on the server; it is in the log.")

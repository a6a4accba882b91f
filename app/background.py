"""Running a service call outside a web request, as a given user: for Dash background
callbacks, which run in another process (DiskcacheManager) or in a Celery worker
(CeleryManager) where there is no logged-in `current_user`.

The page puts a signed, expiring token naming the user (id and auth version) in its state;
`run_as` checks the signature, age, account state and auth version, then calls the service
with that user, exactly as `pages._common.call` does inside a request."""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask import Flask
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.errors import PermissionDenied, ServiceError
from app.tables import User

log = logging.getLogger(__name__)
SALT = "cellloop-background-actor"
MAX_AGE_S = 12 * 3600


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def sign_actor(secret_key: str, user: User) -> str:
    return _serializer(secret_key).dumps({"uid": user.id, "v": user.auth_version})


def actor_from_token(session, secret_key: str, token: str, max_age: int = MAX_AGE_S) -> User:
    try:
        data = _serializer(secret_key).loads(token or "", max_age=max_age)
    except SignatureExpired:
        raise PermissionDenied("This page is too old; reload it.") from None
    except BadSignature:
        raise PermissionDenied("Not signed in.") from None
    user = session.get(User, int(data.get("uid", 0)))
    if user is None or not user.is_active or user.auth_version != data.get("v"):
        raise PermissionDenied("Your session has ended; log in again.")
    return user


def run_as(server: Flask, token: str, fn: Callable[..., Any], *args, **kwargs
           ) -> tuple[Any, str | None]:
    """(result, None) or (None, message): `fn(session, user, *args, **kwargs)` committed."""
    app_state = server.extensions["cellloop"]
    app_state.db.dispose()            # forked process: never reuse the parent's connections
    with server.app_context():
        session = app_state.db.session()
        try:
            actor = actor_from_token(session, server.secret_key, token)
            result = fn(session, actor, *args, **kwargs)
            session.commit()
            return result, None
        except ServiceError as exc:
            session.rollback()
            log.info("background %s refused: %s", fn.__name__, exc)
            return None, str(exc)
        finally:
            session.close()

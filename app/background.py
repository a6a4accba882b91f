"""Running a service call outside a web request, as the user who asked: for Dash background
callbacks, which run in another process (DiskcacheManager) or in a Celery worker
(CeleryManager) where there is no logged-in `current_user`.

Who asked is proved twice, at run time: by the login session cookie of the request that
started the callback (Dash hands the request's cookies to background callbacks; the session
must still be live, so a logout ends it), and by a signed token that the page put in its
state for that user. Both must name the same user: a token copied from another user's page
is refused. The service then checks the user's role in the project, exactly as
`pages._common.call` does inside a request.

Fork safety: a background callback process is forked from a job server with one thread
(pages._background), no longer from the threaded web worker. The guards of that time stay, for
any process forked from one with threads (a Celery worker's pool): if torch was loaded, the
child limits torch to one thread, since OpenMP thread pools do not survive fork (a child once
hung for ever in a thread barrier while it held the SQLite write lock); and the child writes its
log lines to new file objects (`_fork_safe_logging`): a buffered file's lock is copied into the
child as it was, held for ever when another thread was writing a log line at the moment of the
fork."""
from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, Callable, Mapping

from flask import Flask
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.errors import PermissionDenied, ServiceError
from app.tables import User

log = logging.getLogger(__name__)
SALT = "cellloop-background-actor"
_HOME_PID = os.getpid()           # the process that imported this module (never a fork)
_streams_pid: int | None = None   # the forked process whose log streams are already new
_inherited: list = []             # the parent's streams, kept: never flushed, closed or freed
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


def session_user(session, server: Flask, cookies: Mapping[str, str] | None) -> User:
    """The user of the live login session in `cookies` (the request's), or PermissionDenied."""
    from app.services.users import load_session_user
    raw = (cookies or {}).get(server.config.get("SESSION_COOKIE_NAME") or "session")
    serializer = server.session_interface.get_signing_serializer(server)
    if not raw or serializer is None:
        raise PermissionDenied("Not signed in.")
    try:
        data = serializer.loads(raw, max_age=int(server.permanent_session_lifetime.total_seconds()))
    except BadSignature:
        raise PermissionDenied("Not signed in.") from None
    user = load_session_user(session, data.get("_user_id"))
    if user is None:
        raise PermissionDenied("Your session has ended; log in again.")
    return user


def _unshared(stream):
    """`stream`, or a new text file on a duplicate of its descriptor when it is a buffered file:
    its buffer's lock may have been held by another thread of the parent at the fork (one writing
    a request's log line, waiting for the GIL), and the child's copy is then never released
    (seen: the child's first log line waited for ever in FileHandler.emit -> flush ->
    BufferedWriter.write, on pytest's /dev/null log file handler). The old object is kept
    unflushed: flushing or freeing it would wait on that lock (the child ends with os._exit)."""
    buffer = getattr(stream, "buffer", None)
    if not isinstance(stream, io.TextIOWrapper) or \
            not isinstance(buffer, (io.BufferedWriter, io.BufferedRandom)):
        return stream                 # no lock of its own: StringIO, unbuffered files
    try:
        fd = os.dup(buffer.raw.fileno())          # takes no lock, unlike stream.fileno()
    except (OSError, ValueError, AttributeError):
        return stream
    _inherited.append(stream)
    return open(fd, "w", buffering=1 if stream.line_buffering else -1,
                encoding=stream.encoding, errors=stream.errors)


def _fork_safe_logging() -> None:
    """In a forked process (one that did not import this module itself), once: new streams
    for sys.stdout, sys.stderr and every logging handler's stream, on the same files (see
    `_unshared`)."""
    global _streams_pid
    pid = os.getpid()
    if pid in (_HOME_PID, _streams_pid):
        return
    _streams_pid = pid
    new: dict[int, Any] = {}

    def swap(stream):
        if id(stream) not in new:
            new[id(stream)] = _unshared(stream)
        return new[id(stream)]
    for name in ("stdout", "stderr"):
        setattr(sys, name, swap(getattr(sys, name)))
    loggers = [logging.getLogger()] + [logger for logger in
                                       list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream is not None:
                try:
                    handler.stream = swap(handler.stream)    # not setStream: it flushes the old
                except AttributeError:    # a read-only stream: logging's own sys.stderr handler
                    pass


def _fork_safe_torch() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        log.warning("torch was loaded in the process this background callback was forked "
                    "from; running it on one thread")
        torch.set_num_threads(1)


def run_as(server: Flask, token: str, cookies: Mapping[str, str] | None,
           fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, str | None]:
    """(result, None) or (None, message): `fn(session, user, *args, **kwargs)` committed, for
    the user whose live session sent the request and whose page signed `token`."""
    _fork_safe_logging()              # before anything in the child logs
    app_state = server.extensions["cellloop"]
    app_state.db.dispose()            # forked process: never reuse the parent's connections
    _fork_safe_torch()
    with server.app_context():
        session = app_state.db.session()
        try:
            actor = session_user(session, server, cookies)
            signed = actor_from_token(session, server.secret_key, token)
            if signed.id != actor.id:
                log.warning("background %s refused: page token of user %s sent by user %s",
                            fn.__name__, signed.id, actor.id)
                raise PermissionDenied("This page belongs to another login; reload it.")
            result = fn(session, actor, *args, **kwargs)
            session.commit()
            return result, None
        except ServiceError as exc:
            session.rollback()
            log.info("background %s refused: %s", fn.__name__, exc)
            return None, str(exc)
        finally:
            session.close()

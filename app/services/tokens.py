"""Personal access tokens for the HTTP API (`/api/v1`): create (shown once), list, revoke,
and authenticate a request's bearer token, with a per-token rate limit.

A token is `cl_` + 32 random bytes (url-safe base64); only its SHA-256 is stored, so the
table alone lets nobody in (as with login sessions, `users._token_id`). It acts as its
user, with that user's project roles (`app.permissions.require`, exactly as pages do); a
"read" token may only read (GET), a "write" token may also change things. Revoked and
expired tokens, and tokens of deactivated accounts, authenticate nobody.

Rate limits reuse the login limiter's mechanism: counts kept in the database, so they hold
across every gunicorn worker. Each token counts its requests in the current minute on its
own row (one atomic UPDATE per request); unknown or dead tokens count as failed logins of
the pseudo-account `(api token)` from the client's address (`users.login_lockout`), so
guessing tokens locks the address out the same way guessing passwords does.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.errors import NotFound, RateLimited, ServiceError, ValidationError
from app.permissions import Actor, Role, require_admin
from app.services import users
from app.tables import ApiToken, LoginAttempt, Membership, User, utcnow

log = logging.getLogger(__name__)

PREFIX = "cl_"
SCOPES = ("read", "write")
MAX_TOKENS = 50                       # live tokens per user
MAX_EXPIRY_DAYS = 3650
FAILED_TOKEN_ACCOUNT = "(api token)"  # LoginAttempt.username of bad bearer tokens (no account
                                      # can have this name: USERNAME_RE)
DEFAULT_PER_MINUTE = 600


class Unauthorized(ServiceError):
    """No usable credentials: missing, unknown, revoked or expired token."""
    http_status = 401


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str               # the first characters of the token, to tell tokens apart
    scope: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    last_used_ip: str
    username: str = ""

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewToken:
    info: TokenInfo
    token: str                # the secret: shown once, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiToken, username: str = "") -> TokenInfo:
    return TokenInfo(row.id, row.name, row.prefix, row.scope, row.created_at, row.expires_at,
                     row.revoked_at, row.last_used_at, row.last_used_ip or "", username)


def _live(user_id: int, now: dt.datetime) -> list:
    return [ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now)]


def _issue(session: Session, user: User, name: str, write: bool,
           expires_days: int | None) -> NewToken:
    name = (name or "").strip()
    if not 1 <= len(name) <= 100 or any(ord(c) < 32 for c in name):
        raise ValidationError("Give the token a name of 1-100 characters (what it is for).")
    if expires_days is not None:
        if not isinstance(expires_days, int) or not 1 <= expires_days <= MAX_EXPIRY_DAYS:
            raise ValidationError(f"A token expires after 1 to {MAX_EXPIRY_DAYS} days, or never.")
    now = utcnow()
    live = session.scalars(select(ApiToken.id).where(*_live(user.id, now))).all()
    if len(live) >= MAX_TOKENS:
        raise ValidationError(f"{user.username} already has {MAX_TOKENS} live tokens; revoke "
                              "one first.")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=hash_token(token),
                   prefix=token[:10], scope="write" if write else "read", created_at=now,
                   expires_at=now + dt.timedelta(days=expires_days) if expires_days else None)
    session.add(row)
    session.flush()
    log.info("api token %s (%r, %s) created for %s", row.id, name, row.scope, user.username)
    return NewToken(_info(row, user.username), token)


def create_token(session: Session, actor: Actor, name: str, write: bool = False,
                 expires_days: int | None = None) -> NewToken:
    """A new token of the actor (an active account); the secret is in the result only."""
    user = session.get(User, actor.id) if actor.id is not None else None
    if user is None or not user.is_active:
        raise ValidationError("Only a logged-in account can create its own tokens.")
    return _issue(session, user, name, write, expires_days)


def create_token_for(session: Session, actor: Actor, username: str, name: str,
                     write: bool = False, expires_days: int | None = None) -> NewToken:
    """Site admins (and the CLI) issue a token to an account."""
    require_admin(actor)
    user = users.find_user(session, (username or "").strip())
    if user is None:
        raise NotFound(f"No user {username!r}.")
    if not user.is_active:
        raise ValidationError(f"{user.username} is deactivated.")
    return _issue(session, user, name, write, expires_days)


def write_would_act(session: Session, actor: Actor, project_creators: str) -> bool:
    """Whether a read-write token of the actor could change more than a read token:
    site admins, those who may create projects (`project_creators`, the site setting), and
    members above viewer in some project. (A viewer's read-write token is refused every
    change to a project; the account page offers such a person a read token only.)"""
    from app.services.projects import may_create_projects
    if actor.id is None:
        return False
    if actor.is_admin or may_create_projects(actor, project_creators):
        return True
    return session.scalar(select(Membership.id).where(
        Membership.user_id == actor.id, Membership.role != Role.viewer.name).limit(1)) is not None


def list_tokens(session: Session, actor: Actor) -> list[TokenInfo]:
    """The actor's tokens, newest first (revoked ones too, marked)."""
    if actor.id is None:
        return []
    rows = session.scalars(select(ApiToken).where(ApiToken.user_id == actor.id)
                           .order_by(ApiToken.id.desc())).all()
    return [_info(r, actor.username) for r in rows]


def revoke_token(session: Session, actor: Actor, token_id: int) -> TokenInfo:
    """Revoke one of the actor's tokens (site admins: anyone's). Revoking twice is harmless."""
    row = session.get(ApiToken, token_id) if isinstance(token_id, int) else None
    if row is None or (row.user_id != actor.id and not actor.is_admin):
        raise NotFound("No such token.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        log.info("api token %s (%r) revoked by %s", row.id, row.name, actor.username)
    return _info(row)


def _refuse(session: Session, ip: str, why: str) -> Unauthorized:
    """Count a failed token as a failed login of FAILED_TOKEN_ACCOUNT from `ip`."""
    try:
        session.rollback()
        session.add(LoginAttempt(username=FAILED_TOKEN_ACCOUNT, ip=ip, success=False))
        session.commit()
    except SQLAlchemyError as exc:       # a busy database must not turn a 401 into a 500
        session.rollback()
        log.warning("could not record a failed api token: %s", exc)
    log.warning("api token refused from %s: %s", ip, why)
    return Unauthorized("The API token is missing, unknown, revoked or expired.")


def authenticate(session: Session, token: str, ip: str, max_failures: int = 10,
                 per_minute: int = DEFAULT_PER_MINUTE) -> tuple[User, TokenInfo]:
    """(user, token) of a live bearer token; raises Unauthorized, or RateLimited (with
    `retry_after` seconds) when the address guessed too many tokens or the token made more
    than `per_minute` requests this minute. Records the use (last used, count)."""
    ip = (ip or "unknown")[:64]
    failures, wait = users.login_lockout(session, FAILED_TOKEN_ACCOUNT, ip, max_failures)
    if wait > 0:
        exc = RateLimited("Too many bad API tokens from this address; try again in "
                          f"{math.ceil(wait)} seconds.")
        exc.retry_after = math.ceil(wait)
        raise exc
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        raise _refuse(session, ip, "malformed")
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    now = utcnow()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise _refuse(session, ip, "unknown token")
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise _refuse(session, ip, f"token {row.id} is revoked or expired")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise _refuse(session, ip, f"token {row.id}: account deactivated")
    if failures:
        _forget_failures(session, ip)
    count = _count_use(session, row.id, ip, now)
    if count > per_minute:
        exc = RateLimited(f"This token made more than {per_minute} requests this minute; "
                          "slow down.")
        exc.retry_after = max(1, 60 - now.second)
        raise exc
    return user, _info(row, user.username)


def _forget_failures(session: Session, ip: str) -> None:
    """A live token from `ip` ends its run of bad ones, as a successful login does (failures
    count "in a row"): without it one stale token in a script, retried from a lab's shared
    address, would lock every token of that address out, for up to an hour at a time, all
    day. Guessing stays bounded by the address-wide limit, which counts every failure."""
    try:
        with Session(bind=session.get_bind()) as own:
            own.add(LoginAttempt(username=FAILED_TOKEN_ACCOUNT, ip=ip, success=True))
            own.commit()
    except SQLAlchemyError as exc:
        log.warning("could not record a good api token: %s", exc)


def _count_use(session: Session, token_id: int, ip: str, now: dt.datetime) -> int:
    """Count one request in the token's current minute, in its own short transaction (the
    request's session stays free of writes); the count so far this minute."""
    minute = now.replace(second=0, microsecond=0)
    try:
        with Session(bind=session.get_bind()) as own:
            own.execute(update(ApiToken).where(ApiToken.id == token_id).values(
                window_count=case((ApiToken.window_start == minute,
                                   ApiToken.window_count + 1), else_=1),
                window_start=minute, last_used_at=now, last_used_ip=ip))
            count = own.scalar(select(ApiToken.window_count).where(ApiToken.id == token_id))
            own.commit()
            return int(count or 0)
    except SQLAlchemyError as exc:
        log.warning("could not count an api token's use: %s", exc)
        return 0

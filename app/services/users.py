"""Accounts: create, authenticate (rate-limited), change and reset passwords, (de)activate,
and login sessions.

Passwords are hashed with scrypt (werkzeug). Failed logins are rows in `login_attempt`, so
the limit holds across every gunicorn worker; it is per (account, client address) with
back-off, so an attacker's address is locked without locking out the account's owner.
Each login is a `user_session` row; the session cookie carries its random token. Logout,
password changes and deactivation revoke rows, so a copied cookie stops working.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Mapping

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Conflict, NotFound, PermissionDenied, RateLimited, ValidationError
from app.permissions import Actor, require_admin
from app.tables import LoginAttempt, User, UserSession, utcnow

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$")
MIN_PASSWORD = 8
HASH_METHOD = "scrypt"  # werkzeug's scrypt (n=2^15, r=8, p=1); tests may lower the cost
LOCK_BASE_S = 60                        # first lockout of an (account, address) pair
LOCK_MAX_S = 3600                       # longest lockout
FAILURE_MEMORY = dt.timedelta(days=1)   # failures older than this are forgotten
ADDRESS_FACTOR = 10                     # an address failing on many accounts: factor x limit
ADDRESS_WINDOW = dt.timedelta(minutes=15)
SESSION_IDLE = dt.timedelta(days=14)    # a login session unused this long has ended
SEEN_EVERY = dt.timedelta(minutes=5)    # last_seen_at is written at most this often


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    is_admin: bool
    is_active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


def _info(user: User) -> UserInfo:
    return UserInfo(user.id, user.username, user.is_admin, user.is_active, user.created_at,
                    user.last_login_at)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user does not exist, so timing does not reveal usernames."""
    return _hash("not-a-real-password")


def _hash(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(f"Passwords need at least {MIN_PASSWORD} characters.")
    if len(password) > 1024:
        raise ValidationError("That password is too long (1024 characters at most).")


def _get(session: Session, user_id: int) -> User:
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None:
        raise NotFound("No such user.")
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, actor: Actor, username: str, password: str,
                is_admin: bool = False) -> UserInfo:
    """Site admins (and the CLI) create accounts."""
    require_admin(actor)
    return _create(session, username, password, is_admin)


def register(session: Session, username: str, password: str, allowed: bool) -> UserInfo:
    """Self-registration, when the site's config allows it."""
    if not allowed:
        raise PermissionDenied("Self-registration is switched off; ask an admin for an account.")
    return _create(session, username, password, False)


def _create(session: Session, username: str, password: str, is_admin: bool) -> UserInfo:
    username = (username or "").strip()
    if not USERNAME_RE.match(username):
        raise ValidationError("Usernames are 2-64 letters, digits or . _ @ -, starting with a "
                              "letter or digit.")
    _check_password(password)
    if find_user(session, username) is not None:
        raise Conflict(f"The username {username!r} is taken.")
    user = User(username=username, password_hash=_hash(password),
                is_admin=bool(is_admin), is_active=True)
    session.add(user)
    session.flush()
    log.info("created user %s (admin=%s)", username, is_admin)
    return _info(user)


def _lock_seconds(failures: int, max_failures: int) -> int:
    """How long an (account, address) pair waits after `failures` failures in a row: a
    minute at the limit, doubling with each failure after it, an hour at most."""
    return min(LOCK_BASE_S * 2 ** min(failures - max_failures, 12), LOCK_MAX_S)


def login_lockout(session: Session, username: str, ip: str, max_failures: int = 10,
                  now: dt.datetime | None = None) -> tuple[int, float]:
    """(failures in a row of this account from this address, seconds it must still wait).

    Failures count per (account, address), since that pair's last success and within a day,
    so an attacker's address is locked while the account's owner logs in from elsewhere.
    An address that fails on many accounts (spraying) is locked as a whole."""
    now = now or utcnow()
    since = now - FAILURE_MEMORY
    pair = (LoginAttempt.username == username, LoginAttempt.ip == ip)
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(
        *pair, LoginAttempt.success.is_(True), LoginAttempt.at >= since))
    failures, last_failure = session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(
            *pair, LoginAttempt.success.is_(False), LoginAttempt.at > (last_ok or since))).one()
    wait = 0.0
    if failures >= max_failures:
        until = last_failure + dt.timedelta(seconds=_lock_seconds(failures, max_failures))
        wait = (until - now).total_seconds()
    address_failures, last_address_failure = session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(
            LoginAttempt.ip == ip, LoginAttempt.success.is_(False),
            LoginAttempt.at >= now - ADDRESS_WINDOW)).one()
    if address_failures >= ADDRESS_FACTOR * max_failures:
        until = last_address_failure + dt.timedelta(seconds=LOCK_BASE_S)
        wait = max(wait, (until - now).total_seconds())
    return failures, max(wait, 0.0)


def authenticate(session: Session, username: str, password: str, ip: str,
                 max_failures: int = 10, published: Mapping[str, str] | None = None) -> User:
    """Return the user if the credentials are right; raise RateLimited (with `retry_after`
    seconds), ValidationError, or PermissionDenied for an account in `published` (username
    -> its published password, e.g. the demo's in production) that still has that password."""
    username = (username or "").strip()[:64]
    ip = (ip or "unknown")[:64]
    password = password if isinstance(password, str) else ""
    failures, wait = login_lockout(session, username, ip, max_failures)
    if wait > 0:
        log.info("login refused while locked: account=%r address=%s (%d s left)",
                 username, ip, math.ceil(wait))
        exc = RateLimited("Too many failed login attempts from here. Try again in "
                          f"{_duration(wait)}.")
        exc.retry_after = math.ceil(wait)
        raise exc
    user = find_user(session, username) if username else None
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password)
    ok = ok and user is not None and user.is_active
    known = (published or {}).get(username)
    refused = ok and known is not None and hmac.compare_digest(password, known)
    session.add(LoginAttempt(username=username, ip=ip, success=ok and not refused))
    session.commit()  # a failure must count even though we raise
    if not ok or refused:
        failures += 1
        if failures >= max_failures:
            log.warning("login locked: account=%r address=%s after %d failures in a row, "
                        "for %d s", username, ip, failures,
                        _lock_seconds(failures, max_failures))
    if not ok:
        raise ValidationError("Wrong username or password.")
    if refused:
        log.warning("refused login of %r from %s: it still has its published demo password",
                    username, ip)
        raise PermissionDenied(
            f"{username!r} is a demo account with a published password, so it cannot log in "
            f"in production. Rotate it on the server: python -m app set-password {username} "
            f"(or switch it off: python -m app deactivate-user {username}).")
    user.last_login_at = utcnow()
    session.commit()
    return user


def _duration(seconds: float) -> str:
    seconds = math.ceil(seconds)
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def change_password(session: Session, actor: User, old: str, new: str) -> None:
    user = _get(session, actor.id)
    if not check_password_hash(user.password_hash, old or ""):
        raise ValidationError("The current password is wrong.")
    _check_password(new)
    user.password_hash = _hash(new)
    user.auth_version += 1
    revoke_sessions(session, user.id)   # every login ends, this one too: log in again


def reset_password(session: Session, actor: Actor, user_id: int, new: str) -> None:
    require_admin(actor)
    user = _get(session, user_id)
    _check_password(new)
    user.password_hash = _hash(new)
    user.auth_version += 1
    revoke_sessions(session, user.id)
    log.info("%s reset the password of %s", actor.username, user.username)


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> UserInfo:
    require_admin(actor)
    user = _get(session, user_id)
    if actor.id == user.id and not active:
        raise ValidationError("You cannot deactivate your own account.")
    user.is_active = bool(active)
    user.auth_version += 1
    if not active:
        revoke_sessions(session, user.id)
    log.info("%s set %s active=%s", actor.username, user.username, active)
    return _info(user)


def list_users(session: Session, actor: Actor) -> list[UserInfo]:
    require_admin(actor)
    return [_info(u) for u in session.scalars(select(User).order_by(User.username))]


# ----------------------------------------------------------------------- login sessions
def _token_id(token: str) -> str:
    """The row id of a session token: its SHA-256, so the table alone logs nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User, ip: str = "", user_agent: str = "") -> str:
    """Record a new login of `user`; return the token the session cookie carries."""
    now = utcnow()
    session.execute(delete(UserSession).where(  # this user's ended sessions are pruned
        UserSession.user_id == user.id,
        or_(UserSession.revoked_at.is_not(None), UserSession.last_seen_at < now - SESSION_IDLE)))
    token = secrets.token_urlsafe(32)
    session.add(UserSession(id=_token_id(token), user_id=user.id,
                            auth_version=user.auth_version, created_at=now, last_seen_at=now,
                            ip=(ip or "")[:64], user_agent=(user_agent or "")[:256]))
    session.flush()
    return token


def end_session(session: Session, token: str | None) -> None:
    """Revoke the login session of `token` (logout); unknown tokens are ignored."""
    if isinstance(token, str) and token:
        session.execute(update(UserSession).where(
            UserSession.id == _token_id(token), UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow()))


def revoke_sessions(session: Session, user_id: int) -> int:
    """Revoke every live login session of a user; how many there were."""
    result = session.execute(update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow()))
    return result.rowcount or 0


def load_session_user(session: Session, token: str | None) -> User | None:
    """The active user of a live login session token, or None (revoked, idle too long, the
    password changed or the account deactivated since)."""
    if not isinstance(token, str) or not 16 <= len(token) <= 128:
        return None
    row = session.get(UserSession, _token_id(token))
    now = utcnow()
    if row is None or row.revoked_at is not None or now - row.last_seen_at > SESSION_IDLE:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active or user.auth_version != row.auth_version:
        return None
    if now - row.last_seen_at > SEEN_EVERY:
        _touch(session, row.id, now)
    return user


def _touch(session: Session, row_id: str, now: dt.datetime) -> None:
    """Write last_seen_at in its own short transaction: the caller's session may hold
    unfinished work, and a busy database must not fail the request."""
    try:
        with Session(bind=session.get_bind()) as own:
            own.execute(update(UserSession).where(UserSession.id == row_id)
                        .values(last_seen_at=now))
            own.commit()
    except SQLAlchemyError as exc:
        log.warning("could not record session activity: %s", exc)

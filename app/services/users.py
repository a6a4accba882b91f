"""Accounts: create, authenticate (rate-limited), change and reset passwords, (de)activate.

Passwords are hashed with scrypt (werkzeug). Failed logins are rows in `login_attempt`, so
the limit holds across every gunicorn worker.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Conflict, NotFound, PermissionDenied, RateLimited, ValidationError
from app.permissions import Actor, require_admin
from app.tables import LoginAttempt, User, utcnow

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$")
MIN_PASSWORD = 8
HASH_METHOD = "scrypt"  # werkzeug's scrypt (n=2^15, r=8, p=1); tests may lower the cost


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


def authenticate(session: Session, username: str, password: str, ip: str,
                 max_failures: int = 10, window_s: int = 60) -> User:
    """Return the user if the credentials are right; raise RateLimited/ValidationError."""
    username = (username or "").strip()[:64]
    since = utcnow() - dt.timedelta(seconds=window_s)
    failures_ip = session.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.ip == ip, LoginAttempt.success.is_(False), LoginAttempt.at >= since))
    failures_user = session.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.username == username, LoginAttempt.success.is_(False),
        LoginAttempt.at >= since))
    if failures_ip >= max_failures or failures_user >= max_failures:
        log.warning("login rate limit hit for user=%r ip=%s", username, ip)
        raise RateLimited("Too many failed login attempts. Wait a minute and try again.")
    user = find_user(session, username) if username else None
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password or "")
    ok = ok and user is not None and user.is_active
    session.add(LoginAttempt(username=username, ip=ip, success=ok))
    if not ok:
        session.commit()  # the failure must count even though we raise
        raise ValidationError("Wrong username or password.")
    user.last_login_at = utcnow()
    session.commit()
    return user


def change_password(session: Session, actor: User, old: str, new: str) -> None:
    user = _get(session, actor.id)
    if not check_password_hash(user.password_hash, old or ""):
        raise ValidationError("The current password is wrong.")
    _check_password(new)
    user.password_hash = _hash(new)
    user.auth_version += 1


def reset_password(session: Session, actor: Actor, user_id: int, new: str) -> None:
    require_admin(actor)
    user = _get(session, user_id)
    _check_password(new)
    user.password_hash = _hash(new)
    user.auth_version += 1
    log.info("%s reset the password of %s", actor.username, user.username)


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> UserInfo:
    require_admin(actor)
    user = _get(session, user_id)
    if actor.id == user.id and not active:
        raise ValidationError("You cannot deactivate your own account.")
    user.is_active = bool(active)
    user.auth_version += 1
    log.info("%s set %s active=%s", actor.username, user.username, active)
    return _info(user)


def set_admin(session: Session, actor: Actor, user_id: int, is_admin: bool) -> UserInfo:
    require_admin(actor)
    user = _get(session, user_id)
    if actor.id == user.id and not is_admin:
        raise ValidationError("You cannot remove your own admin rights.")
    user.is_admin = bool(is_admin)
    return _info(user)


def list_users(session: Session, actor: Actor) -> list[UserInfo]:
    require_admin(actor)
    return [_info(u) for u in session.scalars(select(User).order_by(User.username))]


def load_session_user(session: Session, session_id: str) -> User | None:
    """Resolve a login-session id ("<id>:<auth_version>") to an active user, or None."""
    try:
        uid, version = (int(p) for p in session_id.split(":"))
    except (ValueError, AttributeError):
        return None
    user = session.get(User, uid)
    if user is None or not user.is_active or user.auth_version != version:
        return None
    return user

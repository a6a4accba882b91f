"""Accounts: creation rules, password hashing, login rate limits, sessions ending."""
import datetime as dt
import logging

import pytest
from sqlalchemy import select

from app.errors import Conflict, PermissionDenied, RateLimited, ValidationError
from app.permissions import SYSTEM
from app.services import users
from app.tables import LoginAttempt, User, UserSession, utcnow
from tests.conftest import PASSWORD, actor


def test_create_and_authenticate(session, world):
    before = utcnow()
    user = users.authenticate(session, "viewer", PASSWORD, "10.0.0.1")
    assert user.username == "viewer" and before <= user.last_login_at <= utcnow()
    with pytest.raises(ValidationError, match="Wrong username or password"):
        users.authenticate(session, "viewer", "nope-nope", "10.0.0.1")
    with pytest.raises(ValidationError, match="Wrong username or password"):
        users.authenticate(session, "ghost", PASSWORD, "10.0.0.1")


def test_production_hash_is_scrypt(session, monkeypatch):
    monkeypatch.setattr(users, "HASH_METHOD", "scrypt")
    users.create_user(session, SYSTEM, "slowhash", PASSWORD)
    stored = session.query(User).filter_by(username="slowhash").one().password_hash
    assert stored.startswith("scrypt:") and PASSWORD not in stored


@pytest.mark.parametrize("username,password,error", [
    ("a", PASSWORD, ValidationError), ("has space", PASSWORD, ValidationError),
    ("okname", "short", ValidationError), ("admin", PASSWORD, Conflict),
])
def test_create_user_validation(session, world, username, password, error):
    with pytest.raises(error):
        users.create_user(session, SYSTEM, username, password)


def test_only_admins_manage_accounts(session, world):
    owner = actor(session, "owner")
    with pytest.raises(PermissionDenied):
        users.create_user(session, owner, "newbie", PASSWORD)
    with pytest.raises(PermissionDenied):
        users.reset_password(session, owner, world["viewer"], "another-pass")
    with pytest.raises(PermissionDenied):
        users.set_active(session, owner, world["viewer"], False)
    with pytest.raises(PermissionDenied):
        users.list_users(session, owner)


def _fail(session, username, ip, times):
    for _ in range(times):
        with pytest.raises(ValidationError):
            users.authenticate(session, username, "wrong-pass", ip)


def test_rate_limit_is_per_account_and_address(session, world):
    _fail(session, "viewer", "10.0.1.1", 10)
    # the attacker's address is locked, even with the right password ...
    with pytest.raises(RateLimited, match="Too many failed login attempts") as locked:
        users.authenticate(session, "viewer", PASSWORD, "10.0.1.1")
    assert 0 < locked.value.retry_after <= 60
    # ... but the account's owner logs in from another address, and other accounts from it
    assert users.authenticate(session, "viewer", PASSWORD, "10.0.2.1").username == "viewer"
    assert users.authenticate(session, "owner", PASSWORD, "10.0.1.1").username == "owner"
    with pytest.raises(RateLimited):
        users.authenticate(session, "viewer", PASSWORD, "10.0.1.1")


def _age_attempts(session, seconds):
    """Move every recorded login attempt `seconds` into the past."""
    for attempt in session.scalars(select(LoginAttempt)):
        attempt.at -= dt.timedelta(seconds=seconds)
    session.commit()


def test_lockout_backs_off_and_a_success_resets_it(session, world):
    _fail(session, "viewer", "10.0.3.1", 10)
    failures, wait = users.login_lockout(session, "viewer", "10.0.3.1")
    assert failures == 10 and 55 < wait <= 60
    _age_attempts(session, 61)                   # the first minute is over
    assert users.login_lockout(session, "viewer", "10.0.3.1")[1] == 0
    _fail(session, "viewer", "10.0.3.1", 1)      # one more failure: two minutes
    assert 115 < users.login_lockout(session, "viewer", "10.0.3.1")[1] <= 120
    _age_attempts(session, 121)
    _fail(session, "viewer", "10.0.3.1", 1)      # and four
    assert 235 < users.login_lockout(session, "viewer", "10.0.3.1")[1] <= 240
    _age_attempts(session, 241)
    users.authenticate(session, "viewer", PASSWORD, "10.0.3.1")
    assert users.login_lockout(session, "viewer", "10.0.3.1") == (0, 0.0)
    _fail(session, "viewer", "10.0.3.1", 9)      # counted afresh after the success
    assert users.login_lockout(session, "viewer", "10.0.3.1")[1] == 0


def test_lockout_is_logged_with_account_and_address(session, world, caplog):
    with caplog.at_level(logging.WARNING, logger="app.services.users"):
        _fail(session, "viewer", "10.0.4.1", 9)
        assert not caplog.records
        _fail(session, "viewer", "10.0.4.1", 1)
    assert any("login locked" in r.getMessage() and "'viewer'" in r.getMessage()
               and "10.0.4.1" in r.getMessage() for r in caplog.records)


def test_an_address_spraying_many_accounts_is_locked(session, world):
    for i in range(10):                          # 10 accounts x 10 guesses from one address
        _fail(session, f"guess{i}", "10.9.9.9", 10)
    with pytest.raises(RateLimited):
        users.authenticate(session, "owner", PASSWORD, "10.9.9.9")
    assert users.authenticate(session, "owner", PASSWORD, "10.9.9.8")


def test_published_demo_password_is_refused_until_rotated(session, world):
    users.create_user(session, SYSTEM, "anna", "cellloop-anna")
    published = {"anna": "cellloop-anna"}
    with pytest.raises(PermissionDenied, match="python -m app set-password anna"):
        users.authenticate(session, "anna", "cellloop-anna", "10.0.5.1", published=published)
    assert users.authenticate(session, "anna", "cellloop-anna", "10.0.5.1").username == "anna"
    users.reset_password(session, SYSTEM, users.find_user(session, "anna").id, "rotated-pass")
    assert users.authenticate(session, "anna", "rotated-pass", "10.0.5.1",
                              published=published).username == "anna"


def test_deactivated_user_cannot_log_in(session, world):
    admin = actor(session, "admin")
    users.set_active(session, admin, world["viewer"], False)
    with pytest.raises(ValidationError):
        users.authenticate(session, "viewer", PASSWORD, "10.0.0.3")
    with pytest.raises(ValidationError, match="own account"):
        users.set_active(session, admin, world["admin"], False)


def test_password_change_ends_all_sessions(session, world):
    user = actor(session, "viewer")
    here = users.start_session(session, user, "10.0.0.4")
    elsewhere = users.start_session(session, user, "10.0.0.5")
    assert users.load_session_user(session, here) is user
    with pytest.raises(ValidationError, match="current password is wrong"):
        users.change_password(session, user, "not-it-at-all", "brand-new-pass")
    assert users.load_session_user(session, elsewhere) is user
    users.change_password(session, user, PASSWORD, "brand-new-pass")
    assert users.load_session_user(session, elsewhere) is None
    assert users.load_session_user(session, here) is None
    assert users.authenticate(session, "viewer", "brand-new-pass", "10.0.0.4")
    assert users.load_session_user(session, users.start_session(session, user)) is user


def test_sessions_end_on_logout_reset_and_deactivation(session, world):
    user = actor(session, "viewer")
    first, second = (users.start_session(session, user) for _ in range(2))
    users.end_session(session, first)
    assert users.load_session_user(session, first) is None
    assert users.load_session_user(session, second) is user
    users.reset_password(session, SYSTEM, user.id, "reset-by-admin")
    assert users.load_session_user(session, second) is None
    third = users.start_session(session, user)
    users.set_active(session, SYSTEM, user.id, False)
    users.set_active(session, SYSTEM, user.id, True)
    assert users.load_session_user(session, third) is None   # reactivation revives nothing


def test_idle_sessions_end_and_activity_is_recorded(session, world):
    user = actor(session, "viewer")
    token = users.start_session(session, user, "10.0.0.6", "pytest")
    session.commit()
    row = session.scalars(select(UserSession)).one()
    assert row.id != token and token not in row.id        # only the hash is stored
    row.last_seen_at -= dt.timedelta(minutes=10)
    session.commit()
    assert users.load_session_user(session, token) is user
    session.expire_all()
    assert utcnow() - row.last_seen_at < dt.timedelta(minutes=1)
    row.last_seen_at -= users.SESSION_IDLE + dt.timedelta(minutes=1)
    session.commit()
    assert users.load_session_user(session, token) is None


def test_admin_reset_password(session, world):
    admin = actor(session, "admin")
    users.reset_password(session, admin, world["viewer"], "reset-by-admin")
    assert users.authenticate(session, "viewer", "reset-by-admin", "10.0.0.5")
    with pytest.raises(ValidationError):
        users.reset_password(session, admin, world["viewer"], "short")


def test_registration_switch(session):
    with pytest.raises(PermissionDenied, match="switched off"):
        users.register(session, "selfmade", PASSWORD, allowed=False)
    info = users.register(session, "selfmade", PASSWORD, allowed=True)
    assert not info.is_admin and info.is_active


@pytest.mark.parametrize("bad", ["", "x", "1:2:3", "abc:1", None, "1:1", "z" * 43, 5])
def test_malformed_session_ids(session, world, bad):
    assert users.load_session_user(session, bad) is None

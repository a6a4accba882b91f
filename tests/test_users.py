"""Accounts: creation rules, password hashing, login rate limits, sessions ending."""
import pytest

from app.errors import Conflict, PermissionDenied, RateLimited, ValidationError
from app.permissions import SYSTEM
from app.services import users
from app.tables import User
from tests.conftest import PASSWORD, actor


def test_create_and_authenticate(session, world):
    user = users.authenticate(session, "viewer", PASSWORD, "10.0.0.1")
    assert user.username == "viewer" and user.last_login_at is not None
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


def test_rate_limit_per_account(session, world):
    for i in range(10):
        with pytest.raises(ValidationError):
            users.authenticate(session, "viewer", "wrong-pass", f"10.0.1.{i}")
    # the right password is refused too while the account is locked
    with pytest.raises(RateLimited, match="Too many failed login attempts"):
        users.authenticate(session, "viewer", PASSWORD, "10.0.2.1")
    # other accounts are not affected
    assert users.authenticate(session, "owner", PASSWORD, "10.0.2.1").username == "owner"


def test_rate_limit_per_ip(session, world):
    for name in ("a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10"):
        with pytest.raises(ValidationError):
            users.authenticate(session, name, "wrong-pass", "10.9.9.9")
    with pytest.raises(RateLimited):
        users.authenticate(session, "owner", PASSWORD, "10.9.9.9")
    assert users.authenticate(session, "owner", PASSWORD, "10.9.9.8")


def test_deactivated_user_cannot_log_in(session, world):
    admin = actor(session, "admin")
    users.set_active(session, admin, world["viewer"], False)
    with pytest.raises(ValidationError):
        users.authenticate(session, "viewer", PASSWORD, "10.0.0.3")
    with pytest.raises(ValidationError, match="own account"):
        users.set_active(session, admin, world["admin"], False)


def test_password_change_ends_old_sessions(session, world):
    user = actor(session, "viewer")
    old_session_id = user.get_id()
    assert users.load_session_user(session, old_session_id) is user
    with pytest.raises(ValidationError, match="current password is wrong"):
        users.change_password(session, user, "not-it-at-all", "brand-new-pass")
    users.change_password(session, user, PASSWORD, "brand-new-pass")
    assert users.load_session_user(session, old_session_id) is None
    assert users.load_session_user(session, user.get_id()) is user
    assert users.authenticate(session, "viewer", "brand-new-pass", "10.0.0.4")


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


@pytest.mark.parametrize("bad", ["", "x", "1:2:3", "abc:1", None])
def test_malformed_session_ids(session, world, bad):
    assert users.load_session_user(session, bad) is None

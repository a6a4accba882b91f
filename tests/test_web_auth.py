"""Login form, cookies, CSRF, server-side sessions, the request guard, rate limits behind
proxies, health check and redirects over HTTP."""
import logging

import pytest

from app import migrate
from app.permissions import SYSTEM
from app.services import users
from tests.conftest import PASSWORD, form_token, post_login


def test_login_page_and_form_post(server, world):
    client = server.test_client()
    page = client.get("/login")
    assert page.status_code == 200 and b'name="username"' in page.data
    assert b'name="csrf_token"' in page.data
    bad = post_login(client, "viewer", "wrong-one")
    assert bad.status_code == 401 and b"Wrong username or password" in bad.data
    ok = post_login(client, "viewer")
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/projects")
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/projects").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_login_without_the_csrf_token_is_refused(server, world, db):
    client = server.test_client()
    client.get("/login")
    for token in (None, "", "forged-token"):
        data = {"username": "viewer", "password": PASSWORD}
        if token is not None:
            data["csrf_token"] = token
        refused = client.post("/login", data=data)
        assert refused.status_code == 400 and b"expired" in refused.data
        assert client.get("/projects").status_code == 302
    # a token from another browser's session is no good either
    other = server.test_client()
    stolen = form_token(other)
    assert client.post("/login", data={"username": "viewer", "password": PASSWORD,
                                       "csrf_token": stolen}).status_code == 400
    assert post_login(client, "viewer").status_code == 302


def test_secure_cookie_in_production(config, world, serve):
    prod = config.replace(env="production")
    migrate.upgrade(prod)
    client = serve(prod).test_client()
    ok = post_login(client, "viewer")
    assert ok.status_code == 302 and "Secure" in ok.headers["Set-Cookie"]


def test_anonymous_requests_are_stopped(server):
    client = server.test_client()
    page = client.get("/projects/1")
    assert page.status_code == 302 and "/login?next=" in page.headers["Location"]
    assert client.get("/").headers["Location"].startswith("/login")
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/_dash-dependencies").status_code == 401
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/vendor/bootstrap.min.css").status_code == 200
    assert client.post("/logout").headers["Location"].endswith("/login")


@pytest.mark.parametrize("target,expected", [
    ("/projects/3", "/projects/3"), ("https://evil.example/x", "/projects"),
    ("//evil.example", "/projects"), ("javascript:alert(1)", "/projects"),
])
def test_next_parameter_cannot_redirect_elsewhere(server, world, target, expected):
    client = server.test_client()
    ok = post_login(client, "viewer", query_string={"next": target})
    assert ok.headers["Location"] == expected


def _client_from(server, address):
    client = server.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_lockout_is_per_account_and_address(server, world):
    attacker = _client_from(server, "10.1.1.1")
    for _ in range(10):
        assert post_login(attacker, "owner", "x-wrong-x").status_code == 401
    locked = post_login(attacker, "owner")
    assert locked.status_code == 429 and b"Too many failed login attempts" in locked.data
    assert 0 < int(locked.headers["Retry-After"]) <= 60
    # the real owner, from their own address, still logs in
    assert post_login(_client_from(server, "10.2.2.2"), "owner").status_code == 302
    assert post_login(attacker, "owner").status_code == 429


def test_lockout_is_logged(server, world, caplog):
    attacker = _client_from(server, "10.1.1.3")
    with caplog.at_level(logging.WARNING, logger="app.services.users"):
        for _ in range(10):
            post_login(attacker, "owner", "x-wrong-x")
    assert [r for r in caplog.records if r.levelno == logging.WARNING
            and "login locked" in r.getMessage() and "'owner'" in r.getMessage()
            and "10.1.1.3" in r.getMessage()]


def test_proxy_count_takes_the_client_address_from_x_forwarded_for(config, world, db, serve):
    from sqlalchemy import select

    from app.tables import LoginAttempt
    behind = serve(config.replace(proxy_fix_count=1))
    client = behind.test_client()             # every request comes from the proxy, 127.0.0.1
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(10):
        assert post_login(client, "owner", "x-wrong-x", headers=attacker).status_code == 401
    assert post_login(client, "owner", headers=attacker).status_code == 429
    assert post_login(client, "owner",
                      headers={"X-Forwarded-For": "203.0.113.6"}).status_code == 302
    with db.session_scope() as s:
        seen = set(s.scalars(select(LoginAttempt.ip)))
    assert seen == {"203.0.113.5", "203.0.113.6"}


def test_without_a_proxy_count_x_forwarded_for_is_ignored(server, world, db):
    from sqlalchemy import select

    from app.tables import LoginAttempt
    client = server.test_client()
    post_login(client, "owner", "x-wrong-x", headers={"X-Forwarded-For": "203.0.113.7"})
    with db.session_scope() as s:
        assert set(s.scalars(select(LoginAttempt.ip))) == {"127.0.0.1"}


def _logout(client):
    return client.post("/logout", data={"csrf_token": form_token(client, "/logout")})


def test_logout_ends_the_session_on_the_server(login, server, world):
    client = login("viewer")
    copy = server.test_client()                       # someone copied the session cookie
    copy.set_cookie("session", client.get_cookie("session").value)
    assert copy.get("/_dash-layout").status_code == 200
    out = _logout(client)
    assert out.status_code == 302 and out.headers["Location"].endswith("/login")
    assert client.get("/projects").status_code == 302
    assert copy.get("/_dash-layout").status_code == 401
    assert copy.post("/_dash-update-component", json={}).status_code == 401
    assert copy.get("/projects").status_code == 302


def test_logout_needs_a_post_with_the_csrf_token(login, world):
    client = login("viewer")
    page = client.get("/logout")                      # a link or an <img> cannot log you out
    assert page.status_code == 200 and b'name="csrf_token"' in page.data
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/_dash-layout").status_code == 200
    assert _logout(client).status_code == 302
    assert client.get("/_dash-layout").status_code == 401


def test_the_navbar_logout_form_carries_the_token(login, world):
    client = login("viewer")
    layout = client.get("/_dash-layout").get_data(as_text=True)
    token = form_token(client, "/logout")
    assert token in layout and '"csrf_token"' in layout
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def test_each_login_is_its_own_session(login, world):
    first, second = login("viewer"), login("viewer")
    _logout(first)
    assert first.get("/_dash-layout").status_code == 401
    assert second.get("/_dash-layout").status_code == 200


def test_deactivated_user_loses_session(login, server, world, db):
    client = login("viewer")
    with db.session_scope() as s:
        users.set_active(s, SYSTEM, world["viewer"], False)
    assert client.post("/_dash-update-component", json={}).status_code == 401


def test_password_reset_ends_sessions(login, world, db):
    client = login("viewer")
    with db.session_scope() as s:
        users.reset_password(s, SYSTEM, world["viewer"], "reset-by-admin")
    assert client.get("/_dash-layout").status_code == 401


def test_demo_accounts_are_refused_in_production_until_rotated(config, caplog, serve):
    from app.demo import DEMO_ACCOUNTS
    prod = config.replace(env="production")
    migrate.upgrade(prod)
    server = serve(prod)
    db = server.extensions["cellloop"].db
    with db.session_scope() as s:                     # a database once loaded with the demo
        for username, password, is_admin, _role in DEMO_ACCOUNTS:
            users.create_user(s, SYSTEM, username, password, is_admin=is_admin)
    client = server.test_client()
    refused = post_login(client, "admin", "cellloop-admin")
    assert refused.status_code == 403
    assert b"python -m app set-password admin" in refused.data
    assert client.get("/_dash-layout").status_code == 401
    with db.session_scope() as s:                     # rotated, as the message says
        users.reset_password(s, SYSTEM, users.find_user(s, "admin").id, "a-new-secret-1")
    assert post_login(client, "admin", "a-new-secret-1").status_code == 302
    assert client.get("/_dash-layout").status_code == 200


def test_demo_passwords_work_outside_production(server):
    from app.demo import DEMO_ACCOUNTS
    db = server.extensions["cellloop"].db
    username, password, is_admin, _role = DEMO_ACCOUNTS[0]
    with db.session_scope() as s:
        users.create_user(s, SYSTEM, username, password, is_admin=is_admin)
    assert post_login(server.test_client(), username, password).status_code == 302


def test_registration_is_off_by_default(server):
    assert server.test_client().get("/register").status_code == 403


def test_registration_when_switched_on(config, serve):
    cfg = config.replace(allow_registration=True)
    migrate.upgrade(cfg)
    client = serve(cfg).test_client()
    form = {"username": "newuser", "password": PASSWORD, "password2": PASSWORD}
    assert client.post("/register", data=form).status_code == 400      # no CSRF token
    r = client.post("/register", data={**form, "csrf_token": form_token(client, "/register")})
    assert r.status_code == 302
    assert post_login(client, "newuser").status_code == 302
    mismatch = client.post("/register", data={"username": "other", "password": PASSWORD,
                                              "password2": PASSWORD + "x",
                                              "csrf_token": form_token(client, "/register")})
    assert mismatch.status_code == 400 and b"differ" in mismatch.data


def test_security_headers(server):
    r = server.test_client().get("/login")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"

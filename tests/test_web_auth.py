"""Login form, cookies, the request guard, health check and redirects over HTTP."""
import pytest

from app import create_app, migrate
from tests.conftest import PASSWORD


def test_login_page_and_form_post(server, world):
    client = server.test_client()
    page = client.get("/login")
    assert page.status_code == 200 and b'name="username"' in page.data
    bad = client.post("/login", data={"username": "viewer", "password": "wrong-one"})
    assert bad.status_code == 401 and b"Wrong username or password" in bad.data
    ok = client.post("/login", data={"username": "viewer", "password": PASSWORD})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/projects")
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/projects").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_secure_cookie_in_production(config, world, monkeypatch):
    prod = config.replace(env="production")
    migrate.upgrade(prod)
    client = create_app(prod).test_client()
    ok = client.post("/login", data={"username": "viewer", "password": PASSWORD})
    assert "Secure" in ok.headers["Set-Cookie"]


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


@pytest.mark.parametrize("target,expected", [
    ("/projects/3", "/projects/3"), ("https://evil.example/x", "/projects"),
    ("//evil.example", "/projects"), ("javascript:alert(1)", "/projects"),
])
def test_next_parameter_cannot_redirect_elsewhere(server, world, target, expected):
    client = server.test_client()
    ok = client.post("/login", query_string={"next": target},
                     data={"username": "viewer", "password": PASSWORD})
    assert ok.headers["Location"] == expected


def test_login_rate_limit_over_http(server, world):
    client = server.test_client()
    for _ in range(10):
        assert client.post("/login", data={"username": "owner", "password": "x-wrong-x"}
                           ).status_code == 401
    locked = client.post("/login", data={"username": "owner", "password": PASSWORD})
    assert locked.status_code == 429 and b"Too many failed login attempts" in locked.data


def test_logout_ends_the_session(login, world):
    client = login("viewer")
    assert client.get("/projects").status_code == 200
    client.post("/logout")
    assert client.get("/projects").status_code == 302


def test_deactivated_user_loses_session(login, server, world, db):
    from app.permissions import SYSTEM
    from app.services import users
    client = login("viewer")
    with db.session_scope() as s:
        users.set_active(s, SYSTEM, world["viewer"], False)
    assert client.post("/_dash-update-component", json={}).status_code == 401


def test_registration_is_off_by_default(server):
    assert server.test_client().get("/register").status_code == 403


def test_registration_when_switched_on(config):
    cfg = config.replace(allow_registration=True)
    migrate.upgrade(cfg)
    client = create_app(cfg).test_client()
    r = client.post("/register", data={"username": "newuser", "password": PASSWORD,
                                       "password2": PASSWORD})
    assert r.status_code == 302
    assert client.post("/login", data={"username": "newuser", "password": PASSWORD}
                       ).status_code == 302
    mismatch = client.post("/register", data={"username": "other", "password": PASSWORD,
                                              "password2": PASSWORD + "x"})
    assert mismatch.status_code == 400 and b"differ" in mismatch.data


def test_security_headers(server):
    r = server.test_client().get("/login")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"

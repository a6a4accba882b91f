"""Account page: API tokens are created (shown once), listed and revoked through the page's
callbacks; the token works on /api/v1 until it is revoked."""
import dash

from tests.api_v1_support import bearer
from tests.conftest import component_text as text


def test_create_list_and_revoke_a_token_on_the_account_page(as_user, world, server):
    from pages import account as page
    with as_user("annotator"):
        shown, table, name = page.create_token(1, "microscope", True, "30")
        token = next(w for w in text(shown).replace('"', " ").split() if w.startswith("cl_"))
        assert "not shown again" in text(shown) and name == ""
        assert "microscope" in text(table) and "read-write" in text(table)
        assert token not in text(table) and token[:10] in text(table)
        layout = text(page.layout())
        assert "microscope" in layout and token not in layout
        error, _table, _name = page.create_token(1, "", False, "never")
        assert "name" in text(error)
        for forged in ("soon", "0", "-3", ["30"]):      # not an expiry the page offers
            error, table, _name = page.create_token(1, "forged", False, forged)
            assert "expires after 1 to" in text(error) and table is dash.no_update
    client = server.test_client()
    assert client.get("/api/v1/me", headers=bearer(token)).json["username"] == "annotator"
    from app.services import tokens
    from app.context import get_session
    from tests.conftest import actor
    with as_user("annotator"):
        (info,) = tokens.list_tokens(get_session(), actor(get_session(), "annotator"))
    with as_user("viewer"):                      # not theirs: refused, nothing revoked
        assert "No such token" in text(page.revoke_token(1, {"type": "x", "token": info.id}))
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    with as_user("annotator"):
        assert page.revoke_token(1, {"type": "x", "token": info.id}) == "revoked"
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_a_viewer_who_may_not_create_projects_is_offered_a_read_token_only(as_user, world):
    """A viewer's read-write token would be refused every write, so the page offers such a
    user a read token only (unless the site lets them create projects, where writes act)."""
    from pages import account as page
    from app.context import get_session
    from app.services import tokens
    from tests.conftest import actor
    with as_user("viewer"):
        s = get_session()
        viewer, annotator = actor(s, "viewer"), actor(s, "annotator")
        admin, outsider = actor(s, "admin"), actor(s, "outsider")
        assert tokens.write_would_act(s, viewer, "admins") is False
        assert tokens.write_would_act(s, outsider, "admins") is False     # no project at all
        assert tokens.write_would_act(s, viewer, "everyone") is True      # may create one
        assert tokens.write_would_act(s, annotator, "admins") is True
        assert tokens.write_would_act(s, admin, "admins") is True
    assert "read only (your roles allow no changes)" in text(page.write_choice(False))
    assert "read-write" in text(page.write_choice(True))
    assert "read only" not in text(page.write_choice(True))

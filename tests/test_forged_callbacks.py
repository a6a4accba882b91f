"""Hand-made POSTs to /_dash-update-component, as any logged-in user could send them.

The UI hides controls a role may not use; these tests skip the UI and prove the server
refuses anyway, and that nothing changed in the database."""
import pytest
from sqlalchemy import select

from app.services import users
from app.tables import Membership, User
from tests.conftest import PASSWORD, ROLES
from tests.dash_calls import dash_post


def roles_in(session, project_id):
    return dict(session.execute(select(User.username, Membership.role).join(Membership)
                                .where(Membership.project_id == project_id)).all())


def forge_add_member(client, project_id, username, role):
    return dash_post(
        client, "..project-members.children...project-message.children...project-add-username.value..",
        [{"id": "project-members", "property": "children"},
         {"id": "project-message", "property": "children"},
         {"id": "project-add-username", "property": "value"}],
        [{"id": "project-add-member", "property": "n_clicks", "value": 1}],
        [{"id": "project-id", "property": "data", "value": project_id},
         {"id": "project-add-username", "property": "value", "value": username},
         {"id": "project-add-role", "property": "value", "value": role}])


def forge_create_user(client, username, is_admin):
    return dash_post(
        client, "..admin-users-table.children...admin-message.children...admin-new-password.value..",
        [{"id": "admin-users-table", "property": "children"},
         {"id": "admin-message", "property": "children"},
         {"id": "admin-new-password", "property": "value"}],
        [{"id": "admin-create-user", "property": "n_clicks", "value": 1}],
        [{"id": "admin-new-username", "property": "value", "value": username},
         {"id": "admin-new-password", "property": "value", "value": PASSWORD},
         {"id": "admin-new-is-admin", "property": "value", "value": is_admin}])


@pytest.mark.parametrize("username", ROLES + ("admin", "outsider"))
def test_forged_add_member(login, world, db, username):
    client = login(username)
    response = forge_add_member(client, world["project_id"], "outsider", "owner")
    with db.session_scope() as s:
        now = roles_in(s, world["project_id"])
    if username in ("owner", "admin"):
        assert response.status_code == 200 and now["outsider"] == "owner"
    else:
        assert "outsider" not in now
        expected = "not a member" if username == "outsider" else "this needs owner"
        assert expected in response.get_data(as_text=True)


@pytest.mark.parametrize("username", ["viewer", "annotator", "reviewer", "outsider"])
def test_forged_role_change_and_removal(login, world, db, username):
    client = login(username)
    pid, me = world["project_id"], world.get(username)
    target = {"type": "project-member-role", "user": world["viewer"]}
    dash_post(client, '{"type":"project-member-status","user":["MATCH"]}.children',
              [{"id": {"type": "project-member-status", "user": world["viewer"]},
                "property": "children"}],
              [{"id": target, "property": "value", "value": "owner"}],
              [{"id": target, "property": "id", "value": target},
               {"id": "project-id", "property": "data", "value": pid}])
    dash_post(client, "..project-members.children...project-message.children..."
              "project-remove-modal.is_open..",
              [{"id": "project-members", "property": "children"},
               {"id": "project-message", "property": "children"},
               {"id": "project-remove-modal", "property": "is_open"}],
              [{"id": "project-remove-confirm", "property": "n_clicks", "value": 1}],
              [{"id": "project-remove-target", "property": "data", "value": world["owner"]},
               {"id": "project-id", "property": "data", "value": pid}])
    with db.session_scope() as s:
        now = roles_in(s, pid)
    assert now["viewer"] == "viewer" and now["owner"] == "owner"
    assert me is None or username == "outsider" or now[username] == username


@pytest.mark.parametrize("username", ["owner", "viewer"])
def test_forged_admin_actions(login, world, db, username):
    client = login(username)
    response = forge_create_user(client, "intruder", True)
    assert "Only site admins" in response.get_data(as_text=True)
    reset = {"type": "admin-user-reset", "user": world["admin"]}
    dash_post(client, '..{"type":"admin-user-reset-status","user":["MATCH"]}.children...'
              '{"type":"admin-user-reset-pw","user":["MATCH"]}.value..',
              [{"id": {"type": "admin-user-reset-status", "user": world["admin"]},
                "property": "children"},
               {"id": {"type": "admin-user-reset-pw", "user": world["admin"]},
                "property": "value"}],
              [{"id": reset, "property": "n_clicks", "value": 1}],
              [{"id": {"type": "admin-user-reset-pw", "user": world["admin"]},
                "property": "value", "value": "taken-over-123"},
               {"id": reset, "property": "id", "value": reset}])
    with db.session_scope() as s:
        assert users.find_user(s, "intruder") is None
        assert users.authenticate(s, "admin", PASSWORD, "10.1.1.1")


def test_admin_can_create_users_through_the_callback(login, world, db):
    client = login("admin")
    response = forge_create_user(client, "newcomer", False)
    assert response.status_code == 200 and "Created newcomer" in response.get_data(as_text=True)
    with db.session_scope() as s:
        newcomer = users.find_user(s, "newcomer")
        assert (newcomer.username, newcomer.is_admin, newcomer.is_active) == ("newcomer", False, True)

"""Background callbacks act as the user named by a signed token: good tokens work, forged,
expired or outdated ones (password changed) are refused."""
import pytest

from app.background import actor_from_token, run_as, sign_actor
from app.errors import PermissionDenied
from app.services import projects, users
from tests.conftest import actor


def test_tokens_name_the_user_and_expire(server, session, world):
    secret = server.secret_key
    token = sign_actor(secret, actor(session, "annotator"))
    assert actor_from_token(session, secret, token).username == "annotator"
    with pytest.raises(PermissionDenied):
        actor_from_token(session, "another-secret-key-123456", token)
    with pytest.raises(PermissionDenied):
        actor_from_token(session, secret, token + "x")
    with pytest.raises(PermissionDenied):
        actor_from_token(session, secret, token, max_age=-1)
    user = actor(session, "annotator")
    user.auth_version += 1                       # password changed: old pages stop working
    session.flush()
    with pytest.raises(PermissionDenied, match="session has ended"):
        actor_from_token(session, secret, token)


def test_run_as_calls_services_with_the_users_rights(server, db, world):
    with db.session_scope() as s:
        viewer_token = sign_actor(server.secret_key, actor(s, "viewer"))
        owner_token = sign_actor(server.secret_key, actor(s, "owner"))
    project, error = run_as(server, viewer_token, projects.get_project, world["project_id"])
    assert error is None and project.role == "viewer"
    _, error = run_as(server, viewer_token, projects.set_annotation_mode,
                      world["project_id"], "points")
    assert "needs owner" in error
    mode, error = run_as(server, owner_token, projects.set_annotation_mode,
                         world["project_id"], "points")
    assert error is None and mode == "points"
    _, error = run_as(server, "forged", users.list_users)
    assert error == "Not signed in."

"""Every role x every project action, through the services (the server-side checks)."""
import pytest

from app.errors import NotFound, PermissionDenied
from app.permissions import ACTIONS, Role, require
from app.services import jobs, projects
from tests.conftest import ROLES, actor

# Which roles may do each action; site admins may do everything, outsiders nothing.
EXPECTED = {
    "view": {"owner", "reviewer", "annotator", "viewer"},
    "export": {"owner", "reviewer", "annotator", "viewer"},
    "annotate": {"owner", "reviewer", "annotator"},
    "import": {"owner", "reviewer", "annotator"},
    "review": {"owner", "reviewer"},
    "train": {"owner", "reviewer"},
    "manage": {"owner"},
}


def test_policy_table_covers_every_action():
    assert set(EXPECTED) == set(ACTIONS)


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("username", ROLES + ("admin", "outsider"))
def test_require_matrix(session, world, username, action):
    user = actor(session, username)
    allowed = username == "admin" or username in EXPECTED[action]
    if allowed:
        assert require(session, user, world["project_id"], action).name == "Lab"
    elif username == "outsider":
        with pytest.raises(NotFound):
            require(session, user, world["project_id"], action)
    else:
        with pytest.raises(PermissionDenied):
            require(session, user, world["project_id"], action)


@pytest.mark.parametrize("username", ROLES + ("admin", "outsider"))
def test_member_management_only_for_owners(session, world, username):
    user = actor(session, username)
    pid = world["project_id"]
    may = username in ("owner", "admin")
    calls = [
        lambda: projects.set_member(session, user, pid, "outsider", "viewer"),
        lambda: projects.set_role(session, user, pid, world["viewer"], "annotator"),
        lambda: projects.remove_member(session, user, pid, world["annotator"]),
    ]
    for call in calls:
        if may:
            call()
        else:
            with pytest.raises((PermissionDenied, NotFound)):
                call()
    session.rollback()


@pytest.mark.parametrize("username", ROLES + ("admin", "outsider"))
def test_seeing_a_project_needs_membership(session, world, username):
    user = actor(session, username)
    names = [p.name for p in projects.list_projects(session, user)]
    assert names == ([] if username == "outsider" else ["Lab"])
    if username == "outsider":
        with pytest.raises(NotFound):
            projects.get_project(session, user, world["project_id"])
        with pytest.raises(NotFound):
            projects.list_members(session, user, world["project_id"])
    else:
        role = projects.get_project(session, user, world["project_id"]).role
        assert role == ("owner" if username == "admin" else username)


def test_deactivated_member_is_refused(session, world):
    user = actor(session, "owner")
    user.is_active = False
    with pytest.raises(PermissionDenied):
        require(session, user, world["project_id"], "view")


def test_unknown_or_malformed_project_id_is_not_found(session, world):
    admin = actor(session, "admin")
    for bad in (999999, "1", None):
        with pytest.raises(NotFound):
            require(session, admin, bad, "view")


@pytest.mark.parametrize("username,kind,allowed", [
    ("viewer", "import", False), ("annotator", "import", True),
    ("annotator", "train", False), ("reviewer", "train", True), ("outsider", "import", False),
])
def test_job_submission_checks_the_kind(session, world, username, kind, allowed):
    sent = []
    user = actor(session, username)
    if allowed:
        jobs.submit_job(session, user, world["project_id"], kind, {}, sent.append)
        assert len(sent) == 1
    else:
        with pytest.raises((PermissionDenied, NotFound)):
            jobs.submit_job(session, user, world["project_id"], kind, {}, sent.append)
        assert sent == []


def test_roles_are_ordered():
    assert Role.viewer < Role.annotator < Role.reviewer < Role.owner
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("king")

"""Projects service: creation rules, listing, counts and the last-owner rule."""
import pytest

from app.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.permissions import SYSTEM
from app.services import projects
from app.tables import Image
from tests.conftest import actor


def test_creator_becomes_owner(session, world):
    viewer = actor(session, "viewer")
    p = projects.create_project(session, viewer, "Mine", "desc",
                                projects.parse_named_colours("DAPI:#0000ff, GFP:#00ff00"),
                                projects.parse_named_colours("nucleus:#FF0000"),
                                starting_model="none")
    assert p.role == "owner" and [c["name"] for c in p.channels] == ["DAPI", "GFP"]
    assert p.classes == [{"name": "nucleus", "color": "#ff0000"}]
    assert {m.username: m.role for m in projects.list_members(session, viewer, p.id)} == {
        "viewer": "owner"}


@pytest.mark.parametrize("kwargs,error", [
    ({"name": ""}, ValidationError), ({"name": "x" * 121}, ValidationError),
    ({"name": "lab"}, Conflict),
    ({"name": "ok", "channels": [{"name": "a", "color": "red"}]}, ValidationError),
    ({"name": "ok", "classes": [{"name": "a"}, {"name": "A"}]}, ValidationError),
])
def test_create_validation(session, world, kwargs, error):
    with pytest.raises(error):
        projects.create_project(session, actor(session, "owner"), **kwargs)


def test_only_admins_create_for_others(session, world):
    with pytest.raises(PermissionDenied):
        projects.create_project(session, actor(session, "owner"), "Other",
                                owner_id=world["viewer"])
    p = projects.create_project(session, actor(session, "admin"), "Other",
                                owner_id=world["viewer"], starting_model="none")
    assert projects.get_project(session, actor(session, "viewer"), p.id).role == "owner"


def test_counts_and_progress(session, world):
    pid = world["project_id"]
    for i, status in enumerate(["new", "new", "annotated", "reviewed", "excluded"]):
        session.add(Image(project_id=pid, name=f"{i}.tif", blob_key="0" * 64, sha256=str(i),
                          shape=[1, 1, 8, 8], dtype="uint8", axes="ZCYX", status=status))
    session.flush()
    p = projects.get_project(session, actor(session, "viewer"), pid)
    assert (p.n_images, p.n_annotated) == (5, 2)
    assert p.progress == pytest.approx(2 / 4)  # excluded images do not count


def test_last_owner_cannot_leave_or_be_demoted(session, world):
    owner = actor(session, "owner")
    pid = world["project_id"]
    with pytest.raises(ValidationError, match="at least one owner"):
        projects.set_role(session, owner, pid, world["owner"], "viewer")
    with pytest.raises(ValidationError, match="at least one owner"):
        projects.remove_member(session, owner, pid, world["owner"])
    projects.set_role(session, owner, pid, world["reviewer"], "owner")
    projects.remove_member(session, owner, pid, world["owner"])
    assert "owner" not in {m.username for m in projects.list_members(session, SYSTEM, pid)}


def test_member_errors(session, world):
    owner, pid = actor(session, "owner"), world["project_id"]
    with pytest.raises(NotFound):
        projects.set_member(session, owner, pid, "ghost", "viewer")
    with pytest.raises(ValidationError, match="unknown role"):
        projects.set_member(session, owner, pid, "outsider", "superuser")
    with pytest.raises(NotFound):
        projects.remove_member(session, owner, pid, world["outsider"])
    assert projects.find_project_id(session, "Lab") == pid
    assert projects.find_project_id(session, str(pid)) == pid
    with pytest.raises(NotFound):
        projects.find_project_id(session, "Nope")


def test_channel_colours_by_name_or_last_word():
    """Issue 19: 'DAPI blue' was a channel named 'DAPI blue' shown in white."""
    from app.services.projects import parse_named_colours
    assert parse_named_colours("DAPI blue, GFP:green, mCherry:#FF0000, phase") == [
        {"name": "DAPI", "color": "#0000ff"}, {"name": "GFP", "color": "#00ff00"},
        {"name": "mCherry", "color": "#FF0000"}, {"name": "phase", "color": "#ffffff"}]
    assert parse_named_colours("cell nucleus") == [{"name": "cell nucleus", "color": "#ffffff"}]

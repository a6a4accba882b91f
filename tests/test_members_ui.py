"""Members and projects (issue 19, item 15): username autocomplete, the add field cleared,
removal asks first, channels and classes editable after creation, who may create projects
(a site setting), through the services and the project page's callbacks."""
import json

import dash
import pytest

from app.config import Config, ConfigError
from app.context import get_session
from app.errors import NotFound, PermissionDenied, ValidationError
from app.permissions import SYSTEM
from app.services import drafts, projects, users
from app.tables import Image
from tests.conftest import PASSWORD, actor
from tests.conftest import component_text as text
from tests.images_data import rect


# ------------------------------------------------------------------ autocomplete
def test_member_candidates_are_non_members_matching_what_was_typed(session, world):
    users.create_user(session, SYSTEM, "Outlander", PASSWORD)
    users.create_user(session, SYSTEM, "my_outpost", PASSWORD)
    gone = users.create_user(session, SYSTEM, "outgone", PASSWORD)
    users.set_active(session, SYSTEM, gone.id, False)
    session.flush()
    owner, pid = actor(session, "owner"), world["project_id"]
    # names starting with the text first, case-insensitive; members and inactive left out
    assert projects.member_candidates(session, owner, pid, "OUT") == [
        "Outlander", "outsider", "my_outpost"]
    assert projects.member_candidates(session, owner, pid, "annot") == []   # already a member
    assert projects.member_candidates(session, owner, pid, "y_") == ["my_outpost"]  # no wildcard
    assert projects.member_candidates(session, owner, pid, "o") == []   # two letters at least
    assert projects.member_candidates(session, owner, pid, "  ") == []
    with pytest.raises(PermissionDenied):
        projects.member_candidates(session, actor(session, "reviewer"), pid, "out")
    with pytest.raises(NotFound):
        projects.member_candidates(session, actor(session, "outsider"), pid, "out")


def test_autocomplete_and_add_clear_the_field(as_user, world):
    from pages import project as page
    pid = world["project_id"]
    with as_user("owner"):
        assert [o.value for o in page.suggest_users("outs", pid)] == ["outsider"]
        assert page.suggest_users("", pid) == []
        table, message, value = page.add_member(1, pid, "Outsider ", "reviewer")
        assert "outsider is now reviewer" in text(message) and "outsider" in text(table)
        assert value is None                                  # the field is cleared
        assert page.suggest_users("outs", pid) == []          # a member now
        table, message, value = page.add_member(1, pid, "  ", "reviewer")
        assert table is dash.no_update and "Type the name" in text(message)
        table, message, value = page.add_member(1, pid, "nobody", "reviewer")
        assert value is dash.no_update and "No user called" in text(message)
    with as_user("annotator"):
        assert page.suggest_users("outs", pid) == []          # refused: no names leak


# ------------------------------------------------------------------ removal asks first
def test_remove_asks_names_the_member_and_cancel_keeps_them(as_user, world, server, monkeypatch):
    from pages import project as page
    pid, viewer = world["project_id"], world["viewer"]
    button = {"type": page.REMOVE, "user": viewer}
    with as_user("owner"):
        monkeypatch.setattr(page, "ctx", _FakeCtx(button, 1))
        is_open, body, target = page.ask_remove([None, 1], pid)
        assert is_open and target == viewer
        assert "Remove viewer (viewer) from Lab?" in text(body)
        assert page.cancel_remove(1) is False
        names = [m.username for m in projects.list_members(get_session(), actor(
            get_session(), "owner"), pid)]
        assert "viewer" in names                              # asking removed nobody
        monkeypatch.setattr(page, "ctx", _FakeCtx(button, None))
        with pytest.raises(dash.exceptions.PreventUpdate):    # a redrawn table, no click
            page.ask_remove([None, None], pid)
        table, message, is_open = page.remove_member(1, viewer, pid)
        assert "viewer was removed" in text(message) and is_open is False
        assert f'"user": {viewer}' not in text(table) and f'"user": {world["owner"]}' in text(table)
        table, message, is_open = page.remove_member(1, world["owner"], pid)
        assert table is dash.no_update and "at least one owner" in text(message)


class _FakeCtx:
    def __init__(self, triggered_id, value):
        self.triggered_id = triggered_id
        self.triggered = [{"prop_id": json.dumps(triggered_id) + ".n_clicks", "value": value}]


# ------------------------------------------------------------------ channels and classes
def test_owner_renames_channels_and_classes_after_creation(session, world, config, store,  # noqa: F811
                                                           three_images):
    owner, pid = actor(session, "owner"), world["project_id"]
    p = projects.update_channels_and_classes(
        session, owner, pid, [{"name": "DAPI", "color": "#0000ff"}],
        [{"name": "nucleus", "color": "#ff0000"}, {"name": "mitotic", "color": "#00ff00"}])
    assert p.channels == [{"name": "DAPI", "color": "#0000ff"}]
    assert [c["name"] for c in p.classes] == ["nucleus", "mitotic"]
    # the images have one channel: the number of channels stays
    with pytest.raises(ValidationError, match="keep 1"):
        projects.update_channels_and_classes(session, owner, pid,
                                             [{"name": "a"}, {"name": "b"}], None)
    # a class in use (in a draft) cannot be removed; an unused one can
    anna = actor(session, "annotator")
    drafts.record_edit(session, anna, config, store, three_images[0],
                       {"op": "add", "shape": rect(2, 2, 9, 9), "cls": 1})
    with pytest.raises(ValidationError, match="mitotic"):
        projects.update_channels_and_classes(session, owner, pid, None,
                                             [{"name": "nucleus", "color": "#ff0000"}])
    drafts.undo(session, anna, config, store, three_images[0])
    drafts.discard(session, anna, config, three_images[0])
    p = projects.update_channels_and_classes(session, owner, pid, None,
                                             [{"name": "nucleus", "color": "#ff0000"}])
    assert [c["name"] for c in p.classes] == ["nucleus"]
    with pytest.raises(ValidationError, match="colour"):
        projects.update_channels_and_classes(session, owner, pid, None,
                                             [{"name": "x", "color": "blue"}])
    with pytest.raises(PermissionDenied):
        projects.update_channels_and_classes(session, actor(session, "reviewer"), pid, None,
                                             [{"name": "y"}])


def test_channel_count_is_free_while_the_project_is_empty(session, world):
    owner, pid = actor(session, "owner"), world["project_id"]
    p = projects.update_channels_and_classes(session, owner, pid,
                                             [{"name": "BF"}, {"name": "GFP", "color": "#00ff00"}])
    assert [c["name"] for c in p.channels] == ["BF", "GFP"]
    assert session.query(Image).count() == 0


def test_labels_callback_saves_and_redraws_the_badges(as_user, world):
    from pages import project as page
    pid = world["project_id"]
    with as_user("owner"):
        status, badges = page.save_labels(1, "DAPI:#0000ff", "cell:#ff3b30, dividing:#00ff00",
                                          pid)
        assert "saved: 1 channel(s), 2 class(es)" in text(status)
        assert "dividing" in text(badges)
    with as_user("annotator"):
        status, badges = page.save_labels(1, "x:#ffffff", "y:#ffffff", pid)
        assert "this needs owner" in text(status) and badges is dash.no_update


# ------------------------------------------------------------------ who may create projects
def test_project_creators_setting(session, world, tmp_path):
    viewer, admin = actor(session, "viewer"), actor(session, "admin")
    with pytest.raises(PermissionDenied, match="Only site admins"):
        projects.create_project(session, viewer, "Nope", creators="admins")
    assert projects.create_project(session, admin, "Admins may", creators="admins",
                                   starting_model="none").role == "owner"
    assert projects.create_project(session, viewer, "Anyone may", creators="everyone",
                                   starting_model="none")
    assert projects.may_create_projects(viewer, "everyone")
    assert not projects.may_create_projects(viewer, "admins")


def test_project_creators_default_follows_registration(tmp_path):
    env = {"CELLLOOP_DATA_DIR": str(tmp_path)}
    assert Config.from_env(env, dotenv=False).project_creators == "everyone"
    assert Config.from_env({**env, "ALLOW_REGISTRATION": "1"},
                           dotenv=False).project_creators == "admins"
    assert Config.from_env({**env, "ALLOW_REGISTRATION": "1", "PROJECT_CREATORS": "Everyone"},
                           dotenv=False).project_creators == "everyone"
    with pytest.raises(ConfigError, match="PROJECT_CREATORS"):
        Config.from_env({**env, "PROJECT_CREATORS": "owners"}, dotenv=False)


def test_projects_page_hides_creation_when_only_admins_may(server, world, as_user):
    from pages import projects as page
    state = server.extensions["cellloop"]
    original = state.config
    state.config = original.replace(project_creators="admins")
    try:
        with as_user("viewer"):
            assert "projects-new-toggle" not in text(page.layout())
            message, href = page.create_project(1, "Sneaky", "", "", "")
            assert href is dash.no_update and "Only site admins" in text(message)
        with as_user("admin"):
            assert "projects-new-toggle" in text(page.layout())
    finally:
        state.config = original


def test_a_class_used_only_by_counting_points_cannot_be_removed(session, world, config,  # noqa: F811
                                                                store, three_images):
    from app.tables import Annotation
    owner, pid = actor(session, "owner"), world["project_id"]
    two = [{"name": "cell", "color": "#ff0000"}, {"name": "blast", "color": "#00ff00"}]
    projects.update_channels_and_classes(session, owner, pid, None, two)
    session.add(Annotation(image_id=three_images[0], version=1, points=[[5.0, 6.0, 1]],
                           n_cells=0, source="manual", review_state="submitted"))
    session.flush()
    with pytest.raises(ValidationError, match="blast"):
        projects.update_channels_and_classes(session, owner, pid, None, two[:1])

"""Page callbacks called as plain functions inside a request of a logged-in user."""

import dash

from app.context import get_session
from app.services import projects, users
from tests.conftest import PASSWORD
from tests.conftest import component_text as text


def test_create_project_redirects_to_it(as_user, world):
    from pages import projects as page
    with as_user("viewer"):
        message, href = page.create_project(1, "Yeast", "budding", "BF:#ffffff, GFP:#00ff00",
                                            "cell:#ff0000")
        assert message is None and href.startswith("/projects/")
        pid = int(href.rsplit("/", 1)[1])
        assert projects.get_project(get_session(), users.find_user(get_session(), "viewer"),
                                    pid).role == "owner"
        message, href = page.create_project(1, "Yeast", "", "", "")
        assert href is dash.no_update and "exists already" in text(message)


def test_add_member_callback(as_user, world):
    from pages import project as page
    pid = world["project_id"]
    with as_user("owner"):
        table, message, _value = page.add_member(1, pid, "outsider", "reviewer")
        assert "outsider is now reviewer" in text(message) and "outsider" in text(table)
        table, message, _value = page.add_member(1, pid, "nobody", "reviewer")
        assert table is dash.no_update and "No user called" in text(message)
    with as_user("annotator"):
        table, message, _value = page.add_member(1, pid, "outsider", "owner")
        assert table is dash.no_update and "this needs owner" in text(message)
        table, message, _value = page.add_member(1, "not-a-number", "outsider", "owner")
        assert "not a member" in text(message)


def test_role_and_remove_callbacks(as_user, world):
    from pages import project as page
    pid = world["project_id"]
    with as_user("owner"):
        status = page.change_role("reviewer", {"type": page.ROLE, "user": world["viewer"]}, pid)
        assert "saved: reviewer" in text(status)
        table, message, is_open = page.remove_member(1, world["viewer"], pid)  # confirmed
        assert "viewer was removed" in text(message) and is_open is False
        table, message, is_open = page.remove_member(1, world["owner"], pid)
        assert table is dash.no_update and "at least one owner" in text(message)


def test_account_password_change(as_user, world):
    from pages import account as page
    with as_user("viewer"):
        assert "differ" in text(page.change_password(1, PASSWORD, "new-password-1", "other-x"))
        assert "wrong" in text(page.change_password(1, "bad-old-pw", "new-password-1",
                                                    "new-password-1"))
        assert "Password changed" in text(page.change_password(1, PASSWORD, "new-password-1",
                                                               "new-password-1"))


def test_layouts_check_access(as_user, world):
    from pages import admin_users, project
    with as_user("outsider"):
        assert "not a member" in text(project.layout(project_id=str(world["project_id"])))
        assert "Only site admins" in text(admin_users.layout())
    with as_user("admin"):
        assert "outsider" in text(admin_users.layout())


def test_self_review_switch_is_for_owners(as_user, world, db):
    from pages import project as page
    from app.tables import Project
    pid = world["project_id"]
    with as_user("reviewer"):
        assert "needs owner" in text(page.change_self_review(True, pid))
    with as_user("owner"):
        assert "self-review allowed" in text(page.change_self_review(True, pid))
    with db.session_scope() as s:
        assert s.get(Project, pid).settings["allow_self_review"] is True


def test_the_counting_model_choice_is_for_owners_and_shown_in_points_mode(as_user, world, db):
    from pages import project as page
    from app.tables import Project
    pid = world["project_id"]
    with as_user("reviewer"):
        assert "needs owner" in text(page.change_count_input("nucleus-contrast-v1", pid))
        assert "needs owner" in text(page.change_count_target("density", pid))
    with as_user("owner"):
        assert page.counting_setting(pid, "points").style is None
        assert page.counting_setting(pid, "outlines").style == {"display": "none"}
        _status, style = page.change_mode("points", pid)
        assert style is None                         # the choice appears with points mode
        saved = text(page.change_count_input("nucleus-contrast-v1", pid))
        assert "reads the nuclear stain" in saved and "centre heat-map" in saved
        assert "must be one of" in text(page.change_count_target("blobs", pid))
        assert "a density and reads" in text(page.change_count_target("density", pid))
    with db.session_scope() as s:
        assert s.get(Project, pid).settings["counting"] == {
            "input_mapping": "nucleus-contrast-v1", "target": "density"}
        project = s.get(Project, pid)                 # a mapping stored before the choices
        project.settings = {**project.settings, "counting": {"input_mapping": "nuclei-v1"}}
    with as_user("owner"):
        choice = page.counting_setting(pid, "points").children[2]
        assert choice.value == "nuclei-v1"
        assert choice.options[-1] == {"label": "Reads the 'nuclei-v1' mapping",
                                      "value": "nuclei-v1"}

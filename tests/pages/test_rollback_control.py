"""Roll back by choosing a version from a list, not by typing its id (issue 19, item 15)."""

import dash
import pytest

from app.context import get_session
from app.services import model_versions, users
from app.tables import ModelVersion
from tests.conftest import component_text as text


@pytest.fixture
def versions(db, world):
    """Two trained versions of 'Lab' (weights not needed to activate); the newer is active."""
    with db.session_scope() as s:
        old = ModelVersion(project_id=world["project_id"], weights_blob_key="a" * 64,
                           metrics={"f1": 0.61}, training_data=[1, 2], is_active=False)
        new = ModelVersion(project_id=world["project_id"], weights_blob_key="b" * 64,
                           metrics={"f1": 0.766}, training_data=[1, 2, 3], is_active=True)
        s.add_all([old, new])
        s.flush()
        return old.id, new.id


def test_owner_rolls_back_from_a_list(as_user, world, versions):
    from pages import models as page
    old, new = versions
    pid = world["project_id"]
    with as_user("owner"):
        layout = text(page.layout(project_id=str(pid)))
        assert '"id": "models-activate-id"' in layout and "version id" not in layout
        options = page.rollback_options(model_versions.list_versions(
            get_session(), users.find_user(get_session(), "owner"), pid))
        assert [o["value"] for o in options] == [new, old]
        assert "val F1 0.766" in options[0]["label"] and "active" in options[0]["label"]
        assert options[0]["disabled"] and not options[1]["disabled"]
        assert "3 images" in options[0]["label"]

        table, message, _ = page.activate(1, None, pid)
        assert table is dash.no_update and "Choose a version" in text(message)
        table, message, options = page.activate(1, old, pid)
        assert f"Model #{old} is now active" in text(message)
        assert [o["disabled"] for o in options] == [False, True]
        assert page.refresh_rollback(1, pid) == options
    with as_user("reviewer"):
        assert '"id": "models-activate-id"' not in text(page.layout(project_id=str(pid)))
        table, message, _ = page.activate(1, new, pid)
        assert table is dash.no_update and "this needs owner" in text(message)

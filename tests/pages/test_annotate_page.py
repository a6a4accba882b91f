"""The annotation workspace's page code: layouts for each role, the mapping of plotly
relayout events to edits, the queue entry route, and the review page."""
import dash
import pytest

from tests.pages.test_callbacks import as_user, text  # noqa: F401  (fixture)

SQUARE = {"type": "path", "path": "M1,1L9,1L9,9L1,9Z"}


def test_relayout_events_become_edits(dash_app):
    from pages.annotate import edit_for_drawing
    st = {"selected": 0, "path": None}
    assert edit_for_drawing({"xaxis.range[0]": 3}, "draw", 0, 8, st) is None
    assert edit_for_drawing({"autosize": True}, "draw", 0, 8, st) is None
    assert edit_for_drawing({"shapes": [SQUARE]}, "draw", 1, 8, st) == {
        "op": "add", "shape": SQUARE, "cls": 1}
    assert edit_for_drawing({"shapes": [SQUARE]}, "brush", 0, 5, {"selected": 4}) == {
        "op": "brush", "shape": SQUARE, "width": 5, "label": 4}
    assert edit_for_drawing({"shapes": [SQUARE]}, "erase", 0, 5, st)["op"] == "erase"
    assert edit_for_drawing({"shapes": [SQUARE]}, "region", 0, 5, st)["op"] == "region"
    assert edit_for_drawing({"shapes": [SQUARE]}, "select", 0, 5, st) is None
    reshaped = edit_for_drawing({"shapes[0].path": "M0,0L5,0L5,5Z"}, "select", 0, 8,
                                {"selected": 3, "path": "M1,1L2,2Z"})
    assert reshaped == {"op": "replace", "label": 3,
                        "shape": {"type": "path", "path": "M0,0L5,0L5,5Z"}}


@pytest.mark.parametrize("username,editable", [("annotator", True), ("reviewer", True),
                                               ("viewer", False)])
def test_workspace_layout_per_role(as_user, world, image_id, username, editable):
    from pages import annotate
    with as_user(username):
        page = text(annotate.layout(str(image_id)))
    assert "annotate-graph" in page and "Keyboard shortcuts" in page
    assert ("You can look at this project" in page) is (not editable)
    assert "annotate-accept" not in page            # nothing saved yet, nothing to review


def test_workspace_layout_refuses_outsiders_and_bad_ids(as_user, world, image_id):
    from pages import annotate
    with as_user("outsider"):
        assert "Not available" in text(annotate.layout(str(image_id)))
    with as_user("annotator"):
        assert "Not available" in text(annotate.layout("nope"))


def test_annotate_entry_redirects_to_the_queue(login, world, image_id):
    client = login("annotator")
    response = client.get(f"/projects/{world['project_id']}/annotate")
    assert response.status_code == 302 and response.location.endswith(f"/annotate/{image_id}")
    outsider = login("outsider").get(f"/projects/{world['project_id']}/annotate")
    assert outsider.location.endswith("/projects")


def test_draft_overlay_route_checks_access(login, world, image_id):
    assert login("viewer").get(f"/api/images/{image_id}/draft.png").status_code == 200
    assert login("outsider").get(f"/api/images/{image_id}/draft.png").status_code == 404


def test_review_page_lists_by_state(as_user, world, image_id):
    from pages import review
    with as_user("reviewer"):
        page = text(review.layout(str(world["project_id"])))
    assert "Waiting for review (0)" in page


def test_closed_polygon_becomes_a_cell(as_user, world, image_id, db, config):
    """The browser collects the corners; the server turns a closed polygon into a cell and
    refuses corners that are too few or not numbers."""
    from pages import annotate
    info = {"id": image_id, "project": world["project_id"], "width": 80, "height": 60,
            "can_edit": True}
    square = [[10, 10], [30, 10], [30, 30], [10, 30]]
    st = {"rev": 0, "selected": 0, "polygon": square}
    with as_user("annotator"):
        st, message = annotate.polygon_closed({"corners": square, "t": 1}, 0, st, info)
        assert message is None and st["polygon"] is None and st["n_cells"] == 1
        st, message = annotate.close_polygon(1, 0, {**st, "polygon": [[1, 1], [5, 5]]}, info)
        assert "three corners" in text(message)
        for forged in ({"corners": [["a", 1], [2, 2], [3, 3]]}, {"corners": "M0,0"}, None):
            new, message = annotate.polygon_closed(forged, 0, st, info)
            assert new is dash.no_update and "not valid" in text(message)
        with pytest.raises(dash.exceptions.PreventUpdate):   # corners never go to the server
            annotate.clicked({"x": 20, "y": 20}, "polygon", 0, st, info)


@pytest.mark.parametrize("username", ["owner", "reviewer", "viewer"])
def test_learning_and_jobs_pages_render_per_role(as_user, world, image_id, username):
    from pages import jobs, learning
    with as_user(username):
        page = text(learning.layout(str(world["project_id"])))
        assert "Selection strategy" in page and "a.tif" in page        # queue lists the image
        assert "Jobs of project" in text(jobs.layout(str(world["project_id"])))
    with as_user("outsider"):
        assert "Not available" in text(learning.layout(str(world["project_id"])))
        assert "Not available" in text(jobs.layout(str(world["project_id"])))


def test_learning_settings_callback_refuses_non_owners(as_user, world, image_id):
    from pages import learning
    with as_user("reviewer"):
        message = text(learning.save_settings(1, world["project_id"], "bald", 8, 3, 5, 10))
    assert "needs owner" in message
    with as_user("owner"):
        message = text(learning.save_settings(1, world["project_id"], "bald", 8, 3, 5, 10))
    assert "Saved: BALD" in message

"""The annotation workspace's page code: layouts for each role, the mapping of plotly
relayout events to edits, the queue entry route, and the review page."""
import dash
import pytest

from tests.conftest import component_text as text

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
    assert response.status_code == 302
    assert response.location.endswith(f"/annotate/{image_id}?from=queue")
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
        message = text(learning.save_settings(1, world["project_id"], "bald", 8, 3, 5, 10,
                                              "region", 128))
    assert "needs owner" in message
    with as_user("owner"):
        message = text(learning.save_settings(1, world["project_id"], "bald", 8, 3, 5, 10,
                                              "region", 128))
        assert "Saved: BALD, the queue serves regions of 128 px" in message
        message = text(learning.save_settings(1, world["project_id"], "bald", 8, 3, 5, 10,
                                              "tiles", 128))
        assert "unit must be one of image, region" in message


def test_learning_simulation_callback_checks_roles_and_sends_unit_start_cost(as_user, world,
                                                                           image_id, monkeypatch):
    from app.services import simulation
    from pages import learning
    sent = {}

    def submit(session, actor, project_id, kind, params, enqueue):
        sent.update(params)
        raise simulation.ValidationError("stop here")

    monkeypatch.setattr(simulation.jobs, "submit_job", submit)
    args = (1, world["project_id"], ["random", "power"], 2, 2, 1, 1, 0.25)
    with as_user("viewer"):
        assert "needs" in text(learning.start_simulation(*args, "region", "builtin",
                                                         "corrections"))
    assert sent == {}
    with as_user("owner"):
        assert "stop here" in text(learning.start_simulation(*args, "region", "builtin",
                                                             "corrections"))
        assert "Cost must be one of" in text(learning.start_simulation(*args, "image",
                                                                      "scratch", "money"))
    assert sent["unit"] == "region" and sent["start"] == "builtin"
    assert sent["cost"] == "corrections" and sent["strategies"] == ["random", "power"]


# ------------------------------------------------------------------ issue 19
def _find(component, component_id):
    """The component with `component_id` in a layout tree, or None."""
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and hasattr(child, "to_plotly_json"):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


def _draw_and_save(db, config, image_id, who="annotator"):
    from app.services import annotations, drafts
    from storage.blobstore import LocalBlobStore
    from tests.conftest import actor
    store = LocalBlobStore(config.blob_dir)
    with db.session_scope() as s:
        drafts.record_edit(s, actor(s, who), config, store, image_id,
                           {"op": "add", "shape": SQUARE})
        annotations.save(s, actor(s, who), config, store, image_id)


def test_class_changes_only_reclassify_on_request(dash_app):
    """Item 4: nothing re-classifies the selected cell when the class picker changes; the
    RECLASS request (Set class button, Shift+digit) does."""
    fed = [key for key, spec in dash_app.callback_map.items()
           if any(i["id"] == "annotate-class" for i in spec["inputs"])]
    assert fed and not [key for key in fed if "annotate-state" in key], fed


def test_reclassify_sets_the_selected_cells_class(as_user, world, image_id, db, config):
    from pages import annotate
    info = {"id": image_id, "project": world["project_id"], "width": 80, "height": 60,
            "can_edit": True, "classes": ["cell"]}
    with as_user("annotator"):
        st, _ = annotate.drawn({"shapes": [SQUARE]}, "draw", 0, 8, {"selected": 0}, info)
        assert st["selected"] == 1 and st["selected_cls"] == 0
        _, message = annotate.reclassify({"cls": 0, "t": 1}, {**st, "selected": 0}, info)
        assert "Select a cell first" in text(message)
        _, message = annotate.reclassify({"cls": 3, "t": 1}, st, info)
        assert "Unknown cell class" in text(message)        # the server checks the class
        new, message = annotate.reclassify({"cls": 0, "t": 2}, st, info)
        assert message is None and new["selected"] == 1


def test_header_and_counts_follow_a_save(as_user, world, image_id, db, config):
    """Item 9: after Save the header shows the version and status without a reload, and a
    page opened on a saved annotation (with or without a draft) shows the cell count."""
    from pages import _annotate_flow, annotate
    info = {"id": image_id, "project": world["project_id"], "width": 80, "height": 60,
            "can_edit": True, "classes": ["cell"]}
    with as_user("annotator"):
        st, _ = annotate.drawn({"shapes": [SQUARE]}, "draw", 0, 8, {"selected": 0}, info)
        new, message, status, version = _annotate_flow.on_save(1, st, info)
    assert "Saved version 1" in text(message) and status == "annotated"
    assert version.startswith("version 1 by annotator") and new["can_undo"]
    assert new["rev"] == st["rev"]           # the overlay looks the same: not loaded again
    for who in ("annotator", "viewer"):
        with as_user(who):
            page = annotate.layout(str(image_id))
        assert _find(page, "annotate-state").data["n_cells"] == 1, who
    with as_user("annotator"):
        first = _find(annotate.layout(str(image_id)), "annotate-state").data
    assert first["can_undo"]                                  # item 10: history kept
    with as_user("annotator"):                                # "no cells" changes the overlay
        emptied, message, _status, _version = _annotate_flow.on_empty(1, new, info)
    assert "Saved version 2 (0 cells)" in text(message)
    assert emptied["rev"] == "v2" and emptied["n_cells"] == 0 and emptied["can_undo"]


def test_viewer_gets_no_edit_affordance(as_user, world, image_id, db, config):
    """Item 11: every edit control is disabled for a viewer, and the server never gives a
    viewer's figure a drawing drag mode."""
    from pages import annotate, viewer
    _draw_and_save(db, config, image_id)
    with as_user("viewer"):
        page = annotate.layout(str(image_id))
        shown = viewer.layout(str(image_id))
    for control in ("annotate-exclude", "annotate-note", "annotate-revert", "annotate-set-class",
                    "annotate-suggest", "annotate-undo", "annotate-clear", "annotate-whole"):
        assert _find(page, control).disabled, control
    assert all(o["disabled"] for o in _find(page, "annotate-class").options)
    tools = {o["value"]: o["disabled"] for o in _find(page, "annotate-tool").options}
    assert tools.pop("select") is False and tools.pop("zoom") is False and all(tools.values())
    assert _find(shown, "viewer-exclude").disabled and _find(shown, "viewer-note").disabled
    info = {"id": image_id, "can_edit": False, "colors": ["#ff0000"]}
    for tool in ("draw", "ellipse", "brush", "erase", "polygon"):
        patch = annotate.choose_tool(tool, 8, 0, info).to_plotly_json()
        assert patch["operations"][0]["params"]["value"] == "pan"
    with as_user("annotator"):
        assert not _find(viewer.layout(str(image_id)), "viewer-exclude").disabled


def test_counting_projects_show_only_counting_tools_and_help_names_every_tool(
        as_user, world, image_id, db):
    """Items 10 and 14: a points project offers Select, Point, Region and Zoom only; the
    keyboard help lists every tool's letter, L (polygon) included."""
    from app.services import projects
    from pages import _annotate_view as view
    from pages import annotate
    from tests.conftest import actor
    with as_user("annotator"):
        tools = [o["value"] for o in _find(annotate.layout(str(image_id)), "annotate-tool").options]
    assert "polygon" in tools and "ellipse" in tools
    assert view.shortcuts(False)[0][0].split() == [key for _v, _l, key, _m in view.TOOLS]
    assert "L" in view.shortcuts(False)[0][0].split()
    with db.session_scope() as s:
        projects.set_annotation_mode(s, actor(s, "owner"), world["project_id"], "points")
    with as_user("annotator"):
        page = annotate.layout(str(image_id))
    tools = [o["value"] for o in _find(page, "annotate-tool").options]
    assert tools == ["select", "region", "point", "zoom"]
    assert view.shortcuts(True)[0][0] == "S G P Z"


def test_ellipse_is_the_box_dragged_corner_to_corner(dash_app):
    """Item 10: the ellipse tool drags a box like the rectangle; the server fills the
    ellipse inscribed in it."""
    from pages import _annotate_view as view
    from pages.annotate import edit_for_drawing
    assert view.DRAGMODE["ellipse"] == view.DRAGMODE["rect"] == "drawrect"
    box = {"type": "rect", "x0": 10, "y0": 5, "x1": 30, "y1": 25}
    edit = edit_for_drawing({"shapes": [box]}, "ellipse", 0, 8, {})
    assert edit == {"op": "add", "cls": 0, "shape": {**box, "type": "circle"}}
    assert edit_for_drawing({"shapes": [box]}, "rect", 0, 8, {})["shape"]["type"] == "rect"


def test_a_counting_projects_learning_settings_hide_the_queue_unit():
    from app.services.project_settings import LoopSettings
    from pages import learning

    def unit_row_style(card):
        rows = card.children.children
        (row,) = [r for r in rows if "learning-unit" in str(r)]
        return row.style
    assert unit_row_style(learning.settings_card(LoopSettings(), True, counting=True)) == {
        "display": "none"}
    assert unit_row_style(learning.settings_card(LoopSettings(), True)) is None


def test_the_pages_lease_timer_always_renews_the_lease(as_user, world, image_id, db, config):
    """Edits and opens keep a fresh lease without writing it, so the page's timer must push
    it out on every tick, or a short LEASE_MINUTES could lapse while the page is open."""
    import datetime as dt

    from app.tables import Image, utcnow
    from pages import _annotate_flow, annotate
    with as_user("annotator"):
        annotate.layout(str(image_id))                         # opening takes the lease
    length = dt.timedelta(minutes=config.lease_minutes)
    fresh = utcnow() + length * 0.6                            # over half left
    with db.session_scope() as s:
        s.get(Image, image_id).lease_expires_at = fresh
    info = {"id": image_id, "project": world["project_id"], "can_edit": True}
    with as_user("annotator"):
        shown, message = _annotate_flow.keep_lease(1, info)
    import dash
    assert "leased to you until" in shown and message is dash.no_update
    with db.session_scope() as s:
        assert s.get(Image, image_id).lease_expires_at > utcnow() + length * 0.9


def test_the_save_message_says_points_in_a_counting_project():
    """"Saved version 1 (0 cells)" after six clicks read as "my clicks were lost"."""
    from app.wording import cells_and_points as what_is_saved
    assert what_is_saved(0, 6) == "6 points"
    assert what_is_saved(1, 0) == "1 cell"
    assert what_is_saved(26, 0) == "26 cells"
    assert what_is_saved(3, 1) == "3 cells, 1 point"
    assert what_is_saved(0, 0) == "0 cells"


def test_opened_from_the_review_list_next_goes_to_the_next_review(as_user, world, image_id,
                                                                    db, config, store):
    """Review links open /annotate/<id>?from=review; there Next is the next image waiting
    for review (none: back to the Review page), never the annotation queue's next image."""
    from app.services import annotations, drafts
    from pages import _annotate_flow, annotate, review
    from tests.conftest import actor
    from tests.images_data import rect
    from app.services import leases
    from app.tables import Image
    with db.session_scope() as s:
        anna = actor(s, "annotator")
        drafts.record_edit(s, anna, config, store, image_id, {"op": "add", "shape": rect(2, 2, 9, 9)})
        annotations.save(s, anna, config, store, image_id)
        leases.release(s, anna, image_id)
    with as_user("reviewer"):
        listed = str(review.layout(str(world["project_id"])))
        assert f"/annotate/{image_id}?from=review" in listed
        page = annotate.layout(str(image_id), **{"from": "review"})
    info = next(c.data for c in page._traverse() if getattr(c, "id", None) == "annotate-info")
    assert info["reviewing"] is True and info["can_edit"] is True
    with db.session_scope() as s:                       # opening it leased it to the reviewer
        assert s.get(Image, image_id).assigned_to_id == world["reviewer"]
    with as_user("reviewer"):
        where, message = _annotate_flow._go_next(info, skip=True)
    assert where == f"/projects/{world['project_id']}/review" and message is None
    with db.session_scope() as s:                       # ... and moving on gives it back
        assert s.get(Image, image_id).assigned_to_id is None


def test_the_viewer_lists_every_saved_version_with_its_review(as_user, world, image_id, db,
                                                              config):
    """A new user's walk: once a reviewer saved over an accepted version, nothing on screen
    said who had saved, accepted or sent back what; the viewer now lists the history."""
    from app.services import annotations
    from pages import viewer
    from tests.conftest import actor
    with as_user("viewer"):
        assert "No saved version yet" in text(viewer.layout(str(image_id)))
    _draw_and_save(db, config, image_id)
    with db.session_scope() as s:
        annotations.review(s, actor(s, "reviewer"), image_id, accept=False,
                           comment="the top cell is missing")
    with as_user("viewer"):
        table = _find(viewer.layout(str(image_id)), "viewer-history")
    shown = text(table)
    assert "History (1 saved version)" in shown and "v1" in shown
    assert "sent back" in shown and "the top cell is missing" in shown
    assert "reviewer" in shown and "annotator" in shown
    from app.services import drafts
    from storage.blobstore import LocalBlobStore
    from tests.images_data import rect
    for box in ((20, 20, 30, 30), (40, 40, 50, 50)):   # v2 (v1 was sent back), then v3
        with db.session_scope() as s:
            anna = actor(s, "annotator")
            drafts.record_edit(s, anna, config, LocalBlobStore(config.blob_dir), image_id,
                               {"op": "add", "shape": rect(*box)})
            annotations.save(s, anna, config, LocalBlobStore(config.blob_dir), image_id)
    with as_user("viewer"):
        rows = _find(viewer.layout(str(image_id)), "viewer-history").children[1].children[1]
    states = [r.children[5].children for r in rows.children]
    assert states == ["waiting for review", "not reviewed", "sent back"]   # v3, v2, v1

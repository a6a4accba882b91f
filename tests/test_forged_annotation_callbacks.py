"""Hand-made Dash callback POSTs against the annotation workspace: a viewer's forged edit or
save changes nothing; the same request from an annotator works (so the forgery is real)."""
import pytest
from sqlalchemy import func, select

from app.tables import Annotation, Draft
from tests.dash_calls import dash_post


def callback_key(dash_app, input_id: str, prop: str) -> str:
    for key, spec in dash_app.callback_map.items():
        if any(i["id"] == input_id and i["property"] == prop for i in spec["inputs"]):
            return key
    raise AssertionError(f"no callback for {input_id}.{prop}")


def outputs_of(key: str) -> list[dict]:
    outs = []
    for part in key.strip(".").split("..."):
        ident, prop = part.rsplit(".", 1)
        outs.append({"id": ident, "property": prop})
    return outs


def forge(client, dash_app, input_id, prop, value, state):
    key = callback_key(dash_app, input_id, prop)
    return dash_post(client, key, outputs_of(key),
                     [{"id": input_id, "property": prop, "value": value}], state)


INFO = {"id": "annotate-info", "property": "data"}
SQUARE = {"type": "path", "path": "M10,10L30,10L30,30L10,30Z"}


def drawn_state(image_id, project_id):
    return [{"id": "annotate-tool", "property": "value", "value": "draw"},
            {"id": "annotate-class", "property": "value", "value": 0},
            {"id": "annotate-brush", "property": "value", "value": 8},
            {"id": "annotate-state", "property": "data", "value": {"rev": 0}},
            {**INFO, "value": {"id": image_id, "project": project_id, "can_edit": True}}]


def counts(db):
    with db.session_scope() as s:
        return (s.scalar(select(func.count(Annotation.id))),
                s.scalar(select(func.count(Draft.id))))


@pytest.mark.parametrize("username,allowed", [("viewer", False), ("outsider", False),
                                              ("annotator", True)])
def test_forged_draw_and_save(login, world, db, dash_app, image_id, username, allowed):
    client = login(username)
    drew = forge(client, dash_app, "annotate-shape-event", "data", {"shapes": [SQUARE]},
                 drawn_state(image_id, world["project_id"]))
    saved = forge(client, dash_app, "annotate-save", "n_clicks", 1,
                  [{"id": "annotate-state", "property": "data", "value": {}},
                   {**INFO, "value": {"id": image_id, "project": world["project_id"]}}])
    assert drew.status_code == 200 and saved.status_code == 200
    n_annotations, _ = counts(db)
    if allowed:
        assert n_annotations == 1 and "Saved version 1" in saved.get_data(as_text=True)
    else:
        assert counts(db) == (0, 0)
        assert "Saved" not in saved.get_data(as_text=True)


def test_forged_review_by_annotator_is_refused(login, world, db, dash_app, image_id):
    client = login("annotator")
    forge(client, dash_app, "annotate-shape-event", "data", {"shapes": [SQUARE]},
          drawn_state(image_id, world["project_id"]))
    forge(client, dash_app, "annotate-save", "n_clicks", 1,
          [{"id": "annotate-state", "property": "data", "value": {}},
           {**INFO, "value": {"id": image_id, "project": world["project_id"]}}])
    forge(client, dash_app, "annotate-accept", "n_clicks", 1,
          [{"id": "annotate-comment", "property": "value", "value": ""},
           {**INFO, "value": {"id": image_id}}])
    with db.session_scope() as s:
        assert s.scalar(select(Annotation.review_state)) == "submitted"


@pytest.mark.parametrize("username,allowed", [("viewer", False), ("outsider", False),
                                              ("annotator", True)])
def test_forged_closed_polygon(login, world, db, dash_app, image_id, username, allowed):
    """The corners a closed polygon hands to the server are an edit like any other: only a
    user who may annotate gets a draft from them."""
    client = login(username)
    corners = [[10, 10], [30, 10], [30, 30], [10, 30]]
    response = forge(client, dash_app, "annotate-polygon-done", "data",
                     {"corners": corners, "t": 1},
                     [{"id": "annotate-class", "property": "value", "value": 0},
                      {"id": "annotate-state", "property": "data", "value": {"rev": 0}},
                      {**INFO, "value": {"id": image_id, "project": world["project_id"],
                                         "can_edit": True}}])
    assert response.status_code == 200
    assert counts(db) == ((0, 1) if allowed else (0, 0))
    assert ('"n_cells":1' in response.get_data(as_text=True)) == allowed


@pytest.mark.parametrize("username,allowed", [("viewer", False), ("outsider", False),
                                              ("annotator", True)])
def test_forged_cell_review(login, world, db, dash_app, config, store, image_id, monkeypatch,
                            username, allowed):
    """Issue 21 item 1: "Accept confident cells" and "Keep cell" on the annotator's draft of a
    suggestion with per-cell uncertainty; only the annotator's own request records them."""
    from app.services import drafts
    from tests.conftest import actor
    from tests.test_cell_review import suggestion_labels, uncertainty
    from app.services import prediction
    monkeypatch.setattr(prediction, "suggest", lambda *a, **k: prediction.Prediction(
        image_id, 1, 3, suggestion_labels(), uncertainty()))
    with db.session_scope() as s:
        drafts.use_suggestion(s, actor(s, "annotator"), config, store, image_id)
    client = login(username)
    info = {**INFO, "value": {"id": image_id, "project": world["project_id"], "can_edit": True,
                              "width": 80, "height": 60}}
    accepted = forge(client, dash_app, "annotate-keep-confident", "n_clicks", 1, [info])
    kept = forge(client, dash_app, "annotate-keep-cell", "n_clicks", 1,
                 [{"id": "annotate-state", "property": "data", "value": {"selected": 3}}, info])
    walked = forge(client, dash_app, "annotate-next-uncertain", "n_clicks", 1,
                   [{"id": "annotate-state", "property": "data", "value": {"selected": 0}},
                    info])
    assert accepted.status_code == kept.status_code == walked.status_code == 200
    with db.session_scope() as s:
        edits = s.scalar(select(Draft.edits).where(
            Draft.user_id == world["annotator"], Draft.image_id == image_id))
    checks = [e["labels"] for e in edits if e.get("op") == "check"]
    if allowed:
        assert checks == [[1], [3]]
        assert '"selected":2' in walked.get_data(as_text=True).replace(" ", "")
    else:
        assert checks == []
        assert "Accepted" not in accepted.get_data(as_text=True)
        assert '"selected":' not in walked.get_data(as_text=True).replace(" ", "")


def test_scoring_a_suggestion_in_the_background_is_the_annotators_own(server, db, world,
                                                                       login, image_id):
    """The background scoring (pages._annotate_review.score_suggestion) runs as the user
    whose session and signed page token agree, and needs the annotate role."""
    from app.background import run_as, sign_actor
    from app.services import cell_review
    from tests.conftest import actor
    from tests.test_background import cookies_of
    app_state = server.extensions["cellloop"]
    viewer, annotator = login("viewer"), login("annotator")
    with db.session_scope() as s:
        viewer_token = sign_actor(server.secret_key, actor(s, "viewer"))
        annotator_token = sign_actor(server.secret_key, actor(s, "annotator"))
    args = (cell_review.score_suggestion, app_state.config, app_state.store, image_id)
    _, error = run_as(server, annotator_token, cookies_of(server, viewer), *args)
    assert error == "This page belongs to another login; reload it."
    _, error = run_as(server, viewer_token, cookies_of(server, viewer), *args)
    assert error and "annotat" in error.lower()
    result, error = run_as(server, annotator_token, cookies_of(server, annotator), *args)
    assert error is None and result is None          # nothing to score: no suggestion


def test_the_save_message_counts_unchecked_uncertain_cells(login, world, db, dash_app, config,
                                                           store, image_id, monkeypatch):
    from app.services import drafts, prediction
    from tests.conftest import actor
    from tests.test_cell_review import suggestion_labels, uncertainty
    monkeypatch.setattr(prediction, "suggest", lambda *a, **k: prediction.Prediction(
        image_id, 1, 3, suggestion_labels(), uncertainty()))
    with db.session_scope() as s:
        drafts.use_suggestion(s, actor(s, "annotator"), config, store, image_id)
    saved = forge(login("annotator"), dash_app, "annotate-save", "n_clicks", 1,
                  [{"id": "annotate-state", "property": "data", "value": {}},
                   {**INFO, "value": {"id": image_id, "project": world["project_id"]}}])
    text = saved.get_data(as_text=True)
    assert "Saved version 1 (3 cells)." in text and "2 uncertain suggested cells were not " \
        "checked" in text


def test_a_queued_drawing_keeps_the_tool_it_was_drawn_with(login, world, db, config, store,
                                                           dash_app, image_id):
    """The browser's edit queue may send a shape seconds after it was drawn; the tool of
    that moment travels with it (`_ctx`), not the page's tool when it is sent (issue 26)."""
    from app.services import drafts
    from tests.conftest import actor
    client = login("annotator")
    answer = forge(client, dash_app, "annotate-shape-event", "data",
                   {"shapes": [SQUARE], "seq": 1,
                    "_ctx": {"tool": "region", "cls": 0, "brush": 8, "selected": 0}},
                   drawn_state(image_id, world["project_id"]))      # the page now says draw
    assert answer.status_code == 200
    with db.session_scope() as s:
        assert drafts.counts(s, actor(s, "annotator"), config, store, image_id) == (0, 0)
    forge(client, dash_app, "annotate-shape-event", "data",
          {"shapes": [SQUARE], "seq": 2, "_ctx": {"tool": "draw", "cls": 0, "brush": 8}},
          [{**st, "value": "region"} if st["id"] == "annotate-tool" else st
           for st in drawn_state(image_id, world["project_id"])])
    with db.session_scope() as s:
        assert drafts.counts(s, actor(s, "annotator"), config, store, image_id) == (1, 0)

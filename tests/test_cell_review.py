"""Per-cell uncertainty of a suggestion in the services: cached with the prediction (the
suggestion on opening never loads the model), carried into the draft, coloured in the
overlay, walked most uncertain first, and accepted in one undoable edit; drafts without
scores stay plain. The model is faked here (tests/models/test_cell_uncertainty.py tests
the real scores)."""
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from app.errors import NotFound, PermissionDenied, ValidationError
from app.services import cell_review, drafts, prediction
from app.tables import Image, ModelVersion
from tests.conftest import actor

# three suggested cells: 1 confident, 2 and 3 uncertain (3 the most)
SCORES = {1: 0.05, 2: 0.5, 3: 0.8}


def suggestion_labels():
    labels = np.zeros((60, 80), np.int32)
    labels[5:15, 5:15], labels[30:40, 30:40], labels[40:50, 60:70] = 1, 2, 3
    return labels


def uncertainty(scores=SCORES):
    return prediction.cell_uncertainty(suggestion_labels(), scores)


@pytest.fixture
def fake_suggest(monkeypatch):
    calls = []

    def suggest(session, actor, store, config, image_id, model_version_id=None,
                score_cells=True):
        calls.append(score_cells)
        return prediction.Prediction(image_id, 1, 3, suggestion_labels(), uncertainty())
    monkeypatch.setattr(prediction, "suggest", suggest)
    return calls


def class_rgb(session, world):
    from app.tables import Project
    colour = session.get(Project, world["project_id"]).classes[0]["color"].lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))


def rgb_at(png: bytes, x: int, y: int):
    return PILImage.open(io.BytesIO(png)).convert("RGBA").getpixel((x, y))


def test_review_walks_uncertain_cells_and_accepts_confident_ones(
        session, config, store, world, image_id, fake_suggest):
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)
    s = cell_review.summary(session, anna, config, store, image_id)
    assert (s.uncertain, s.confident, s.checked) == (2, 1, 0)
    # most uncertain first, then the next, wrapping round; each framed by its box
    first = cell_review.next_uncertain(session, anna, config, store, image_id)
    assert (first.label, first.box, first.left) == (3, (60.0, 40.0, 70.0, 50.0), 2)
    assert first.path.startswith("M")
    assert cell_review.next_uncertain(session, anna, config, store, image_id, 3).label == 2
    assert cell_review.next_uncertain(session, anna, config, store, image_id, 2).label == 3
    # the overlay: uncertain cells vermillion, confident blue (outline pixels)
    from app.services.display import render_draft
    png = render_draft(session, anna, config, store, image_id, 0, 80).data
    assert rgb_at(png, 60, 45)[:3] == (0xD5, 0x5E, 0x00)
    assert rgb_at(png, 62, 40)[:3] == (255, 255, 255)       # uncertain outlines are dashed
    assert rgb_at(png, 5, 10)[:3] == (0x56, 0xB4, 0xE9)
    assert rgb_at(png, 7, 5)[:3] == (0x56, 0xB4, 0xE9)       # confident ones are not
    # editing a cell checks it: the walk skips it
    drafts.record_edit(session, anna, config, store, image_id,
                       {"op": "class", "label": 3, "cls": 0})
    assert cell_review.next_uncertain(session, anna, config, store, image_id, 0).label == 2
    # keep the last uncertain one as it is; then nothing is left to check
    cell_review.keep_cell(session, anna, config, store, image_id, 2)
    with pytest.raises(ValidationError, match="No uncertain cells left"):
        cell_review.next_uncertain(session, anna, config, store, image_id)
    # accept the confident ones in one edit: the overlay draws them in the class colour
    result, n = cell_review.accept_confident(session, anna, config, store, image_id)
    assert n == 1 and result.n_cells == 3 and result.can_undo
    s = cell_review.summary(session, anna, config, store, image_id)
    assert (s.uncertain, s.confident, s.checked) == (0, 0, 3)
    png = render_draft(session, anna, config, store, image_id, 0, 80).data
    assert rgb_at(png, 5, 10)[:3] == class_rgb(session, world)     # drawn like the user's
    with pytest.raises(ValidationError, match="No confident cells"):
        cell_review.accept_confident(session, anna, config, store, image_id)
    # Undo takes the acceptance back, and a save keeps every cell on screen
    drafts.undo(session, anna, config, store, image_id)
    assert cell_review.summary(session, anna, config, store, image_id).confident == 1
    from app.services import annotations
    assert annotations.save(session, anna, config, store, image_id).n_cells == 3


def test_a_deleted_suggested_cell_leaves_the_figures_adding_up_to_the_cells_on_screen(
        session, config, store, world, image_id, fake_suggest):
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)
    cell_review.keep_cell(session, anna, config, store, image_id, 2)
    result = drafts.record_edit(session, anna, config, store, image_id,
                                {"op": "delete", "label": 3})
    s = cell_review.summary(session, anna, config, store, image_id)
    assert result.n_cells == 2
    assert (s.uncertain, s.confident, s.checked) == (0, 1, 1)
    assert s.uncertain + s.confident + s.checked == result.n_cells


def test_after_clear_all_there_is_no_review_box(session, config, store, world, image_id,
                                               fake_suggest):
    """Clear all removes every suggested cell: nothing is left to check, so the workspace's
    review box (hidden when the summary is None) goes, instead of showing zeros."""
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)
    assert cell_review.summary(session, anna, config, store, image_id) is not None
    drafts.record_edit(session, anna, config, store, image_id, {"op": "clear"})
    assert cell_review.summary(session, anna, config, store, image_id) is None


def test_the_review_is_the_annotators_own(session, config, store, world, image_id,
                                          fake_suggest):
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)
    viewer = actor(session, "viewer")
    assert cell_review.summary(session, viewer, config, store, image_id) is None
    for verb in (cell_review.accept_confident,
                 lambda *a: cell_review.keep_cell(*a, 2)):
        with pytest.raises(PermissionDenied):
            verb(session, viewer, config, store, image_id)
    with pytest.raises(NotFound):
        cell_review.summary(session, actor(session, "outsider"), config, store, image_id)


def test_no_scores_means_plain_outlines(session, config, store, world, image_id, monkeypatch):
    def suggest(session, actor, store, config, image_id, model_version_id=None,
                score_cells=True):
        return prediction.Prediction(image_id, 1, 3, suggestion_labels(), None)
    monkeypatch.setattr(prediction, "suggest", suggest)
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)
    assert cell_review.summary(session, anna, config, store, image_id) is None
    with pytest.raises(ValidationError, match="no per-cell uncertainty"):
        cell_review.accept_confident(session, anna, config, store, image_id)
    from app.services.display import render_draft
    png = render_draft(session, anna, config, store, image_id, 0, 80).data
    assert rgb_at(png, 60, 45)[:3] == class_rgb(session, world)


def test_a_forged_check_edit_is_validated(session, config, store, world, image_id,
                                          fake_suggest):
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)
    for bad in ({"op": "check"}, {"op": "check", "labels": []},
                {"op": "check", "labels": ["x"]}, {"op": "check", "labels": 3}):
        with pytest.raises(ValidationError):
            drafts.record_edit(session, anna, config, store, image_id, bad)
    drafts.record_edit(session, anna, config, store, image_id, {"op": "check", "labels": [1, 0]})
    assert cell_review.summary(session, anna, config, store, image_id).checked == 1


@pytest.fixture
def model_row(session, world):
    mv = ModelVersion(project_id=world["project_id"], weights_blob_key="f" * 64,
                      is_active=True)
    session.add(mv)
    session.flush()
    return mv


def test_scores_are_cached_with_the_prediction(session, config, store, world, image_id,
                                               model_row, monkeypatch):
    """The suggestion on opening never waits for scores: it reads the cache as it is (an
    older entry without scores stays plain) or predicts plainly; the button predicts labels
    and scores in one pass; scoring cached labels caches the scores beside them."""
    made = []
    monkeypatch.setattr(prediction.model_versions, "load", lambda store, mv: "model")
    monkeypatch.setattr(prediction, "_predict", lambda store, image, mv, model: (
        made.append("joint"), (suggestion_labels(), uncertainty()))[1])
    monkeypatch.setattr(prediction, "_predict_plain", lambda store, image, mv, model: (
        made.append("plain"), suggestion_labels())[1])
    monkeypatch.setattr(prediction, "_score", lambda store, image, mv, model, labels: (
        made.append("score"), prediction.cell_uncertainty(labels, SCORES))[1])
    anna = actor(session, "annotator")
    image = session.get(Image, image_id)
    opened = prediction.suggest(session, anna, store, config, image_id, score_cells=False)
    assert opened.cells is None and made == ["plain"]
    again = prediction.suggest(session, anna, store, config, image_id)     # cached labels
    assert again.cells is None and made == ["plain"]
    assert prediction.score_labels(config, store, image, model_row,
                                   again.labels)["cells"] == {"1": 0.05, "2": 0.5, "3": 0.8}
    scored = prediction.suggest(session, anna, store, config, image_id, score_cells=False)
    assert scored.cells["uncertain_at"] == pytest.approx(0.35) and made == ["plain", "score"]
    assert prediction.score_labels(config, store, image, model_row, again.labels) == \
        scored.cells and made == ["plain", "score"]                        # from the cache
    # scores tied to other labels (the labels file replaced) are not used
    other = suggestion_labels()
    other[0, 0] = 9
    prediction._store_cache(prediction._cache_path(config, image, model_row), other)
    assert prediction.suggest(session, anna, store, config, image_id,
                              score_cells=False).cells is None
    # nothing cached: the button predicts labels and scores in one pass
    prediction._cache_path(config, image, model_row).unlink()
    pressed = prediction.suggest(session, anna, store, config, image_id)
    assert pressed.cells["cells"]["3"] == 0.8 and made[-1] == "joint"


def test_a_suggestion_made_on_opening_is_scored_afterwards(
        session, config, store, world, image_id, model_row, monkeypatch):
    """cell_review.score_suggestion: once per suggestion, added to its snapshot edit (asked
    again, it answers the draft's revision); a model that cannot score leaves plain outlines
    and is not asked again."""
    scores = [SCORES]
    monkeypatch.setattr(prediction.model_versions, "load", lambda store, mv: "model")
    monkeypatch.setattr(prediction, "_predict_plain",
                        lambda store, image, mv, model: suggestion_labels())
    monkeypatch.setattr(prediction, "_score", lambda store, image, mv, model, labels:
                        prediction.cell_uncertainty(labels, scores[0]))
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id, auto=True)
    assert cell_review.summary(session, anna, config, store, image_id) is None
    assert cell_review.pending(session, anna, image_id)
    with pytest.raises(PermissionDenied):
        cell_review.score_suggestion(session, actor(session, "viewer"), config, store,
                                     image_id)
    result = cell_review.score_suggestion(session, anna, config, store, image_id)
    assert result.n_cells == 3 and not cell_review.pending(session, anna, image_id)
    s = cell_review.summary(session, anna, config, store, image_id)
    assert (s.uncertain, s.confident) == (2, 1)
    # asked again (an earlier request's answer was lost): no second scoring, but the
    # draft's revision, so the page shows the scores
    again = cell_review.score_suggestion(session, anna, config, store, image_id)
    assert isinstance(again, cell_review.Revision) and again.rev == result.rev
    # a model without dropout: no scores, asked once
    scores[0] = None
    drafts.use_suggestion(session, anna, config, store, image_id)
    assert cell_review.summary(session, anna, config, store, image_id) is not None  # cached
    prediction._cells_path(config, session.get(Image, image_id), model_row).unlink()
    drafts.use_suggestion(session, anna, config, store, image_id)
    assert cell_review.pending(session, anna, image_id)
    assert cell_review.score_suggestion(session, anna, config, store, image_id) is None
    assert not cell_review.pending(session, anna, image_id)
    assert cell_review.summary(session, anna, config, store, image_id) is None


def test_points_a_counting_model_was_unsure_of_are_marked_and_added_ones_are_not():
    from app.services import cell_review
    from app.tables import Draft
    draft = Draft(edits=[{"op": "base", "labels": None, "region": None, "classes": {},
                          "points": [[5.0, 6.0, 0], [7.5, 8.0, 0], [20.0, 1.0, 0]],
                          "source": "model-corrected", "model": 1,
                          "point_confidence": [0.9, 0.2, 0.5]}])
    on_screen = [[7.5, 8.0, 0], [20.0, 1.0, 0], [5.0, 6.0, 0], [40.0, 40.0, 0]]
    assert drafts.unsure_points(draft, on_screen) == [True, False, False, False]
    assert drafts.unsure_points(Draft(edits=[]), on_screen) is None
    assert drafts.unsure_points(None, on_screen) is None

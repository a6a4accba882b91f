"""A counting (points) project whose active model draws outlines, e.g. the built-in nuclei
model every new project starts from: "Use model suggestion" puts one point on each of the
model's cells (a new user's walk found 1,258 outlines saved there and counted as 0), and the
counts read a version saved with outlines only by its cells. The model is faked here; the
real built-in model's suggestion is tested in tests/test_starting_models.py."""
import numpy as np
import pytest
from sqlalchemy import select

from app.permissions import SYSTEM
from app.services import annotations, cell_review, drafts, prediction, project_counts, projects
from app.tables import Image
from tests.conftest import actor


def model_cells():
    """Three cells: two squares and a crescent whose centroid lies outside it."""
    labels = np.zeros((60, 80), np.int32)
    labels[5:15, 5:15], labels[30:40, 30:40] = 1, 2
    yy, xx = np.mgrid[:60, :80]
    ring = ((yy - 40) ** 2 + (xx - 65) ** 2 <= 12 ** 2) & ((yy - 40) ** 2 + (xx - 65) ** 2 > 8 ** 2)
    labels[ring & (xx < 65)] = 3
    return labels


@pytest.fixture
def outline_model(monkeypatch):
    asked = []

    def suggest(session, actor, store, config, image_id, model_version_id=None,
                score_cells=True):
        asked.append(score_cells)
        return prediction.Prediction(image_id, 1, 3, model_cells(), None)
    monkeypatch.setattr(prediction, "suggest", suggest)
    return asked


def test_an_outline_models_suggestion_in_a_points_project_is_a_point_per_cell(
        session, config, store, world, image_id, outline_model):
    projects.set_annotation_mode(session, SYSTEM, world["project_id"], "points")
    anna = actor(session, "annotator")
    shown = drafts.use_suggestion(session, anna, config, store, image_id)
    assert (shown.n_points, shown.n_cells) == (3, 0)
    assert outline_model == [False]        # centres need no per-cell uncertainty
    canvas = drafts.current_canvas(session, anna, config, store, session.get(Image, image_id))
    labels = model_cells()
    on = sorted(int(labels[int(y), int(x)]) for x, y, _cls in canvas.points)
    assert on == [1, 2, 3]                 # every point on its own cell, the crescent's too
    assert [10.0, 10.0, 0] in canvas.points and [35.0, 35.0, 0] in canvas.points  # centres
    # not mistaken for cells to score; Undo takes the points back, Redo brings them
    assert cell_review.unscored(drafts.find_draft(session, anna, image_id)) is None
    assert drafts.undo(session, anna, config, store, image_id).n_points == 0
    assert drafts.undo(session, anna, config, store, image_id, redo=True).n_points == 3
    version = annotations.save(session, anna, config, store, image_id)
    assert (version.n_points, version.n_cells) == (3, 0)
    rows = project_counts.project_counts(session, anna, config, world["project_id"])
    assert [r.annotated for r in rows if r.image_id == image_id] == [3]


def test_a_version_saved_with_outlines_only_counts_its_cells_in_a_points_project(
        session, config, store, world, image_id, outline_model):
    anna = actor(session, "annotator")
    drafts.use_suggestion(session, anna, config, store, image_id)     # outlines project
    assert annotations.save(session, anna, config, store, image_id).n_cells == 3
    projects.set_annotation_mode(session, SYSTEM, world["project_id"], "points")
    rows = project_counts.project_counts(session, anna, config, world["project_id"])
    assert [r.annotated for r in rows if r.image_id == image_id] == [3]


def test_a_click_on_an_unsure_points_ring_removes_it_on_a_large_image(
        session, config, store, world, monkeypatch):
    """An unsure point is drawn 1.5x wider (its orange-and-white ring): on a 1200 px image a
    click 11 px from its centre is on the ring and takes it away; 11 px from a sure point is
    outside it and adds a point."""
    from app.services import counting, imports
    from app.tables import ModelVersion
    from tests.images_data import tiff
    pid = world["project_id"]
    projects.set_annotation_mode(session, SYSTEM, pid, "points")
    imports.import_files(session, actor(session, "owner"), store, pid,
                         [imports.ImportFile("big.tif", read=lambda: tiff(
                             np.zeros((1200, 1200), np.uint8)))], 1 << 28)
    image_id = session.scalar(select(Image.id).where(Image.name == "big.tif"))
    session.add(ModelVersion(project_id=pid, weights_blob_key="f" * 64, is_active=True,
                             settings={"kind": counting.KIND}))
    session.flush()
    monkeypatch.setattr(prediction, "suggest_points", lambda *a, **k: prediction.PointSuggestion(
        1, [[100.0, 100.0, 0], [300.0, 300.0, 0]], [0.2, 0.9], 2.0, 1.0, 3.0))
    anna = actor(session, "annotator")
    assert drafts.use_suggestion(session, anna, config, store, image_id).n_points == 2
    assert drafts.toggle_point(session, anna, config, store, image_id, 311, 300).n_points == 3
    assert drafts.toggle_point(session, anna, config, store, image_id, 111, 100).n_points == 2
    canvas = drafts.current_canvas(session, anna, config, store, session.get(Image, image_id))
    assert [100.0, 100.0, 0] not in canvas.points and [300.0, 300.0, 0] in canvas.points

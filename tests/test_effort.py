"""Issue 20, part 4: annotation effort counted on every save (cells added, deleted, reshaped,
kept against what the annotator started from; active editing seconds), the effort curve of
a project (validation F1 against cumulative corrections and minutes), and the manifest."""
import datetime as dt
import json

import numpy as np
import pytest
from sqlalchemy import select

from app.errors import NotFound, PermissionDenied
from app.imaging.effort import compare, compare_points
from app.services import annotations, drafts, effort, exports, imports
from app.tables import Annotation, Draft, Image, ModelVersion
from tests.conftest import actor
from tests.images_data import nuclei, rect, tiff


def _box(labels, label, r0, r1, c0, c1):
    labels[r0:r1, c0:c1] = label


def test_compare_counts_added_deleted_reshaped_kept_exactly():
    base = np.zeros((100, 120), np.uint16)
    _box(base, 1, 10, 20, 10, 20)        # kept as it is
    _box(base, 7, 10, 20, 40, 50)        # reshaped: grown to 10 x 16 (IoU 100/160)
    _box(base, 3, 40, 50, 10, 20)        # deleted
    _box(base, 4, 40, 50, 40, 50)        # touched a little: one column more (IoU 100/110)
    _box(base, 5, 70, 80, 10, 20)        # moved off its place: deleted + added
    new = np.zeros_like(base)
    _box(new, 2, 10, 20, 10, 20)         # ids need not agree
    _box(new, 1, 10, 20, 40, 56)
    _box(new, 3, 40, 50, 40, 51)
    _box(new, 9, 70, 80, 30, 40)
    _box(new, 4, 70, 80, 80, 90)         # added
    counts = compare(base, new, {"1": 1}, {"2": 0, "1": 0})
    assert counts == {"added": 2, "deleted": 2, "reshaped": 1, "kept": 2, "reclassified": 1}
    # from nothing, to nothing, and the same image
    assert compare(None, new)["added"] == 5 and compare(base, None)["deleted"] == 5
    assert compare(base, base) == {"added": 0, "deleted": 0, "reshaped": 0, "kept": 5,
                                   "reclassified": 0}
    assert compare(base[None], new.astype(np.int32))["kept"] == 2     # (Z, Y, X) masks


def test_compare_in_bands_of_rows_counts_as_the_whole_image(monkeypatch):
    """Bands cut cells across rows; the counts must not change."""
    from app.imaging import effort as effort_counts
    rng = np.random.default_rng(5)
    base = np.zeros((120, 90), np.uint16)
    new = np.zeros((120, 90), np.uint16)
    for k in range(1, 30):
        y, x = rng.integers(0, 100), rng.integers(0, 70)
        base[y:y + 15, x:x + 15] = k
        dy, dx = rng.integers(-3, 4, 2)
        if k % 7:                                   # every 7th cell deleted
            new[max(0, y + dy):y + dy + 15, max(0, x + dx):x + dx + 15] = k + 100
    whole = effort_counts.compare(base, new)
    monkeypatch.setattr(effort_counts, "CHUNK_PIXELS", 90 * 7)     # bands of 7 rows
    assert effort_counts.compare(base, new) == whole
    assert whole["deleted"] >= 4 and whole["kept"] + whole["reshaped"] > 10


def _compare_by_masks(base, new):
    """The matching rule spelled out cell by cell (IoU of boolean masks, greedy)."""
    pairs = []
    for lb in np.unique(base[base > 0]):
        for ln in np.unique(new[new > 0]):
            a, b = base == lb, new == ln
            iou = (a & b).sum() / (a | b).sum()
            if iou >= 0.5:
                pairs.append((-iou, int(lb), int(ln)))
    used_b, used_n, kept, reshaped = set(), set(), 0, 0
    for neg, lb, ln in sorted(pairs):
        if lb not in used_b and ln not in used_n:
            used_b.add(lb), used_n.add(ln)
            kept, reshaped = (kept + 1, reshaped) if -neg >= 0.9 else (kept, reshaped + 1)
    n_b, n_n = len(np.unique(base[base > 0])), len(np.unique(new[new > 0]))
    return {"added": n_n - len(used_n), "deleted": n_b - len(used_b), "reshaped": reshaped,
            "kept": kept, "reclassified": 0}


@pytest.mark.parametrize("seed", range(6))
def test_compare_counts_runs_as_the_rule_counts_cells(seed, monkeypatch):
    """The run-length count equals the rule applied mask by mask, also with bands of rows
    that cut runs and cells, with cells touching each other and the image edges."""
    from app.imaging import effort as effort_counts
    rng = np.random.default_rng(seed)
    base = np.zeros((61, 47), np.uint16)
    new = np.zeros((61, 47), np.int32)
    for k in range(1, 25):
        y, x, h, w = rng.integers(-4, 58), rng.integers(-4, 44), *rng.integers(3, 14, 2)
        base[max(0, y):y + h, max(0, x):x + w] = k
        if rng.random() < 0.8:
            dy, dx, dh = rng.integers(-2, 3, 3)
            new[max(0, y + dy):y + dy + h + dh, max(0, x + dx):x + dx + w] = 30 + k
    expected = _compare_by_masks(base, new)
    assert compare(base, new) == expected
    monkeypatch.setattr(effort_counts, "CHUNK_PIXELS", 47 * 5 + 3)   # bands of 5 rows
    assert effort_counts.compare(base, new) == expected


def test_compare_a_cell_cut_in_two_is_one_reshape_and_one_addition():
    base = np.zeros((40, 40), np.uint16)
    _box(base, 1, 10, 20, 10, 30)
    new = np.zeros_like(base)
    _box(new, 1, 10, 20, 10, 21)         # 110 of 200 pixels: IoU 0.55, matched
    _box(new, 2, 10, 20, 21, 30)
    assert compare(base, new) == {"added": 1, "deleted": 0, "reshaped": 1, "kept": 0,
                                  "reclassified": 0}


def test_compare_points_keeps_points_moved_by_at_most_three_pixels():
    base = [[10, 10, 0], [50, 50, 0], [90, 90, 1]]
    new = [[12, 12, 0], [50, 54.5, 0], [90, 90, 0], [5, 80, 0]]
    assert compare_points(base, new) == {"added": 2, "deleted": 1, "reshaped": 0, "kept": 2,
                                         "reclassified": 1}
    assert compare_points([], new)["added"] == 4 and compare_points(base, None)["deleted"] == 3


@pytest.fixture
def clock(monkeypatch):
    """The drafts' clock, set by the test: clock(t) makes the next events happen at t."""
    now = {"t": 1_000_000.0}
    monkeypatch.setattr(drafts, "clock", lambda: now["t"])

    def at(t):
        now["t"] = 1_000_000.0 + t
    return at


@pytest.fixture
def model(session, world, monkeypatch):
    """A trained model version (validation F1 0.3) whose suggestion is two square cells."""
    from app.services import prediction
    mv = ModelVersion(project_id=world["project_id"], metrics={"f1": 0.3},
                      created_at=dt.datetime(2020, 1, 1))
    session.add(mv)
    session.flush()

    def suggest(session, actor, store, config, image_id, model_version_id=None):
        labels = np.zeros((60, 80), np.int32)
        labels[40:50, 40:50], labels[40:50, 60:70] = 1, 2
        return prediction.Prediction(image_id, mv.id, 2, labels)
    monkeypatch.setattr(prediction, "suggest", suggest)
    return mv


def _effort(session, image_id, version):
    return session.scalar(select(Annotation.effort).where(Annotation.image_id == image_id,
                                                          Annotation.version == version))


def test_a_known_edit_sequence_from_a_suggestion_then_from_the_saved_version(
        session, config, store, world, three_images, model, clock):
    anna, image_id = actor(session, "annotator"), three_images[0]
    clock(0)
    annotations.open_workspace(session, anna, config, image_id)
    clock(10)
    drafts.use_suggestion(session, anna, config, store, image_id)        # cells 1, 2
    clock(30)
    added = drafts.record_edit(session, anna, config, store, image_id,
                               {"op": "add", "shape": rect(2, 2, 12, 12)})
    clock(200)                                                          # a pause: not counted
    drafts.record_edit(session, anna, config, store, image_id, {"op": "delete", "label": 2})
    clock(215)                                    # cell 1 redrawn 6 px wider: IoU 100/160
    drafts.record_edit(session, anna, config, store, image_id,
                       {"op": "replace", "label": 1, "shape": rect(40, 40, 56, 50)})
    clock(230)
    saved = annotations.save(session, anna, config, store, image_id)
    first = _effort(session, image_id, 1)
    assert first == {"added": 1, "deleted": 1, "reshaped": 1, "kept": 0, "reclassified": 0,
                     "corrections": 3, "active_seconds": 10 + 20 + 15 + 15,
                     "base": "suggestion", "base_model_version_id": model.id}
    assert saved.effort == first
    # the next version counts against version 1, and its time from the save on
    clock(250)
    drafts.record_edit(session, anna, config, store, image_id,
                       {"op": "delete", "label": added.label})
    clock(255)
    annotations.save(session, anna, config, store, image_id)
    assert _effort(session, image_id, 2) == {
        "added": 0, "deleted": 1, "reshaped": 0, "kept": 1, "reclassified": 0,
        "corrections": 1, "active_seconds": 25, "base": "version",
        "base_model_version_id": None}
    # saving the same again makes no version; undoing past the save and saving counts
    # against the version the draft builds on (version 2)
    clock(260)
    annotations.save(session, anna, config, store, image_id)
    assert session.scalar(select(Annotation.version).where(Annotation.image_id == image_id)
                          .order_by(Annotation.version.desc())) == 2
    clock(270)
    drafts.undo(session, anna, config, store, image_id)                 # the cell is back
    clock(400)
    annotations.save(session, anna, config, store, image_id)
    third = _effort(session, image_id, 3)
    assert (third["added"], third["kept"], third["corrections"], third["base"],
            third["active_seconds"]) == (1, 1, 1, "version", 5 + 10)


def test_undoing_the_edit_saved_after_a_suggestion_counts_against_that_save(
        session, config, store, world, three_images, model, clock):
    """Suggestion, delete a cell, save v1, Undo (the saved edit goes to the redo list), save
    v2: v2 is counted against v1 (one cell added back), not against the suggestion."""
    anna, image_id = actor(session, "annotator"), three_images[1]
    clock(0)
    annotations.open_workspace(session, anna, config, image_id)
    suggested = drafts.use_suggestion(session, anna, config, store, image_id)
    drafts.record_edit(session, anna, config, store, image_id, {"op": "delete", "label": 2})
    annotations.save(session, anna, config, store, image_id)
    assert _effort(session, image_id, 1)["deleted"] == 1
    drafts.undo(session, anna, config, store, image_id)
    annotations.save(session, anna, config, store, image_id)
    second = _effort(session, image_id, 2)
    assert (second["added"], second["deleted"], second["kept"], second["base"]) == (
        1, 0, suggested.n_cells - 1, "version")


def test_first_version_counts_from_empty_and_imported_versions_carry_no_effort(
        session, config, store, world, clock):
    owner, anna = actor(session, "owner"), actor(session, "annotator")
    pixels, _ = nuclei((60, 80))
    truth = np.zeros((60, 80), np.uint16)
    _box(truth, 1, 5, 15, 5, 15)
    _box(truth, 2, 30, 40, 30, 40)
    imports.import_files(session, owner, store, world["project_id"], [
        imports.ImportFile("with.tif", read=lambda: tiff(pixels), read_labels=lambda: tiff(truth)),
        imports.ImportFile("without.tif", read=lambda: tiff(pixels[::-1].copy()))], 1 << 28)
    with_id, without_id = session.scalars(select(Image.id).order_by(Image.id)).all()
    assert _effort(session, with_id, 1) is None                         # imported
    clock(0)
    drafts.record_edit(session, anna, config, store, without_id,
                       {"op": "add", "shape": rect(2, 2, 12, 12)})
    drafts.record_edit(session, anna, config, store, without_id,
                       {"op": "add", "shape": rect(30, 30, 40, 40)})
    annotations.save(session, anna, config, store, without_id)
    first = _effort(session, without_id, 1)
    assert (first["added"], first["corrections"], first["base"]) == (2, 2, "empty")
    # on top of the imported version: keep one cell, delete the other
    drafts.record_edit(session, anna, config, store, with_id, {"op": "delete", "label": 2})
    annotations.save(session, anna, config, store, with_id)
    second = _effort(session, with_id, 2)
    assert (second["deleted"], second["kept"], second["corrections"], second["base"]) == \
        (1, 1, 1, "version")
    curve = effort.effort_curve(session, anna, world["project_id"])
    assert (curve.n_versions, curve.corrections) == (2, 3)              # imports count nothing


def test_effort_curve_and_manifest(session, config, store, world, three_images, model, clock,
                                   tmp_path):
    pid, anna, owner = world["project_id"], actor(session, "annotator"), actor(session, "owner")
    image_id = three_images[0]
    clock(0)
    drafts.use_suggestion(session, anna, config, store, image_id)
    clock(30)
    drafts.record_edit(session, anna, config, store, image_id, {"op": "delete", "label": 2})
    clock(60)
    annotations.save(session, anna, config, store, image_id)            # 1 correction, 60 s
    clock(100)
    drafts.record_edit(session, anna, config, store, three_images[1],
                       {"op": "add", "shape": rect(2, 2, 12, 12)})
    clock(130)
    annotations.save(session, anna, config, store, three_images[1])     # 1 correction, 30 s
    v1, v2 = (session.scalar(select(Annotation).where(Annotation.image_id == i))
              for i in three_images[:2])
    start = dt.datetime(2021, 1, 1)
    v1.created_at, v2.created_at = start, start + dt.timedelta(hours=2)
    later = ModelVersion(project_id=pid, metrics={"f1": 0.7},          # trained in between
                         created_at=start + dt.timedelta(hours=1))
    session.add(later)
    session.flush()
    session.add(ModelVersion(project_id=pid, metrics={"f1": 0.9},    # an ensemble member
                             settings={"ensemble_of": later.id}, created_at=later.created_at))
    session.flush()
    curve = effort.effort_curve(session, actor(session, "viewer"), pid)
    assert [(p.model_version_id, p.f1, p.corrections, p.minutes, p.n_versions)
            for p in curve.points] == [(model.id, 0.3, 0, 0.0, 0), (later.id, 0.7, 1, 1.0, 1)]
    assert (curve.corrections, curve.minutes, curve.n_versions) == (2, 1.5, 2)
    assert curve.counts == {"added": 1, "deleted": 1, "reshaped": 0, "kept": 1}
    with pytest.raises(NotFound):
        effort.effort_curve(session, actor(session, "outsider"), pid)
    # the manifest carries each version's effort and the project's figures
    exports.export_project(session, owner, store, pid, tmp_path / "out", ("counts",))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = next(i for i in manifest["images"] if i["id"] == image_id)
    assert entry["annotations"][0]["effort"]["corrections"] == 1
    assert entry["annotations"][0]["effort"]["base"] == "suggestion"
    assert manifest["effort"]["corrections"] == 2
    assert manifest["effort"]["active_minutes"] == 1.5
    assert [m["model_version"] for m in manifest["effort"]["models"]] == [model.id, later.id]


def test_a_viewer_records_no_activity_and_cannot_write(session, config, store, world,
                                                       three_images, clock):
    viewer, image_id = actor(session, "viewer"), three_images[0]
    workspace = annotations.open_workspace(session, viewer, config, image_id)
    assert not workspace.can_edit
    assert session.scalar(select(Draft).where(Draft.user_id == viewer.id)) is None
    with pytest.raises(PermissionDenied):
        drafts.record_edit(session, viewer, config, store, image_id,
                           {"op": "add", "shape": rect(2, 2, 12, 12)})
    with pytest.raises(PermissionDenied):
        annotations.save(session, viewer, config, store, image_id)


def test_opening_the_workspace_is_an_event_but_keeps_the_draft_revision(
        session, config, store, world, three_images, clock):
    anna, image_id = actor(session, "annotator"), three_images[0]
    clock(0)
    first = drafts.record_edit(session, anna, config, store, image_id,
                               {"op": "add", "shape": rect(2, 2, 12, 12)})
    clock(40)
    workspace = annotations.open_workspace(session, anna, config, image_id)
    assert workspace.draft_rev == first.rev                             # cache stays valid
    session.commit()
    draft = drafts.find_draft(session, anna, image_id)
    assert draft.activity == {"last": 1_000_040.0, "seconds": 40.0}
    clock(70)
    annotations.save(session, anna, config, store, image_id)
    assert _effort(session, image_id, 1)["active_seconds"] == 70


def test_project_page_plots_f1_against_corrections_and_minutes(as_user, db, world, image_id):
    from pages import project as page
    from tests.conftest import component_text
    pid = world["project_id"]
    with db.session_scope() as s:
        start = dt.datetime(2021, 1, 1)
        s.add(ModelVersion(project_id=pid, metrics={"f1": 0.4}, created_at=start))
        s.add(Annotation(image_id=image_id, version=1, created_at=start + dt.timedelta(hours=1),
                         effort={"added": 4, "deleted": 1, "reshaped": 2, "kept": 3,
                                 "corrections": 7, "active_seconds": 180.0,
                                 "base": "suggestion", "base_model_version_id": None}))
        s.add(ModelVersion(project_id=pid, metrics={"f1": 0.8},
                           created_at=start + dt.timedelta(hours=2)))
    with as_user("viewer"):
        text = component_text(page.layout(project_id=str(pid)))
    assert "Annotation effort" in text and page.EFFORT_FIGURE in text
    assert "7 corrections" in text and "3.0 active minutes" in text
    with as_user("viewer"):
        figure = page.effort_figure(page.call(effort.effort_curve, pid)[0])
    assert [list(t.x) for t in figure.data] == [[0, 7], [0.0, 3.0]]
    assert list(figure.data[0].y) == [0.4, 0.8]


def _cells(rng, shape, n, start=1):
    labels = np.zeros(shape, np.uint16)
    for k in range(start, start + n):
        y, x = rng.integers(0, shape[0] - 12), rng.integers(0, shape[1] - 12)
        h, w = rng.integers(4, 12, 2)
        labels[y:y + h, x:x + w] = k
    return labels


def test_comparing_only_the_changed_rows_counts_as_the_whole_image(monkeypatch):
    """Given the areas of the base's cells, only the bands of changed rows are compared; the
    counts equal the whole comparison's for every kind of edit: cells added, deleted (ids
    kept or renumbered), reshaped, moved, cut in two pieces far apart, re-classified only,
    nothing changed."""
    from app.imaging import effort as effort_counts
    from app.imaging.effort import compare_with_areas
    rows_compared = []
    whole = effort_counts._compare
    monkeypatch.setattr(effort_counts, "_compare", lambda b, n, *a: (
        rows_compared.append(b.shape[0]), whole(b, n, *a))[1])
    rng = np.random.default_rng(26)
    fast_used = 0
    for trial in range(60):
        base = _cells(rng, (160, 120), int(rng.integers(5, 40)))
        new = base.copy()
        kind = trial % 6
        top = int(base.max())
        if kind == 0:                                        # a few cells added
            for k in range(int(rng.integers(1, 4))):
                y, x = rng.integers(0, 150), rng.integers(0, 110)
                new[y:y + 8, x:x + 8] = top + 1 + k
        elif kind == 1 and top:                              # a cell deleted, ids as they were
            new[new == rng.integers(1, top + 1)] = 0
        elif kind == 2 and top:                              # reshaped (grown) and moved
            cell = new == rng.integers(1, top + 1)
            new[np.roll(cell, int(rng.integers(1, 6)), axis=1)] = top + 5
        elif kind == 3 and top:                              # one id, two pieces far apart
            label = int(rng.integers(1, top + 1))
            new[150:156, 100:110] = label
        elif kind == 4 and top:                              # renumbered after a deletion
            new[new == 1] = 0
            new[new > 1] -= 1
        base_classes = {str(k): int(rng.integers(0, 3)) for k in range(1, top + 1, 3)}
        new_classes = dict(base_classes)
        if top and kind in (2, 5):                           # class changes, pixels or not
            new_classes[str(int(rng.integers(1, top + 1)))] = 2
        expected, areas = compare_with_areas(base, new, base_classes, new_classes)
        assert expected == compare(base, new, base_classes, new_classes)
        assert np.array_equal(areas, np.bincount(new.ravel(), minlength=int(new.max()) + 1))
        base_areas = np.bincount(base.ravel(), minlength=int(base.max()) + 1)
        rows_compared.clear()
        got, got_areas = compare_with_areas(base, new, base_classes, new_classes, base_areas)
        assert got == expected, (trial, kind)
        assert np.array_equal(got_areas, areas)
        fast_used += rows_compared[0] < base.shape[0]
    assert fast_used > 20                  # most edits compared fewer rows than the image
    # areas that are not the base's are noticed: the whole image is compared instead
    base = _cells(rng, (160, 120), 20)
    new = base.copy()
    new[5:9, 5:9] = 99
    wrong = np.bincount(base.ravel(), minlength=int(base.max()) + 1) + 3
    assert compare_with_areas(base, new, base_areas=wrong)[0] == compare(base, new)


def test_label_areas_are_the_pixel_counts_of_each_label():
    from app.imaging.effort import label_areas
    labels = _cells(np.random.default_rng(3), (50, 40), 12)
    assert np.array_equal(label_areas(labels), np.bincount(labels.ravel()))
    assert np.array_equal(label_areas(np.zeros((0, 5), np.uint16)), [0])


def test_a_tall_cell_changed_in_many_places_is_compared_in_one_band(monkeypatch):
    """Several runs of changed rows on one tall cell grow into one band (each row read a
    bounded number of times, none dropped), and the counts are the whole comparison's."""
    from app.imaging import effort as effort_counts
    rows_compared = []
    whole = effort_counts._compare
    monkeypatch.setattr(effort_counts, "_compare", lambda b, n, *a: (
        rows_compared.append(b.shape[0]), whole(b, n, *a))[1])
    base = _cells(np.random.default_rng(8), (400, 120), 30, start=2)
    base[40:300, 50:60] = 1                                  # a tall cell
    new = base.copy()
    for y in (60, 120, 180, 240):                           # cut in four places
        new[y:y + 2, 50:60] = 0
    new[380:384, 5:9] = 77                                   # and a cell added far below
    areas = np.bincount(base.ravel(), minlength=int(base.max()) + 1)
    counts, _ = effort_counts.compare_with_areas(base, new, base_areas=areas)
    assert len(rows_compared) == 1 and rows_compared[0] < base.shape[0]   # no fallback
    assert counts == compare(base, new)

"""The annotation workspace's services: the queue and leases, drafts (edits, undo/redo,
kept across reopening), append-only saves with the conflict check, and review."""
import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select

from app.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.services import annotations, drafts, leases, projects
from app.tables import Annotation, Image, utcnow
from storage.blobstore import get_array
from tests.conftest import actor
from tests.images_data import rect, square


def test_two_annotators_never_get_the_same_image_and_leases_expire(session, config, world,
                                                                   three_images):
    pid = world["project_id"]
    anna, rita = actor(session, "annotator"), actor(session, "reviewer")
    first = leases.next_image(session, anna, config, pid)
    second = leases.next_image(session, rita, config, pid)
    assert first == three_images[0] and second == three_images[1]
    # asking again gives each their own image back
    assert leases.next_image(session, anna, config, pid) == first
    # skipping hands out the next free one and releases the skipped image
    third = leases.next_image(session, anna, config, pid, skip=[first], release_id=first)
    assert third == three_images[2]
    assert session.get(Image, first).assigned_to_id is None
    # a lease held by someone else blocks editing until it expires
    workspace = annotations.open_workspace(session, rita, config, third)
    assert not workspace.can_edit and "annotator is annotating" in workspace.read_only_reason
    image = session.get(Image, third)
    image.lease_expires_at = utcnow() - dt.timedelta(seconds=1)
    session.flush()
    assert annotations.open_workspace(session, rita, config, third).can_edit
    assert session.get(Image, third).assigned_to_id == rita.id


def test_queue_prefers_returned_images_and_runs_out(session, config, store, world, three_images):
    pid, anna = world["project_id"], actor(session, "annotator")
    first = leases.next_image(session, anna, config, pid)
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(2, 2, 9, 9)})
    annotations.save(session, anna, config, store, first)
    annotations.review(session, actor(session, "reviewer"), first, accept=False,
                       comment="missed the cell at the top")
    leases.release(session, anna, first)
    assert leases.next_image(session, anna, config, pid) == first
    workspace = annotations.open_workspace(session, anna, config, first)
    assert workspace.latest.review_state == "returned"
    assert workspace.latest.review_comment == "missed the cell at the top"
    for image_id in three_images:
        session.get(Image, image_id).status = "reviewed"
    session.flush()
    with pytest.raises(NotFound):
        leases.next_image(session, anna, config, pid, release_id=first)


def test_edits_undo_redo_and_save_make_a_new_version(session, config, store, world,
                                                     three_images):
    anna, image_id = actor(session, "annotator"), three_images[0]
    annotations.open_workspace(session, anna, config, image_id)
    a = drafts.record_edit(session, anna, config, store, image_id,
                           {"op": "add", "shape": square(10, 10, 20, 20), "cls": 0})
    b = drafts.record_edit(session, anna, config, store, image_id,
                           {"op": "add", "shape": rect(30, 30, 40, 45)})
    assert (a.label, b.label, b.n_cells) == (1, 2, 2)
    c = drafts.record_edit(session, anna, config, store, image_id,
                           {"op": "brush", "label": 1, "width": 4,
                            "shape": {"type": "path", "path": "M20,15L28,15"}})
    assert c.n_cells == 2 and c.can_undo and not c.can_redo
    for _ in range(3):
        r = drafts.undo(session, anna, config, store, image_id)
    assert r.n_cells == 0 and not r.can_undo
    with pytest.raises(ValidationError):
        drafts.undo(session, anna, config, store, image_id)
    for _ in range(3):
        r = drafts.undo(session, anna, config, store, image_id, redo=True)
    assert r.n_cells == 2
    # a fresh session (another web worker, a reopened tab) sees the same draft
    session.commit()
    label, path, cls = drafts.cell_at(session, anna, config, store, image_id, 15.5, 15.5)
    assert label == 1 and path.startswith("M") and cls == 0
    saved = annotations.save(session, anna, config, store, image_id)
    assert saved.version == 1 and saved.n_cells == 2 and saved.author == "annotator"
    ann = session.scalar(select(Annotation).where(Annotation.image_id == image_id))
    mask = get_array(store, ann.label_blob_key)
    assert mask.dtype == np.uint16 and mask[15, 15] == 1 and mask[15, 26] == 1
    assert mask[35, 35] == 2 and ann.source == "manual" and ann.parent_id is None
    kept = drafts.find_draft(session, anna, image_id)       # kept, with its history
    assert kept.base_annotation_id == ann.id and len(kept.edits) == 3
    assert session.get(Image, image_id).status == "annotated"
    # the next save builds on version 1
    drafts.record_edit(session, anna, config, store, image_id, {"op": "delete", "label": 2})
    second = annotations.save(session, anna, config, store, image_id)
    assert second.version == 2 and second.n_cells == 1
    versions = annotations.history(session, anna, image_id)
    assert [v.version for v in versions] == [2, 1]
    rows = session.scalars(select(Annotation).where(Annotation.image_id == image_id)
                           .order_by(Annotation.version)).all()
    assert rows[1].parent_id == rows[0].id and rows[0].n_cells == 2     # history kept


def test_saving_over_a_newer_version_is_a_conflict_unless_forced(session, config, store, world,
                                                                three_images):
    anna, rita, image_id = actor(session, "annotator"), actor(session, "reviewer"), three_images[0]
    drafts.record_edit(session, rita, config, store, image_id, {"op": "add", "shape": rect(2, 2, 8, 8)})
    leases.release(session, rita, image_id)
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(20, 20, 30, 30)})
    leases.release(session, anna, image_id)
    annotations.save(session, rita, config, store, image_id)            # rita saves first
    leases.release(session, rita, image_id)
    with pytest.raises(Conflict, match="changed since you opened it"):
        annotations.save(session, anna, config, store, image_id)
    workspace = annotations.open_workspace(session, anna, config, image_id)
    assert workspace.draft_stale
    saved = annotations.save(session, anna, config, store, image_id, force=True)
    assert saved.version == 2
    first, second = session.scalars(select(Annotation).where(Annotation.image_id == image_id)
                                    .order_by(Annotation.version)).all()
    assert second.parent_id == first.id and first.author_id == rita.id   # nothing overwritten


def test_region_empty_and_points_are_saved(session, config, store, world, three_images):
    anna, image_id = actor(session, "annotator"), three_images[1]
    drafts.record_edit(session, anna, config, store, image_id, {"op": "region", "shape": rect(0, 0, 40, 60)})
    drafts.record_edit(session, anna, config, store, image_id, {"op": "point", "x": 5.5, "y": 6.5})
    annotations.save(session, anna, config, store, image_id)
    ann = session.scalar(select(Annotation).where(Annotation.image_id == image_id))
    region = get_array(store, ann.region_blob_key)
    assert region[:, :40].all() and not region[:, 40:].any()
    assert ann.points == [[5.5, 6.5, 0]]
    assert ann.label_blob_key is None       # points only: not a "no cells" mask for training
    empty = annotations.save(session, anna, config, store, image_id, empty=True)
    assert empty.n_cells == 0 and empty.n_points == 0


def test_viewers_cannot_edit_and_reviewers_review(session, config, store, world, three_images):
    viewer, image_id = actor(session, "viewer"), three_images[0]
    workspace = annotations.open_workspace(session, viewer, config, image_id)
    assert not workspace.can_edit and "viewer" in workspace.read_only_reason
    with pytest.raises(PermissionDenied):
        drafts.record_edit(session, viewer, config, store, image_id, {"op": "add", "shape": rect(1, 1, 5, 5)})
    with pytest.raises(PermissionDenied):
        annotations.save(session, viewer, config, store, image_id)
    with pytest.raises(NotFound):
        annotations.open_workspace(session, actor(session, "outsider"), config, image_id)
    anna = actor(session, "annotator")
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(1, 1, 5, 5)})
    annotations.save(session, anna, config, store, image_id)
    with pytest.raises(PermissionDenied):
        annotations.review(session, anna, image_id, accept=True)
    listed = annotations.review_list(session, anna, world["project_id"])
    assert [item.image_id for item in listed] == [image_id]
    with pytest.raises(ValidationError, match="Say what"):
        annotations.review(session, actor(session, "reviewer"), image_id, accept=False)
    done = annotations.review(session, actor(session, "reviewer"), image_id, accept=True)
    assert done.review_state == "accepted" and done.reviewer == "reviewer"
    assert session.get(Image, image_id).status == "reviewed"


def test_bad_edits_are_refused_with_clear_messages(session, config, store, world, three_images):
    anna, image_id = actor(session, "annotator"), three_images[0]
    for edit, message in [({"op": "explode"}, "Unknown edit"),
                          ({"op": "add", "shape": {"type": "path", "path": "M1,1C2,2"}}, "other than"),
                          ({"op": "add", "shape": rect(1, 1, 5, 5), "cls": 7}, "class"),
                          ({"op": "delete"}, "Select a cell"),
                          ({"op": "point", "x": "left"}, "Malformed")]:
        with pytest.raises(ValidationError, match=message):
            drafts.record_edit(session, anna, config, store, image_id, edit)


def test_counting_projects_are_flagged(session, config, world, three_images):
    projects.set_annotation_mode(session, actor(session, "owner"), world["project_id"], "points")
    workspace = annotations.open_workspace(session, actor(session, "annotator"), config,
                                           three_images[0])
    assert workspace.counting
    with pytest.raises(PermissionDenied):
        projects.set_annotation_mode(session, actor(session, "reviewer"), world["project_id"],
                                     "outlines")


def n_versions(session, image_id):
    return len(session.scalars(select(Annotation.id).where(Annotation.image_id == image_id)).all())


def test_undo_reaches_behind_a_save_and_saves_stay_append_only(session, config, store, world,
                                                               three_images):
    """Issue 19 item 10: saving no longer clears the undo history."""
    anna, rita, image_id = actor(session, "annotator"), actor(session, "reviewer"), three_images[0]
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(2, 2, 9, 9)})
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(20, 20, 30, 30)})
    assert annotations.save(session, anna, config, store, image_id).version == 1
    session.commit()
    workspace = annotations.open_workspace(session, anna, config, image_id)
    assert workspace.can_undo and not workspace.draft_stale
    assert drafts.counts(session, anna, config, store, image_id) == (2, 0)
    assert drafts.undo(session, anna, config, store, image_id).n_cells == 1
    assert annotations.save(session, anna, config, store, image_id).version == 2
    assert drafts.undo(session, anna, config, store, image_id, redo=True).n_cells == 2
    # back to what version 1 holds, but version 2 is the newest: a third version, none lost
    assert annotations.save(session, anna, config, store, image_id).version == 3
    assert annotations.save(session, anna, config, store, image_id).version == 3  # no change
    assert n_versions(session, image_id) == 3
    # nothing done since the save: a newer version by someone else is followed, not "stale"
    leases.release(session, anna, image_id)
    drafts.record_edit(session, rita, config, store, image_id, {"op": "delete", "label": 1})
    annotations.save(session, rita, config, store, image_id)
    leases.release(session, rita, image_id)
    workspace = annotations.open_workspace(session, anna, config, image_id)
    assert not workspace.draft_stale and workspace.latest.version == 4
    assert drafts.counts(session, anna, config, store, image_id) == (1, 0)


@pytest.fixture
def fake_model(monkeypatch):
    """prediction.suggest without a trained model: two square cells."""
    from app.services import prediction

    def suggest(session, actor, store, config, image_id, model_version_id=None):
        labels = np.zeros((60, 80), np.int32)
        labels[40:50, 40:50], labels[40:50, 60:70] = 1, 2
        return prediction.Prediction(image_id, 999, 2, labels)
    monkeypatch.setattr(prediction, "suggest", suggest)


def test_a_suggestion_is_an_edit_that_undo_takes_back_and_revert_to_saved(
        session, config, store, world, three_images, fake_model):
    """Issue 19 item 5: the suggestion no longer wipes the corrections made before it."""
    anna, image_id = actor(session, "annotator"), three_images[0]
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(2, 2, 9, 9)})
    drafts.record_edit(session, anna, config, store, image_id, {"op": "point", "x": 3, "y": 3})
    loaded = drafts.use_suggestion(session, anna, config, store, image_id)
    assert (loaded.n_cells, loaded.n_points, loaded.can_undo) == (2, 1, True)
    back = drafts.undo(session, anna, config, store, image_id)
    assert (back.n_cells, back.can_redo) == (1, True)
    assert drafts.cell_at(session, anna, config, store, image_id, 5, 5)[0] == 1
    assert drafts.undo(session, anna, config, store, image_id, redo=True).n_cells == 2
    # corrections after the suggestion replay on top of it (also from a cold cache)
    drafts.record_edit(session, anna, config, store, image_id, {"op": "delete", "label": 2})
    cached = list((config.cache_dir / "drafts").rglob("*.mask"))
    current = drafts._cache_path(config, drafts.find_draft(session, anna, image_id))
    assert current in cached and len(cached) == drafts.CACHE_STATES
    for path in cached:
        path.unlink()
    saved = annotations.save(session, anna, config, store, image_id)
    assert saved.n_cells == 1 and saved.source == "model-corrected"
    # revert to last saved: an edit too
    drafts.record_edit(session, anna, config, store, image_id, {"op": "clear"})
    result, version = drafts.revert_to_saved(session, anna, config, store, image_id)
    assert (result.n_cells, version) == (1, 1)
    with pytest.raises(ValidationError, match="Nothing to revert"):
        drafts.revert_to_saved(session, anna, config, store, image_id)
    assert drafts.undo(session, anna, config, store, image_id).n_cells == 0
    with pytest.raises(ValidationError, match="Nothing has been saved"):
        drafts.revert_to_saved(session, anna, config, store, three_images[1])


def test_a_browser_cannot_send_a_snapshot_edit(session, config, store, world, three_images):
    """Snapshot edits name blobs; only the server makes them."""
    anna = actor(session, "annotator")
    with pytest.raises(ValidationError, match="Unknown edit"):
        drafts.record_edit(session, anna, config, store, three_images[0],
                           {"op": "base", "labels": "someone-elses-mask", "classes": {}})


def test_counts_for_people_without_a_draft(session, config, store, world, three_images):
    """Issue 19 item 9: a saved annotation opened without a draft has a cell count."""
    anna, image_id = actor(session, "annotator"), three_images[0]
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(2, 2, 9, 9)})
    annotations.save(session, anna, config, store, image_id)
    assert drafts.counts(session, actor(session, "viewer"), config, store, image_id) == (1, 0)
    assert drafts.counts(session, anna, config, store, three_images[1]) == (0, 0)


@pytest.mark.parametrize("top", [9, 70_000])
def test_the_draft_cache_gives_back_what_it_was_given(tmp_path, top):
    from app.imaging.shapes import Canvas
    labels = np.zeros((33, 47), np.int32)
    labels[3:9, 4:20] = top
    labels[20:30, 30:40] = 2
    region = np.zeros((33, 47), bool)
    region[0:17, 5:44] = True
    canvas = Canvas(labels, {top: 1, 2: 0}, region, [[1.5, 2.0, 0]])
    path = tmp_path / "d.mask"
    drafts._write_cache(path, canvas, "k")
    back = drafts._read_cache(path, "k")
    assert back.labels.dtype == np.int32 and np.array_equal(back.labels, labels)
    assert np.array_equal(back.region, region) and back.points == [[1.5, 2.0, 0]]
    assert back.classes == {top: 1, 2: 0}
    assert drafts._read_cache(path, "other") is None           # another state
    back.labels[0, 0] = 5                                      # a copy: edits do not fail
    path.write_bytes(path.read_bytes()[:40])                   # cut short: a miss
    assert drafts._read_cache(path, "k") is None
    drafts._write_cache(path, Canvas(labels, {}, None, []), "k")
    assert drafts._read_cache(path, "k").region is None


def test_the_draft_cache_keeps_the_last_states_so_undo_replays_nothing(
        session, config, store, world, three_images, monkeypatch):
    """Each state is written under its own name (no replace of the previous file); the three
    newest stay while the draft is edited, so undo and redo read a cached state instead of
    replaying the edits; a save keeps one; discarding the draft removes its folder."""
    anna, image_id = actor(session, "annotator"), three_images[0]
    for k in range(4):
        drafts.record_edit(session, anna, config, store, image_id,
                           {"op": "add", "shape": rect(2 + 10 * k, 2, 9 + 10 * k, 9)})
    draft = drafts.find_draft(session, anna, image_id)
    folder = config.cache_dir / "drafts" / str(draft.id)
    assert len(list(folder.iterdir())) == 3
    replays = []
    real_replay = drafts._replay
    monkeypatch.setattr(drafts, "_replay", lambda *a: replays.append(1) or real_replay(*a))
    assert drafts.undo(session, anna, config, store, image_id).n_cells == 3
    assert drafts.undo(session, anna, config, store, image_id).n_cells == 2
    assert drafts.undo(session, anna, config, store, image_id, redo=True).n_cells == 3
    assert replays == []                                       # all three from the cache
    assert drafts.undo(session, anna, config, store, image_id).n_cells == 2
    assert drafts.undo(session, anna, config, store, image_id).n_cells == 1   # not kept
    assert replays == [1]
    before = drafts._cache_path(config, drafts.find_draft(session, anna, image_id))
    written = []
    real_write = drafts._write_cache
    monkeypatch.setattr(drafts, "_write_cache", lambda *a: written.append(1) or real_write(*a))
    annotations.save(session, anna, config, store, image_id)
    assert list(folder.iterdir()) == [before]                  # a save does not change the mask
    assert written == [] and replays == [1]                    # nor write or replay it
    drafts.discard(session, anna, config, image_id)
    assert not folder.exists()


def test_a_workspace_save_says_whether_the_overlay_changed(session, config, store, world,
                                                           three_images, monkeypatch):
    """A save keeps the draft's edits, so its picture stays (the page keeps the overlay);
    saving "no cells", or a long history folded into the version, changes it."""
    anna, first = actor(session, "annotator"), three_images[0]
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(2, 2, 9, 9)})
    saved = annotations.save_in_workspace(session, anna, config, store, first)
    assert saved.version.version == 1 and saved.version.n_cells == 1
    assert saved.can_undo and not saved.can_redo and not saved.redraw
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(12, 2, 19, 9)})
    drafts.undo(session, anna, config, store, first)
    saved = annotations.save_in_workspace(session, anna, config, store, first)
    assert saved.version.n_cells == 1 and saved.can_undo and saved.can_redo and not saved.redraw
    saved = annotations.save_in_workspace(session, anna, config, store, first, empty=True)
    assert saved.redraw and saved.can_undo and saved.version.n_cells == 0
    # a history longer than MAX_EDITS / 2 is folded into the saved version: nothing to undo
    monkeypatch.setattr(drafts, "MAX_EDITS", 6)
    for k in range(3):
        drafts.record_edit(session, anna, config, store, first,
                           {"op": "add", "shape": rect(2 + 4 * k, 12, 5 + 4 * k, 15)})
    saved = annotations.save_in_workspace(session, anna, config, store, first)
    assert saved.version.n_cells == 3 and saved.redraw and not saved.can_undo


def test_a_save_after_undoing_every_edit_redraws_and_has_nothing_to_redo(
        session, config, store, world, three_images):
    """A draft whose edits are all undone is folded into the saved version, its redo list
    with it: the page must take its new state, not keep its own redo history."""
    anna, first = actor(session, "annotator"), three_images[0]
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(2, 2, 9, 9)})
    drafts.undo(session, anna, config, store, first)
    saved = annotations.save_in_workspace(session, anna, config, store, first)
    assert saved.redraw and not saved.can_undo and not saved.can_redo
    assert saved.version.n_cells == 0


def test_saves_compare_against_the_version_they_build_on_from_memory(session, config, store,
                                                                     world, three_images):
    """The mask a save writes is kept decoded (read-only), so the next save's effort count
    reads it from memory; the counts are the same as from the blob."""
    from storage import array_cache
    anna, first = actor(session, "annotator"), three_images[0]
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(2, 2, 9, 9)})
    v1 = annotations.save(session, anna, config, store, first)
    key = session.get(Annotation, v1.id).label_blob_key
    assert key in array_cache.labels
    kept = array_cache.labels.get(store, key)
    assert not kept.flags.writeable and np.array_equal(kept, get_array(store, key))
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(12, 2, 19, 9)})
    v2 = annotations.save(session, anna, config, store, first)
    assert v2.effort["added"] == 1 and v2.effort["kept"] == 1 and v2.effort["deleted"] == 0


def test_the_array_cache_is_bounded_and_hands_out_read_only_arrays(store):
    from storage.array_cache import ArrayCache
    from storage.blobstore import put_array
    cache = ArrayCache(max_bytes=2 * 400)
    keys = [put_array(store, np.full((10, 10), k, np.int32)) for k in range(3)]  # 400 B each
    for key in keys:
        cache.get(store, key)
    assert keys[0] not in cache and keys[1] in cache and keys[2] in cache   # oldest out
    got = cache.get(store, keys[0])                                        # read again
    assert (got == 0).all() and keys[1] not in cache
    with pytest.raises(ValueError):
        got[0, 0] = 5
    big = np.zeros((30, 30), np.int32)                  # larger than the whole cache
    assert cache.remember("k", big) is big and "k" not in cache


def test_opening_the_workspace_prepares_what_the_first_save_compares_against(
        session, config, store, world, three_images, monkeypatch):
    import time
    from storage import array_cache
    anna, first = actor(session, "annotator"), three_images[0]
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(2, 2, 9, 9)})
    key = session.get(Annotation, annotations.save(session, anna, config, store, first).id) \
        .label_blob_key
    array_cache.labels.clear()
    array_cache.areas.clear()
    monkeypatch.setattr(annotations, "OPEN_PREPARE_DELAY", 0.2)
    annotations.open_workspace(session, anna, config, first, store)
    deadline = time.time() + 10
    while key not in array_cache.areas and time.time() < deadline:
        time.sleep(0.01)
    assert key in array_cache.labels
    assert np.array_equal(array_cache.areas.peek(key),
                          np.bincount(get_array(store, key).ravel()))


def test_edits_renew_a_lease_only_when_half_of_it_is_gone_and_saves_always(
        session, config, store, world, three_images):
    """Issue 22: an edit or an open keeps a fresh lease of one's own without a write (no
    write lock on SQLite); past half its length it is renewed; a save always writes it, and
    is refused once someone else holds the image."""
    pid, anna, rita = world["project_id"], actor(session, "annotator"), actor(session, "reviewer")
    first = leases.next_image(session, anna, config, pid)
    image = session.get(Image, first)
    length = dt.timedelta(minutes=config.lease_minutes)
    fresh = utcnow() + length * 0.6                       # more than half left
    image.lease_expires_at = fresh
    session.flush()
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(2, 2, 9, 9)})
    assert annotations.open_workspace(session, anna, config, first).can_edit
    assert session.get(Image, first).lease_expires_at == fresh           # not written
    stale = utcnow() + length * 0.4                       # less than half left
    image.lease_expires_at = stale
    session.flush()
    drafts.record_edit(session, anna, config, store, first, {"op": "add", "shape": rect(12, 2, 19, 9)})
    assert session.get(Image, first).lease_expires_at > utcnow() + length * 0.9   # renewed
    image.lease_expires_at = fresh
    session.flush()
    annotations.save(session, anna, config, store, first)
    assert session.get(Image, first).lease_expires_at > fresh            # a save writes it
    # someone else takes the image once anna's lease is over: anna's edits and saves stop
    image.lease_expires_at = utcnow() - dt.timedelta(seconds=1)
    session.flush()
    assert annotations.open_workspace(session, rita, config, first).can_edit
    with pytest.raises(Conflict):
        drafts.record_edit(session, anna, config, store, first,
                           {"op": "add", "shape": rect(22, 2, 29, 9)})
    with pytest.raises(Conflict):
        annotations.save(session, anna, config, store, first)

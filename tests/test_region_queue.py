"""The queue by region (issue 21, item 2): scoring keeps each image's most useful region, the
queue serves it, the workspace opens on it with the annotated region set to it, saving takes
the image out of the queue until the next scoring finds what is left of it, training and the
export read the partial annotation."""
import json

import numpy as np
import pytest
from sqlalchemy import select

from app.errors import PermissionDenied, ValidationError
from app.permissions import SYSTEM
from app.services import (annotations, drafts, exports, imports, learning_loop, leases,
                          region_queue, scoring)
from app.states import ImageStatus
from app.jobs.runner import run_job
from app.tables import Annotation, Image, Job, Score
from models.regions import open_regions, regions_of
from storage.blobstore import get_array
from tests.conftest import actor
from tests.images_data import nuclei, tiff
from tests.test_active_learning import score_now
from tests.training_runs import train

SIDE = 96
BIG = (200, 200)           # 3 x 3 regions of 96 px (the last row and column shifted in)


def add_big_images(db, lab, world, n=2):
    items = []
    for k in range(n):
        img, _ = nuclei(shape=BIG, n=24, seed=70 + k)
        items.append(imports.ImportFile(f"big{k}.tif", read=lambda img=img: tiff(img)))
    with db.session_scope() as s:
        imports.import_files(s, SYSTEM, lab, world["project_id"], items, 1 << 28)
        return s.scalars(select(Image.id).where(Image.name.like("big%"))
                         .order_by(Image.id)).all()


def by_region(db, config, world, side=SIDE) -> dict:
    """Switch the project to regions; the scoring job that starts is run here. Its result."""
    sent = []
    with db.session_scope() as s:
        saved = learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                                           {"unit": "region", "region": side}, sent.append)
    assert saved["unit"] == "region" and saved["region"] == side
    assert len(sent) == 1, "changing the unit rescores the pool when there is a model"
    assert run_job(db, config, sent[0]) == "done"
    with db.session_scope() as s:
        return s.get(Job, sent[0]).result


def rect(box):
    y0, x0, y1, x1 = box
    return {"type": "rect", "x0": x0 + 10, "y0": y0 + 10, "x1": x0 + 30, "y1": y0 + 30}


def test_region_settings_are_checked_and_only_owners_set_them(db, world):
    with db.session_scope() as s:
        owner, pid = actor(s, "owner"), world["project_id"]
        with pytest.raises(ValidationError, match="unit"):
            learning_loop.set_settings(s, owner, pid, {"unit": "tile"})
        with pytest.raises(ValidationError, match="region"):
            learning_loop.set_settings(s, owner, pid, {"region": 8})
        with pytest.raises(PermissionDenied):
            learning_loop.set_settings(s, actor(s, "reviewer"), pid, {"unit": "region"})


def test_open_regions_leave_out_what_is_annotated_and_keep_edge_strips():
    annotated = np.zeros((192, 192), bool)
    annotated[:96, :96] = True                   # the first region, all of it
    annotated[96:, 96:188] = True                # 92 of the last one's 96 columns: done
    annotated[:40, 96:] = True                   # 40 of the second one's rows: open
    assert regions_of((192, 192), SIDE) == [(0, 0, 96, 96), (0, 96, 96, 192),
                                            (96, 0, 192, 96), (96, 96, 192, 192)]
    assert open_regions((192, 192), SIDE, annotated) == [(0, 96, 96, 192), (96, 0, 192, 96)]
    assert open_regions(BIG, SIDE, None) == regions_of(BIG, SIDE)
    # the shifted last column of boxes overlaps its neighbour by 88 of 96 px: once the
    # neighbour is annotated, the 8 px strip only it covers is still served
    centre = np.zeros(BIG, bool)
    centre[96:192, 96:192] = True
    assert (96, 104, 192, 200) in open_regions(BIG, SIDE, centre)
    assert (96, 96, 192, 192) not in open_regions(BIG, SIDE, centre)


def test_a_region_goes_round_from_the_queue_to_training(db, config, world, lab):
    assert train(db, config, world)[0] == "done"
    big = add_big_images(db, lab, world)
    result = by_region(db, config, world)
    assert result["unit"] == "region"
    # the lab's unannotated 96 px image is one region; each big image is nine
    assert result["n_images"] == 3 and result["n_regions"] == 1 + 9 * len(big)

    with db.session_scope() as s:
        rows = {r.image_id: r for r in s.scalars(select(Score)).all()}
        for image_id in big:
            region = rows[image_id].region
            assert tuple(region) in regions_of(BIG, SIDE)
        # the queue serves images by their best region and shows it
        items = scoring.queue(s, actor(s, "viewer"), world["project_id"])
        assert {i.image_id: i.region for i in items if i.image_id in big} == {
            i: rows[i].region for i in big}
        anna = actor(s, "annotator")
        first = leases.next_image(s, anna, config, world["project_id"],
                                  skip=[i.image_id for i in items if i.image_id not in big])
        assert first in big
        box = rows[first].region

    # the workspace opens on the region, and the draft's annotated region is that region
    with db.session_scope() as s:
        anna = actor(s, "annotator")
        ws = annotations.open_workspace(s, anna, config, first, lab, queued=True)
        assert ws.focus == box
        x_range, y_range = region_queue.view_range(box, ws.width, ws.height)
        assert x_range[0] <= box[1] and x_range[1] >= box[3] and y_range[1] <= box[0]
        canvas = drafts.current_canvas(s, anna, config, lab, s.get(Image, first))
        expected = np.zeros(BIG, bool)
        expected[box[0]:box[2], box[1]:box[3]] = True
        assert np.array_equal(canvas.region, expected)
        drafts.record_edit(s, anna, config, lab, first, {"op": "add", "cls": 0,
                                                         "shape": rect(box)})
        annotations.save(s, anna, config, lab, first)

    with db.session_scope() as s:
        ann = s.scalar(select(Annotation).where(Annotation.image_id == first))
        assert np.array_equal(get_array(lab, ann.region_blob_key) > 0, expected)
        assert ann.n_cells == 1
        assert s.get(Image, first).status == ImageStatus.annotated
        # its region is done: the image leaves the queue until it is scored again
        assert first not in [i.image_id for i in scoring.queue(s, actor(s, "viewer"),
                                                                world["project_id"])]

    # training reads the partial annotation (only its region counts) ...
    state, trained, error = train(db, config, world)
    assert state == "done", error
    assert trained["n_images"] == 6                  # the lab's 5 + the region of `first`
    # ... and the next scoring brings the image back with one of its regions still open
    result = score_now(db, config, world)
    assert result["n_regions"] == 1 + 9 + len(open_regions(BIG, SIDE, expected))
    with db.session_scope() as s:
        again = s.scalar(select(Score).where(Score.image_id == first,
                                             Score.region.is_not(None)))
        assert again is not None and again.region != box
        assert first in [i.image_id for i in scoring.queue(s, actor(s, "viewer"),
                                                            world["project_id"], limit=50)]
        anna = actor(s, "annotator")
        ws = annotations.open_workspace(s, anna, config, first, lab, queued=True)
        assert ws.focus == again.region
        canvas = drafts.current_canvas(s, anna, config, lab, s.get(Image, first))
        second = expected.copy()
        second[again.region[0]:again.region[2], again.region[1]:again.region[3]] = True
        assert np.array_equal(canvas.region, second)    # the old region and the new one
        assert int(canvas.labels.max()) >= 1            # the cell saved before is still there


def test_a_suggestion_for_a_region_keeps_the_cells_on_screen_and_adds_the_models_there():
    current = np.zeros((10, 10), np.int32)
    current[0:2, 0:2] = 1                        # saved with an earlier region
    model = np.zeros((10, 10), np.int32)
    model[0:3, 0:3] = 1                          # touches the cell on screen: left out
    model[4:6, 4:6] = 2                          # in the region: added as 2 + 1
    model[5:9, 7:9] = 3                          # reaches into the region: added as 3 + 1
    model[8:10, 0:2] = 4                         # outside the region: left out
    region = np.zeros((10, 10), bool)
    region[3:8, 3:8] = True
    labels, offset = drafts.suggest_in_region(model, current, region)
    assert offset == 1
    assert sorted(np.unique(labels).tolist()) == [0, 1, 3, 4]
    assert (labels[0:2, 0:2] == 1).all() and (labels[4:6, 4:6] == 3).all()
    assert (labels[5:9, 7:9] == 4).all() and (labels[8:10, 0:2] == 0).all()


def test_the_export_says_what_a_partial_annotation_covers(db, config, world, lab, tmp_path):
    assert train(db, config, world)[0] == "done"
    big = add_big_images(db, lab, world, n=1)
    by_region(db, config, world)
    with db.session_scope() as s:
        anna = actor(s, "annotator")
        ws = annotations.open_workspace(s, anna, config, big[0], lab, queued=True)
        # the model's suggestion covers the region only (its cells there are to correct)
        drafts.use_suggestion(s, anna, config, lab, big[0])
        image = s.get(Image, big[0])
        canvas = drafts.current_canvas(s, anna, config, lab, image)
        y0, x0, y1, x1 = ws.focus
        inside = set(np.unique(canvas.labels[y0:y1, x0:x1]).tolist()) - {0}
        assert inside and set(np.unique(canvas.labels).tolist()) - {0} == inside
        drafts.record_edit(s, anna, config, lab, big[0], {"op": "add", "cls": 0,
                                                          "shape": rect(ws.focus)})
        annotations.save(s, anna, config, lab, big[0])
        summary = exports.export_project(s, actor(s, "owner"), lab, world["project_id"],
                                         tmp_path / "out", formats=("tiff", "counts"))
    assert "tiff/big0_region.tif" in summary.files
    counts = {row["image"]: row for row in
              json.loads((tmp_path / "out" / "counts.json").read_text())}
    assert counts["big0.tif"]["annotated_fraction"] == pytest.approx(96 * 96 / 200 / 200,
                                                                     abs=1e-4)
    assert counts["d0.tif"]["annotated_fraction"] == 1.0
    assert counts["d5.tif"]["annotated_fraction"] == ""


def test_image_mode_queues_whole_images_as_before(db, config, world, lab):
    assert train(db, config, world)[0] == "done"
    big = add_big_images(db, lab, world, n=1)
    result = score_now(db, config, world)
    assert "unit" not in result and result["n_images"] == 2
    with db.session_scope() as s:
        assert all(r.region is None for r in s.scalars(select(Score)).all())
        ws = annotations.open_workspace(s, actor(s, "annotator"), config, big[0], lab,
                                        queued=True)
        assert ws.focus is None
        assert drafts.current_canvas(s, actor(s, "annotator"), config, lab,
                                     s.get(Image, big[0])).region is None


def test_only_the_queue_widens_a_draft_and_an_old_region_is_not_kept(db, config, world, lab):
    assert train(db, config, world)[0] == "done"
    (image_id,) = add_big_images(db, lab, world, n=1)
    by_region(db, config, world)
    with db.session_scope() as s:
        row = s.scalar(select(Score).where(Score.image_id == image_id))
        first = list(row.region)
        image = s.get(Image, image_id)
        # a reviewer (or a link) opening the image: no region is added to anything
        reviewer = actor(s, "reviewer")
        ws = annotations.open_workspace(s, reviewer, config, image_id, lab)
        assert ws.focus is None
        assert drafts.current_canvas(s, reviewer, config, lab, image).region is None
        leases.release(s, reviewer, image_id)
        anna = actor(s, "annotator")
        annotations.open_workspace(s, anna, config, image_id, lab, queued=True)
        assert drafts.current_canvas(s, anna, config, lab, image).region[
            first[0], first[1]]
        # a rescore serves another region before anna drew anything: the first one goes
        second = next(list(b) for b in regions_of(BIG, SIDE) if list(b) != first)
        row.region = second
        s.flush()
        annotations.open_workspace(s, anna, config, image_id, lab, queued=True)
        region = drafts.current_canvas(s, anna, config, lab, image).region
        expected = np.zeros(BIG, bool)
        expected[second[0]:second[2], second[1]:second[3]] = True
        assert np.array_equal(region, expected)
        # a draft holding only the suggestion made on opening starts again for a new region
        drafts.use_suggestion(s, anna, config, lab, image_id, auto=True)
        assert drafts.only_auto_suggested(drafts.find_draft(s, anna, image_id))
        row.region = first
        s.flush()
        annotations.open_workspace(s, anna, config, image_id, lab, queued=True)
        draft = drafts.find_draft(s, anna, image_id)
        assert not draft.edits
        expected[:] = False
        expected[first[0]:first[2], first[1]:first[3]] = True
        assert np.array_equal(drafts.current_canvas(s, anna, config, lab, image).region,
                              expected)
        # a draft with the person's own edits gets the new region added (an undoable edit)
        drafts.record_edit(s, anna, config, lab, image_id, {"op": "add", "cls": 0,
                                                            "shape": rect(first)})
        row.region = second
        s.flush()
        annotations.open_workspace(s, anna, config, image_id, lab, queued=True)
        draft = drafts.find_draft(s, anna, image_id)
        assert draft.edits[-1]["op"] == "region"
        expected[second[0]:second[2], second[1]:second[3]] = True
        assert np.array_equal(drafts.current_canvas(s, anna, config, lab, image).region,
                              expected)


def test_scoring_leaves_out_an_image_saved_while_it_ran(db, config, world, lab, monkeypatch):
    assert train(db, config, world)[0] == "done"
    (image_id,) = add_big_images(db, lab, world, n=1)
    real = region_queue.newest_ids

    def saved_meanwhile(session, image_ids):
        return {**real(session, image_ids), image_id: 10 ** 6}   # as if saved just now
    monkeypatch.setattr(region_queue, "newest_ids", saved_meanwhile)
    result = by_region(db, config, world)
    assert result["skipped_saved_meanwhile"] == 1
    with db.session_scope() as s:
        assert s.scalar(select(Score).where(Score.image_id == image_id)) is None
        assert s.scalar(select(Score).where(Score.image_id != image_id)) is not None


def test_a_counting_projects_queue_serves_whole_images(db, world):
    from app.services import projects
    with db.session_scope() as s:
        projects.set_annotation_mode(s, SYSTEM, world["project_id"], "points")
        saved = learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                                           {"unit": "region", "region": 128})
    assert saved["unit"] == "image" and saved["region"] == 128

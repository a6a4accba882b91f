"""Training jobs, model versions, activation rule, predictions and model export through the
services and routes, with tiny networks on drawn discs."""
import numpy as np
import pytest
from sqlalchemy import select

from app.errors import NotFound, PermissionDenied, ValidationError
from app.jobs.runner import run_job
from app.permissions import SYSTEM
from app.services import model_versions, prediction, projects, training
from app.tables import Image, Job, ModelVersion
from tests.conftest import actor
from tests.images_data import nuclei
from tests.training_runs import train


def test_who_may_train_and_bad_requests(db, config, world, lab):
    with db.session_scope() as s:
        with pytest.raises(PermissionDenied):
            training.start_training(s, actor(s, "annotator"), world["project_id"], {},
                                    lambda _id: None)
        with pytest.raises(ValidationError, match="epochs must be between"):
            training.start_training(s, actor(s, "owner"), world["project_id"], {"epochs": 0},
                                    lambda _id: None)
        empty = projects.create_project(s, actor(s, "owner"), "Empty", starting_model="none")
        with pytest.raises(ValidationError, match="Annotate at least one image"):
            training.start_training(s, actor(s, "owner"), empty.id, {}, lambda _id: None)


def test_train_activate_fine_tune_and_keep_the_better_model(db, config, world, lab):
    state, result, _ = train(db, config, world)
    assert state == "done" and result["activated"] and result["n_images"] == 5
    assert result["metrics"]["f1"] > 0.6
    # a barely trained model from scratch is worse: the good one stays active
    state, worse, _ = train(db, config, world, fine_tune=False, epochs=1)
    assert state == "done" and not worse["activated"] and "kept the active model" in worse["reason"]
    with db.session_scope() as s:
        versions = model_versions.list_versions(s, actor(s, "viewer"), world["project_id"])
        assert [(v.id, v.is_active) for v in versions] == [(2, False), (1, True)]
        assert len(versions[1].curve) >= 1 and versions[1].n_training_images == 5
        # the post-processing chosen after training is recorded and shown on the models page
        post = versions[1].settings["postprocess"]
        assert {"fg_threshold", "split", "min_size", "calibration"} <= set(post)
        from pages.models import _post_text
        assert _post_text(post).startswith(f"fg > {post['fg_threshold']:.1f}")
        # owners roll back or forward; reviewers may not
        with pytest.raises(PermissionDenied):
            model_versions.activate(s, actor(s, "reviewer"), 2)
        model_versions.activate(s, actor(s, "owner"), 2)
        assert model_versions.active_version(s, world["project_id"]).id == 2
        model_versions.activate(s, actor(s, "owner"), 1)
    state, tuned, _ = train(db, config, world, epochs=2)
    with db.session_scope() as s:
        assert s.get(ModelVersion, tuned["model_version_id"]).parent_id == 1


def test_failed_training_keeps_the_active_model(db, config, world, lab):
    train(db, config, world, epochs=2)
    with db.session_scope() as s:
        for image in s.scalars(select(Image)):
            lab.delete(image.blob_key)          # the pixels vanish from storage
    state, _, error = train(db, config, world, epochs=2)
    assert state == "failed" and error
    with db.session_scope() as s:
        assert model_versions.active_version(s, world["project_id"]).id == 1


def test_suggest_and_prediction_overlay(db, config, world, lab, login):
    train(db, config, world)
    with db.session_scope() as s:
        target = s.scalar(select(Image.id).where(Image.name == "d5.tif"))
        with pytest.raises(PermissionDenied):
            prediction.suggest(s, actor(s, "viewer"), lab, config, target)
    viewer = login("viewer")
    assert viewer.get(f"/api/images/{target}/prediction.png?model=1").status_code == 404
    with db.session_scope() as s:
        result = prediction.suggest(s, actor(s, "annotator"), lab, config, target)
    truth = nuclei(shape=(96, 96), n=8, seed=5)[1]
    assert abs(result.n_cells - (len(np.unique(truth)) - 1)) <= 2
    r = viewer.get(f"/api/images/{target}/prediction.png?model=1")
    assert r.status_code == 200 and r.mimetype == "image/png"
    # the suggestion becomes the annotator's draft: delete one cell, save -> model-corrected
    from app.services import annotations, drafts
    with db.session_scope() as s:
        anna = actor(s, "annotator")
        loaded = drafts.use_suggestion(s, anna, config, lab, target)
        assert loaded.n_cells == result.n_cells
        ys, xs = np.nonzero(result.labels == 1)
        label, path, _ = drafts.cell_at(s, anna, config, lab, target, xs[0] + 0.5, ys[0] + 0.5)
        assert label == 1 and path
        drafts.record_edit(s, anna, config, lab, target, {"op": "delete", "label": 1})
        saved = annotations.save(s, anna, config, lab, target)
    assert saved.n_cells == result.n_cells - 1 and saved.source == "corrected from model #1"


def test_project_prediction_job(db, config, world, lab):
    train(db, config, world)
    with db.session_scope() as s:
        info = prediction.start_project_prediction(s, actor(s, "annotator"), world["project_id"],
                                                    lambda _id: None)
    assert run_job(db, config, info.id) == "done"
    with db.session_scope() as s:
        counts = s.get(Job, info.id).result["counts"]
    assert len(counts) == 6 and all(n > 0 for n in counts.values())


def test_model_export_routes_and_corrupt_weights(db, config, world, lab, login):
    from models import load_model
    train(db, config, world, epochs=2)
    r = login("viewer").get("/api/models/1/export.onnx")
    assert r.status_code == 200 and len(r.data) > 1000
    assert login("outsider").get("/api/models/1/export.onnx").status_code == 404
    pt = login("viewer").get("/api/models/1/export.pt")
    path = config.data_dir / "m.pt"
    path.write_bytes(pt.data)
    assert load_model(path).in_channels == 1
    with db.session_scope() as s:
        mv = s.get(ModelVersion, 1)
        blob = lab.path(mv.weights_blob_key)
    blob.write_bytes(blob.read_bytes()[:-100] + b"x" * 100)
    model_versions._CACHE.clear()
    with db.session_scope() as s:
        with pytest.raises(ValidationError, match="checksum"):
            model_versions.load_version(s, SYSTEM, lab, 1)
        with pytest.raises(NotFound):
            model_versions.load_version(s, SYSTEM, lab, 999)

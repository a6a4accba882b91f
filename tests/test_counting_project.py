"""Issue 23: a points-only project trains a counting model through the job system
(`python -m app train`), which becomes the active model version; scoring ranks the pool by
count uncertainty; `python -m app predict PROJECT IMAGES --out DIR` writes counts.json and
counts.csv with a count, an interval and the points per image; the segmentation loaders
refuse a counting version with a clear message."""
import csv
import io
import json
import sys

import numpy as np
import pytest
import tifffile
from sqlalchemy import select

from app import cli
from app.db import Database
from app.errors import ValidationError
from app.permissions import SYSTEM
from app.services import counting, imports, model_versions, projects, users
from app.tables import Image, ModelVersion, Project, Score
from storage.blobstore import LocalBlobStore
from tests.images_data import discs, tiff

SMALL = {"steps": 120, "batch": 4, "patch": 64, "width": 8, "depth": 2, "sigma": 2.0}


@pytest.fixture
def counting_project(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(data))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    assert cli.main(["init-db"]) == 0
    db = Database(f"sqlite:///{data.resolve()}/cellloop.sqlite")
    store = LocalBlobStore(data / "blobs")
    with db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "boss", "boss-password")
        pid = projects.create_project(s, SYSTEM, "Marrow", owner_id=owner.id,
                                      starting_model="none").id
        projects.set_annotation_mode(s, SYSTEM, pid, "points")
        project = s.get(Project, pid)
        project.settings = {**project.settings, "counting": SMALL}
        items = []
        for k in range(5):
            img, centres = discs(k)
            items.append(imports.ImportFile(f"c{k}.tif", read=lambda img=img: tiff(img),
                                           points=tuple(tuple(c) for c in centres)))
        for k in range(5, 8):                               # the unannotated pool
            img, _ = discs(k, n=3 + k)
            items.append(imports.ImportFile(f"u{k}.tif", read=lambda img=img: tiff(img)))
        imports.import_files(s, SYSTEM, store, pid, items, 1 << 28)
    yield db, store, pid, tmp_path
    db.dispose()


def test_points_project_trains_scores_and_predicts_counts(counting_project, monkeypatch,
                                                          capsys):
    db, store, pid, tmp_path = counting_project
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.main(["train", "Marrow"]) == 0
    out = capsys.readouterr().out
    assert "Counting model #1: validation mean absolute count error" in out, out
    with db.session_scope() as s:
        mv = s.scalar(select(ModelVersion))
        assert counting.is_counting(mv) and mv.is_active
        assert mv.metrics["n_images"] == 1 and mv.metrics["mae"] < 1.5, mv.metrics
        # the interval is calibrated on the validation image (one unit: too few for 90%)
        interval = mv.metrics["interval"]
        assert (interval["units"], interval["guaranteed"]) == (1, False), interval
        assert interval["low"] <= 0 <= interval["high"]
        mv_metrics = dict(mv.metrics)
        with pytest.raises(ValidationError, match="is a counting model"):
            model_versions.load(store, mv)

    assert cli.main(["score", "Marrow"]) == 0
    with db.session_scope() as s:
        scored = s.scalars(select(Score)).all()
        assert len(scored) == 3 and all(sc.value >= 0 for sc in scored)

    new = tmp_path / "new"
    new.mkdir()
    img, centres = discs(42, n=5)
    tifffile.imwrite(new / "fresh.tif", img)
    capsys.readouterr()
    assert cli.main(["predict", "Marrow", str(new), "--out", str(tmp_path / "pred")]) == 0
    counts = json.loads((tmp_path / "pred" / "counts.json").read_text())
    fresh = counts["fresh.tif"]
    assert abs(fresh["count"] - 5) < 1.0, fresh
    assert fresh["low"] <= fresh["count"] <= fresh["high"]
    found = np.array(fresh["points"], float).reshape(-1, 2)     # [x, y]
    assert abs(len(found) - 5) <= 1, fresh
    truth = np.array([c[:2] for c in centres])
    nearest = np.sqrt(((truth[:, None] - found[None]) ** 2).sum(-1)).min(1)
    assert (nearest <= 3).all(), (found, truth)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "counts.csv")))
    assert rows[0]["image"] == "fresh.tif" and float(rows[0]["count"]) == fresh["count"]
    assert (tmp_path / "pred" / "fresh_overlay.png").exists()
    assert not (tmp_path / "pred" / "fresh_masks.tif").exists()

    # the Python API gives the same records from the model file
    import models
    with db.session_scope() as s:
        key = s.scalar(select(ModelVersion.weights_blob_key))
    (tmp_path / "counter.cellloop").write_bytes(store.get_bytes(key))
    [api] = models.count([new / "fresh.tif"], tmp_path / "counter.cellloop")
    assert api == {"image": "fresh.tif", **fresh}
    # export-model writes the same file (and a card), and TorchScript / ONNX exports (with
    # their cards) that count the same: no MC samples there, so the interval is the
    # calibrated one the card carries
    assert cli.main(["export-model", "1", str(tmp_path / "exported"), "--format",
                     "cellloop,torchscript,onnx"]) == 0
    [exported] = (tmp_path / "exported").glob("*.cellloop")
    assert exported.read_bytes() == store.get_bytes(key)
    [pt] = (tmp_path / "exported").glob("*.pt")
    [onnx] = (tmp_path / "exported").glob("*.onnx")
    for path in (pt, onnx):
        card = json.loads(path.with_suffix(".json").read_text())
        assert card["kind"] == "counting" and card["version"] == "project 1 model 1"
        assert card["metrics"]["mae"] == pytest.approx(mv_metrics["mae"])
        [rec] = models.count([new / "fresh.tif"], path)
        assert rec["count"] == pytest.approx(fresh["count"], abs=0.1), (path.name, rec)
        assert card["interval"] == interval
        assert rec["low"] == pytest.approx(rec["count"] * (1 + interval["low"]), abs=0.01)
        assert rec["high"] == pytest.approx(rec["count"] * (1 + interval["high"]), abs=0.01)
        assert abs(rec["n_points"] - fresh["n_points"]) <= 1, (path.name, rec)

    # the workspace's suggestion on an unannotated image is the model's points
    from app.config import Config
    from app.services import drafts, prediction, project_counts
    config = Config.from_env()
    with db.session_scope() as s:
        u5 = s.scalar(select(Image.id).where(Image.name == "u5.tif"))
        shown = drafts.use_suggestion(s, users.find_user(s, "boss"), config, store, u5)
        assert abs(shown.n_points - 8) <= 1, shown
    # the predict job keeps each unannotated image's count for the project page, where
    # annotated images show their clicks; groups come from the names (c… and u…)
    done = prediction.predict_project(db, store, config, pid, lambda *a, **k: None,
                                      lambda: False)
    # the result names where it ran (no GPU here: the CPU, in fp32 or bf16)
    assert done["engine"].startswith("cpu/"), done
    with db.session_scope() as s:
        rows = project_counts.project_counts(s, SYSTEM, config, pid, r"^(?P<group>[a-z])")
    by_name = {r.name: r for r in rows}
    assert by_name["c0.tif"].annotated == 6 and by_name["c0.tif"].source == "annotation"
    u7 = by_name["u7.tif"]
    assert u7.source == "model" and abs(u7.model - 10) < 1.5 and u7.low <= u7.model <= u7.high
    summary = {g["group"]: g for g in project_counts.group_summary(rows)}
    assert summary["c"]["n_images"] == 5 and summary["c"]["mean"] == 6.0
    assert summary["u"]["n_counted"] == 3
    table = list(csv.DictReader(io.StringIO(project_counts.counts_csv(rows).decode())))
    assert [r["group"] for r in table] == ["c"] * 5 + ["u"] * 3


def test_training_a_points_project_without_clicks_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    cli.main(["init-db"])
    db = Database(f"sqlite:///{(tmp_path / 'data').resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "boss", "boss-password")
        pid = projects.create_project(s, SYSTEM, "Empty", owner_id=owner.id,
                                      starting_model="none").id
        projects.set_annotation_mode(s, SYSTEM, pid, "points")
    db.dispose()
    capsys.readouterr()
    assert cli.main(["train", "Empty"]) != 0
    assert "Annotate at least one image before training" in capsys.readouterr().err


def test_a_counting_training_stops_when_its_time_budget_is_spent(counting_project):
    db, store, pid, _tmp = counting_project
    with db.session_scope() as s:
        project = s.get(Project, pid)
        project.settings = {**project.settings, "counting": {**SMALL, "steps": 100_000}}
    seen = []
    result = counting.train_counting_project(
        db, store, pid, None, lambda fraction, message, *_: seen.append(message),
        lambda: False, max_minutes=0.02)            # 1.2 s: 1 s of steps (the floor)
    with db.session_scope() as s:
        mv = s.get(ModelVersion, result["model_version_id"])
        assert 1 <= mv.metrics["steps"] < 100_000 and mv.metrics["steps_planned"] == 100_000
        assert mv.settings["steps"] == mv.metrics["steps"]
    assert any("of 100000" in m for m in seen)
    assert f"Trained {mv.metrics['steps']} steps" in result["outcome"]


def test_the_projects_counting_input_is_what_the_next_model_reads(counting_project):
    """The project's counting input mapping (settings["counting"]["input_mapping"]: the
    colours, or the nuclear stain) becomes the trained model's; after it is changed back, the
    next model starts from scratch on the colours instead of fine-tuning (and so inheriting
    the input of) the active one, and is not recorded as fine-tuned from it."""
    db, store, pid, _tmp = counting_project

    def train() -> dict:
        result = counting.train_counting_project(db, store, pid, None, lambda *_a: None,
                                                 lambda: False)
        with db.session_scope() as s:
            mv = s.get(ModelVersion, result["model_version_id"])
            meta = counting.load_counter(store, mv).meta
            assert mv.settings["input_mapping"] == meta.get("input_mapping")
            return {**meta, "fine_tuned_from": mv.settings["fine_tuned_from"]}
    with db.session_scope() as s:
        project = s.get(Project, pid)
        project.settings = {**project.settings, "counting": {
            **SMALL, "steps": 20, "input_mapping": "nucleus-contrast-v1"}}
    assert train().get("input_mapping") == "nucleus-contrast-v1"
    with db.session_scope() as s:
        project = s.get(Project, pid)
        project.settings = {**project.settings, "counting": {
            **SMALL, "steps": 20, "input_mapping": None}}      # the channels, as chosen
    second = train()
    assert second.get("input_mapping") is None and second["fine_tuned_from"] is None


def test_a_project_can_count_with_a_centre_heat_map_and_switching_starts_afresh(
        counting_project):
    """settings["counting"]["target"] = "centres" trains a heat-map model (recorded on the
    version, so its export links say what it outputs); a density model is not fine-tuned into
    one, but the next centres model is fine-tuned from the active centres model."""
    db, store, pid, _tmp = counting_project

    def train(**counting_settings) -> tuple[dict, dict]:
        return train_with(db, store, pid, counting_settings)
    meta, settings = train(target="density")
    assert meta["density"]["target"] == "density" and settings["target"] == "density"
    meta, settings = train(target="centres")
    assert meta["density"]["target"] == "centres" and settings["target"] == "centres"
    assert meta["density"]["scale"] == 1.0 and settings["fine_tuned_from"] is None
    assert meta["peaks"]["select"] == "threshold"
    with db.session_scope() as s:          # the owner rolls forward to the centres model
        centres_id = max(mv.id for mv in s.scalars(select(ModelVersion).where(
            ModelVersion.project_id == pid)))
        model_versions.activate(s, SYSTEM, centres_id)
    meta, settings = train(target="centres")
    assert meta["density"]["target"] == "centres" and settings["fine_tuned_from"] == centres_id


def test_a_project_with_a_density_model_keeps_training_densities_until_told(
        counting_project):
    """A project from before heat-maps became the default (settings without a target, an
    active density model) trains its next model as a density, fine-tuned from the active
    one, instead of switching kind and starting from scratch."""
    db, store, pid, _tmp = counting_project

    def train(**counting_settings) -> tuple[dict, dict]:
        return train_with(db, store, pid, counting_settings)
    train(target="density")
    with db.session_scope() as s:
        density_id = model_versions.active_version(s, pid).id
    meta, settings = train()                        # the settings name no target
    assert meta["density"]["target"] == "density"
    assert settings["fine_tuned_from"] == density_id
    meta, settings = train(target="centres")        # the owner switches
    assert meta["density"]["target"] == "centres" and settings["fine_tuned_from"] is None


def train_with(db, store, pid: int, counting_settings: dict) -> tuple[dict, dict]:
    """Set the project's counting settings (SMALL, 20 steps, and these), train, and give
    the new model's meta and its version's settings."""
    with db.session_scope() as s:
        project = s.get(Project, pid)
        project.settings = {**project.settings, "counting": {
            **SMALL, "steps": 20, **counting_settings}}
    result = counting.train_counting_project(db, store, pid, None, lambda *_a: None,
                                             lambda: False)
    with db.session_scope() as s:
        mv = s.get(ModelVersion, result["model_version_id"])
        return counting.load_counter(store, mv).meta, dict(mv.settings)

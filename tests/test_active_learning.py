"""Active learning in the app: scoring jobs write Score rows the queue reads, the strategy
setting rescores, K accepted annotations start a training job that rescores when it ends
(learning_loop), heat maps, simulations (CLI on a folder; a cancelled one ends cancelled)."""
import json

import pytest
import tifffile
from sqlalchemy import select

from app.cli import main as cli_main
from app.errors import PermissionDenied, ValidationError
from app.jobs.rows import create_job_row
from app.jobs.runner import run_job
from app.services import (annotations, drafts, learning_loop, leases, projects, scoring,
                          simulation)
from app.services.project_settings import TrainingSettings
from app.tables import Job, Project, Score
from tests.conftest import actor
from tests.images_data import nuclei
from tests.training_runs import train


def inline(db, config):
    """Start follow-up jobs in this process, as a worker would."""
    def send(job_id):
        run_job(db, config, job_id, send=send)
    return send


def score_now(db, config, world):
    with db.session_scope() as s:
        info = scoring.start_scoring(s, actor(s, "reviewer"), world["project_id"],
                                     lambda _id: None)
    assert run_job(db, config, info.id) == "done"
    with db.session_scope() as s:
        return s.get(Job, info.id).result


def add_unannotated(db, config, lab, world, n=3):  # noqa: F811
    from app.permissions import SYSTEM
    from app.services import imports
    from tests.images_data import tiff
    items = []
    for k in range(n):
        img, _ = nuclei(shape=(96, 96), n=8 + 3 * k, seed=40 + k)
        items.append(imports.ImportFile(f"pool{k}.tif", read=lambda img=img: tiff(img)))
    with db.session_scope() as s:
        imports.import_files(s, SYSTEM, lab, world["project_id"], items, 1 << 28)


def test_scoring_ranks_the_pool_and_the_queue_follows(db, config, world, lab, login):  # noqa: F811
    with db.session_scope() as s:
        with pytest.raises(ValidationError, match="Train a model first"):
            scoring.start_scoring(s, actor(s, "reviewer"), world["project_id"], lambda _id: None)
    train(db, config, world)
    add_unannotated(db, config, lab, world)
    with db.session_scope() as s:
        owner = actor(s, "owner")
        # a new project ranks with stratified random, fewer cells first (issue 21's
        # benchmark); this one is switched to MC-dropout entropy
        assert learning_loop.loop_settings(s.get(Project, world["project_id"])).strategy \
            == "stratified-cheap"
        learning_loop.set_settings(s, owner, world["project_id"], {"strategy": "entropy"})
    result = score_now(db, config, world)
    assert result["strategy"] == "entropy" and result["n_images"] == 4
    with db.session_scope() as s:
        rows = s.scalars(select(Score).where(Score.strategy == "entropy")).all()
        assert len(rows) == 4 and all(r.rank is None for r in rows)
        best = max(rows, key=lambda r: r.value).image_id
        items = scoring.queue(s, actor(s, "viewer"), world["project_id"])
        assert [i.image_id for i in items][0] == best
        assert items[0].score == pytest.approx(max(r.value for r in rows))
        # the annotation queue hands out the most uncertain image first
        assert leases.next_image(s, actor(s, "annotator"), config, world["project_id"]) == best
    png = login("viewer").get(f"/api/images/{best}/uncertainty.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert login("outsider").get(f"/api/images/{best}/uncertainty.png").status_code == 404


def test_strategy_setting_rescores_and_checks_roles(db, config, world, lab):  # noqa: F811
    train(db, config, world)
    add_unannotated(db, config, lab, world, n=4)
    sent = []
    with db.session_scope() as s:
        with pytest.raises(PermissionDenied):
            learning_loop.set_settings(s, actor(s, "reviewer"), world["project_id"],
                                 {"strategy": "bald"}, sent.append)
        with pytest.raises(ValidationError):
            learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                                 {"strategy": "psychic"}, sent.append)
        with pytest.raises(ValidationError):
            learning_loop.set_settings(s, actor(s, "owner"), world["project_id"], {"passes": 1})
        saved = learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                                     {"strategy": "diversity", "batch": 2}, sent.append)
        assert saved["strategy"] == "diversity" and len(sent) == 1
    assert run_job(db, config, sent[0]) == "done"
    with db.session_scope() as s:
        rows = s.scalars(select(Score).where(Score.strategy == "diversity")).all()
        ranked = sorted((r for r in rows if r.rank is not None), key=lambda r: r.rank)
        # the batch of 2 is stored as a pick order; the values stay the strategy's own
        assert len(rows) == 5 and [r.rank for r in ranked] == [1, 2]
        assert all(0 <= r.value < 100 for r in rows)
        # the queue serves the picked images first, in their order
        items = scoring.queue(s, actor(s, "viewer"), world["project_id"])
        assert [i.image_id for i in items][:2] == [r.image_id for r in ranked]


def test_ranking_strategies_order_the_whole_pool(db, config, world, lab):  # noqa: F811
    """stratified, stratified-cheap, power and coverage store their pick order for every
    pool image (up to scoring.RANKED); the queue serves exactly that order."""
    train(db, config, world)
    add_unannotated(db, config, lab, world, n=4)
    for name in ("stratified", "stratified-cheap", "power", "coverage"):
        with db.session_scope() as s:
            learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                                       {"strategy": name, "batch": 1})
        assert score_now(db, config, world)["strategy"] == name
        with db.session_scope() as s:
            rows = s.scalars(select(Score).where(Score.strategy == name)).all()
            assert len(rows) == 5 and sorted(r.rank for r in rows) == [1, 2, 3, 4, 5]
            order = [r.image_id for r in sorted(rows, key=lambda r: r.rank)]
            items = scoring.queue(s, actor(s, "viewer"), world["project_id"])
            assert [i.image_id for i in items] == order


def test_random_strategy_needs_no_model_weights(db, config, world, lab):  # noqa: F811
    train(db, config, world)
    with db.session_scope() as s:
        learning_loop.set_settings(s, actor(s, "owner"), world["project_id"], {"strategy": "random"})
    assert score_now(db, config, world)["strategy"] == "random"


def test_k_accepted_annotations_retrain_and_rescore(db, config, world, lab):  # noqa: F811
    """Accepted -> retrain -> rescore, on a case built to activate: the project has no model
    yet, so the retrained model is its first and is always activated."""
    add_unannotated(db, config, lab, world, n=2)
    with db.session_scope() as s:
        learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                                   {"retrain_after": 1})
        pool = scoring.pool_ids(s, world["project_id"])
        anna, rita = actor(s, "annotator"), actor(s, "reviewer")
        target = pool[0]
        drafts.record_edit(s, anna, config, lab, target,
                           {"op": "add", "shape": {"type": "rect", "x0": 10, "y0": 10,
                                                   "x1": 20, "y1": 20}})
        annotations.save(s, anna, config, lab, target)
        sent = []
        annotations.review(s, rita, target, accept=True, enqueue=sent.append)
        rita_id = rita.id
    assert len(sent) == 1
    with db.session_scope() as s:
        job = s.get(Job, sent[0])
        assert job.kind == "train" and job.params["rescore"] is True
    assert run_job(db, config, sent[0], send=inline(db, config)) == "done"
    with db.session_scope() as s:
        result = s.get(Job, sent[0]).result
        assert result["activated"] and result["reason"] == "first model of the project"
        follow = s.get(Job, result["scoring_job"])
        # submitted through jobs.submit_job as the user who started the training
        assert (follow.kind, follow.state, follow.user_id) == ("score", "done", rita_id)
        assert follow.result["model_version_id"] == result["model_version_id"]
        scored = s.scalars(select(Score.image_id).where(
            Score.model_version_id == result["model_version_id"])).all()
        assert sorted(scored) == sorted(scoring.pool_ids(s, world["project_id"]))
        assert len(scored) == 2


def test_after_training_records_a_busy_scoring_job_and_skips_a_kept_model(db, world):
    with db.session_scope() as s:
        busy, created = create_job_row(s, world["project_id"], world["reviewer"], "score", {})
        assert created
    sent = []
    with db.session_scope() as s:
        out = learning_loop.after_training(s, world["project_id"], world["reviewer"], True,
                                           sent.append)
        assert out["scoring_job"] == busy and "already queued or running" in out["scoring_note"]
        kept = learning_loop.after_training(s, world["project_id"], world["reviewer"], False,
                                            sent.append)
        assert kept["scoring_job"] is None and "not activated" in kept["scoring_note"]
    assert sent == []


def test_simulate_cli_on_a_folder(tmp_path, config, monkeypatch, capsys):
    data = tmp_path / "set"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for k in range(10):
        img, lab_ = nuclei(shape=(64, 64), n=6, seed=200 + k)
        tifffile.imwrite(data / "images" / f"s{k}.tif", img)
        tifffile.imwrite(data / "labels" / f"s{k}.tif", lab_)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(config.data_dir))
    monkeypatch.setattr("app.services.project_settings.SIMULATION_TRAINING",
                        TrainingSettings(width=8, depth=2, patch=64, batch=4, epochs=2,
                                         steps_per_epoch=4, patience=2))
    out = tmp_path / "out"
    code = cli_main(["simulate", str(data), "--strategies", "random,bald", "--initial", "2",
                     "--batch", "2", "--rounds", "2", "--seeds", "2", "--test-fraction", "0.2",
                     "--passes", "3", "--out", str(out)])
    assert code == 0
    lines = (out / "curves.csv").read_text().splitlines()
    assert lines[0] == "strategy,seed,round,n_labelled,cost,f1,dice,seconds"
    assert len(lines) == 1 + 2 * 2 * 3
    summary = json.loads((out / "summary.json").read_text())
    assert {s["strategy"] for s in summary["strategies"]} == {"random", "bald"}
    assert "plotly" in (out / "curves.html").read_text()[:5000].lower()
    assert "bald" in capsys.readouterr().out
    bad = cli_main(["simulate", str(data), "--initial", "9", "--out", str(out)])
    assert bad == 2


def test_simulate_cli_in_regions_from_the_builtin_model_counts_corrections(
        tmp_path, config, monkeypatch, capsys):
    data = tmp_path / "set"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for k in range(6):
        img, lab_ = nuclei(shape=(96, 96), n=8, seed=400 + k)
        tifffile.imwrite(data / "images" / f"s{k}.tif", img)
        tifffile.imwrite(data / "labels" / f"s{k}.tif", lab_)
    (data / "groups.csv").write_text("image,group\n" + "".join(
        f"s{k},{'dim' if k % 2 else 'bright'}\n" for k in range(6)))
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(config.data_dir))
    monkeypatch.setattr("app.services.project_settings.SIMULATION_TRAINING",
                        TrainingSettings(width=8, depth=2, patch=64, batch=4, epochs=1,
                                         steps_per_epoch=3, patience=2))
    out = tmp_path / "out"
    code = cli_main(["simulate", str(data), "--strategies", "random,stratified", "--initial",
                     "2", "--batch", "2", "--rounds", "1", "--seeds", "1", "--test-fraction",
                     "0.34", "--passes", "2", "--unit", "region", "--region-size", "48",
                     "--start", "builtin", "--cost", "corrections", "--groups",
                     str(data / "groups.csv"), "--out", str(out)])
    assert code == 0
    header = (out / "curves.csv").read_text().splitlines()[0].split(",")
    assert header[4] == "cost" and header[-3:] == ["macro_f1", "f1_bright", "f1_dim"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"]["unit"] == "region" and summary["plan"]["start"] == "builtin"
    assert all(s["metric"] == "macro_f1" and "cost_to_target" in s
               for s in summary["strategies"])
    assert "cost to target" in (out / "summary.md").read_text()
    assert "from builtin, cost in corrections" in capsys.readouterr().out
    bad = cli_main(["simulate", str(data), "--groups", str(tmp_path / "none.csv"),
                    "--out", str(out)])
    assert bad == 2


def test_ensemble_strategy_trains_members_and_scores(db, config, world, lab):  # noqa: F811
    from app.services import model_versions
    from app.tables import ModelVersion
    with db.session_scope() as s:
        learning_loop.set_settings(s, actor(s, "owner"), world["project_id"],
                             {"strategy": "ensemble", "ensemble_size": 2})
    state, result, _ = train(db, config, world, epochs=4)
    assert state == "done" and len(result["ensemble_members"]) == 1
    member = result["ensemble_members"][0]
    with db.session_scope() as s:
        assert s.get(ModelVersion, member).settings["ensemble_of"] == result["model_version_id"]
        listed = model_versions.list_versions(s, actor(s, "owner"), world["project_id"])
        assert member not in [v.id for v in listed]
        with pytest.raises(ValidationError, match="ensemble member"):
            model_versions.activate(s, actor(s, "owner"), member)
    result = score_now(db, config, world)
    assert result["strategy"] == "ensemble" and result["n_images"] == 1
    with db.session_scope() as s:
        rows = s.scalars(select(Score).where(Score.strategy == "ensemble")).all()
        assert [r.model_version_id for r in rows] == [result["model_version_id"]]
        assert s.get(ModelVersion, result["model_version_id"]).is_active


def test_a_cancelled_simulation_ends_cancelled(db, config, world, lab, monkeypatch):  # noqa: F811
    """The cancel flag set while a round trains: the job ends "cancelled", never "done",
    and writes no summary."""
    import models.simulation as sim_models
    monkeypatch.setattr("app.services.project_settings.SIMULATION_TRAINING",
                        TrainingSettings(width=8, depth=2, patch=64, batch=2, epochs=1,
                                         steps_per_epoch=2, patience=1))
    with db.session_scope() as s:
        info = simulation.start_simulation(
            s, actor(s, "reviewer"), world["project_id"],
            {"strategies": ["random"], "initial": 2, "batch": 1, "rounds": 1, "seeds": 1,
             "test_fraction": 0.25}, lambda _id: None)
    trained = sim_models._train

    def cancel_while_training(*args, **kwargs):
        with db.session_scope() as s:
            s.get(Job, info.id).cancel_requested = True
        return trained(*args, **kwargs)

    monkeypatch.setattr(sim_models, "_train", cancel_while_training)
    assert run_job(db, config, info.id) == "cancelled"
    with db.session_scope() as s:
        assert s.get(Job, info.id).state == "cancelled"
    assert not (config.data_dir / "simulations" / f"job-{info.id}" / "summary.json").exists()


def test_a_project_simulation_fine_tunes_its_rounds_as_the_project_does(
        db, config, world, lab, monkeypatch):  # noqa: F811
    """The simulation of a project's loop trains each round with the project's pull and
    learning rate (a project that turned the pull off simulates without it)."""
    import models.simulation as sim_models
    monkeypatch.setattr("app.services.project_settings.SIMULATION_TRAINING",
                        TrainingSettings(width=8, depth=2, patch=64, batch=2, epochs=1,
                                         steps_per_epoch=2, patience=1, lr=0.01, pull=0.0))
    used = []
    trained = sim_models._train

    def recording(images, labels, regions, cfg, *args, **kwargs):
        used.append((cfg.lr, cfg.pull, cfg.width, cfg.steps_per_epoch))
        return trained(images, labels, regions, cfg, *args, **kwargs)

    monkeypatch.setattr(sim_models, "_train", recording)
    for changes, expected in (({}, (2e-3, 50.0)), ({"pull": "0", "lr": "0.001"}, (1e-3, 0.0))):
        with db.session_scope() as s:
            if changes:
                projects.set_training_settings(s, actor(s, "owner"), world["project_id"],
                                               changes)
            info = simulation.start_simulation(
                s, actor(s, "reviewer"), world["project_id"],
                {"strategies": ["random"], "initial": 2, "batch": 1, "rounds": 1, "seeds": 1,
                 "test_fraction": 0.25}, lambda _id: None)
        used.clear()
        assert run_job(db, config, info.id) == "done"
        assert used and {u[:2] for u in used} == {expected}
        assert {u[2:] for u in used} == {(8, 2)}     # the simulation's own small budget

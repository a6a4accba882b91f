"""An import into a project with a model ranks the pool at once when the project's strategy
needs no model (`learning_loop.after_import`), so the first image or region served is the
strategy's pick; the demo's queue is ranked before the server starts."""
import pytest
from sqlalchemy import select

from app.jobs.rows import create_job_row
from app.jobs.runner import run_job
from app.permissions import SYSTEM
from app.services import imports, learning_loop, projects, starting_models
from app.tables import Image, Job, Score
from tests.conftest import actor
from tests.images_data import nuclei, tiff
from tests.starting_model_data import write_standin


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """The built-in model folder replaced by a stand-in (a hand-set threshold U-Net)."""
    monkeypatch.setattr(starting_models, "BUILTIN_DIR", tmp_path / "pretrained")
    write_standin(tmp_path / "pretrained")


def _project(db, store, start="builtin") -> int:
    with db.session_scope() as s:
        pid = projects.create_project(s, actor(s, "owner"), f"Ranked {start}", store=store,
                                      starting_model=start).id
        for role in ("annotator", "reviewer"):
            projects.set_member(s, SYSTEM, pid, role, role)
        files = [imports.ImportFile(f"cells{k}.tif", read=lambda k=k: tiff(
            nuclei((300, 300) if k else (96, 96), n=6, seed=k)[0])) for k in range(3)]
        imports.import_files(s, SYSTEM, store, pid, files, 1 << 28)
    return pid


def test_an_import_ranks_the_regions_of_a_project_started_from_a_model(db, config, world,
                                                                       store, standin):
    pid = _project(db, store)
    sent = []
    with db.session_scope() as s:
        out = learning_loop.after_import(s, pid, world["owner"], 3, sent.append)
    assert out == {"scoring_job": sent[0]}
    assert run_job(db, config, sent[0]) == "done"
    with db.session_scope() as s:
        rows = s.execute(select(Score.strategy, Score.rank, Score.region).join(
            Image, Image.id == Score.image_id).where(Image.project_id == pid)).all()
        assert len(rows) == 3 and {r.strategy for r in rows} == {"stratified"}
        # each image keeps the pick order of its best region among all 9 regions
        ranks = sorted(r.rank for r in rows)
        assert ranks[0] == 1 and len(set(ranks)) == 3 and ranks[-1] <= 9
        # the 300 px images are served one 256 px region at a time, the 96 px one whole
        assert sorted(r.region[2] - r.region[0] for r in rows) == [96, 256, 256]


def test_what_is_not_ranked_after_an_import_and_why(db, config, world, store, standin):
    pid = _project(db, store)
    plain = _project(db, store, start="none")
    sent = []
    with db.session_scope() as s:
        after = learning_loop.after_import
        assert after(s, plain, world["owner"], 3, sent.append) == {}     # no model
        assert after(s, pid, world["owner"], 0, sent.append) == {}       # nothing new
        # a strategy that runs the model waits for the next retraining
        learning_loop.set_settings(s, actor(s, "owner"), pid, {"strategy": "bald"})
        assert after(s, pid, world["owner"], 3, sent.append) == {}
        learning_loop.set_settings(s, actor(s, "owner"), pid, {"strategy": "stratified"})
    assert sent == []
    # a scoring job still queued reads the pool when it starts: it ranks the new images
    with db.session_scope() as s:
        busy, _created = create_job_row(s, pid, world["reviewer"], "score", {})
    with db.session_scope() as s:
        assert learning_loop.after_import(s, pid, world["reviewer"], 3, sent.append) == {
            "scoring_note": f"Scoring job #{busy} is queued and ranks the new images too."}
        # one already running read the pool before them (one scoring job per project)
        s.get(Job, busy).state = "running"
        s.flush()
        assert learning_loop.after_import(s, pid, world["reviewer"], 3, sent.append) == {
            "scoring_note": f"Scoring job #{busy} was running already: the new images are "
                            "ranked at the next scoring."}
        s.get(Job, busy).state = "done"
    assert sent == []
    # a training does not stand in (one started on the Models page rescores nothing): the
    # scoring job is queued behind it
    with db.session_scope() as s:
        training, _created = create_job_row(s, pid, world["reviewer"], "train", {})
    with db.session_scope() as s:
        out = learning_loop.after_import(s, pid, world["reviewer"], 3, sent.append)
    assert out == {"scoring_job": sent[0]} and sent[0] != training
    with db.session_scope() as s:
        assert (s.get(Job, sent[0]).user_id, s.get(Job, sent[0]).kind) == (
            world["reviewer"], "score")


def test_an_annotators_upload_is_ranked_as_the_system(db, config, world, store, standin):
    """Annotators may import but not start scoring (a training action): the ranking the
    owners chose runs anyway, as the system."""
    pid = _project(db, store)
    sent = []
    with db.session_scope() as s:
        out = learning_loop.after_import(s, pid, world["annotator"], 3, sent.append)
    assert out == {"scoring_job": sent[0]}
    with db.session_scope() as s:
        job = s.get(Job, sent[0])
        assert (job.kind, job.user_id) == ("score", None)
    assert run_job(db, config, sent[0]) == "done"


def test_the_demo_queue_is_ranked_by_region_before_the_server_starts(tmp_path, monkeypatch,
                                                                     capsys):
    from app import cli
    from app.db import Database
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    assert cli.main(["init-db"]) == 0
    assert cli.main(["demo"]) == 0
    assert "demo queue ranked (job 1: done)" in capsys.readouterr().out
    db = Database(f"sqlite:///{(tmp_path / 'data').resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        rows = s.execute(select(Score.strategy, Score.rank, Score.region)).all()
        # the 8 demo images without labels, each with its best 256 px region
        assert len(rows) == 8 and {r.strategy for r in rows} == {"stratified"}
        assert all(r.region[2] - r.region[0] == 256 for r in rows)
        assert sorted(r.rank for r in rows)[0] == 1
    assert cli.main(["demo"]) == 0                  # again: nothing new, nothing to rank
    assert "demo queue ranked" not in capsys.readouterr().out


def test_a_cli_import_ranks_the_new_images_in_its_own_process(tmp_path, monkeypatch, capsys):
    import io
    import sys

    import tifffile

    from app import cli
    from app.db import Database
    folder = tmp_path / "plates"
    folder.mkdir()
    for k in range(2):
        tifffile.imwrite(folder / f"p{k}.tif", nuclei((300, 300), n=6, seed=k)[0])
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    monkeypatch.setattr(sys, "stdin", io.StringIO("boss-password\n"))
    assert cli.main(["init-db"]) == 0
    assert cli.main(["create-user", "boss"]) == 0
    assert cli.main(["create-project", "Plates", "--owner", "boss"]) == 0    # built-in start
    assert cli.main(["create-project", "By hand", "--owner", "boss",
                     "--starting-model", "none"]) == 0
    assert cli.main(["import", "Plates", str(folder), "--quiet"]) == 0
    assert cli.main(["import", "By hand", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("ranked the queue (job 1: done)") == 1 and "job 2" not in out
    db = Database(f"sqlite:///{(tmp_path / 'data').resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        rows = s.execute(select(Image.project_id, Score.strategy, Score.region).join(
            Image, Image.id == Score.image_id)).all()
        assert len(rows) == 2 and {(r.project_id, r.strategy) for r in rows} == {
            (1, "stratified")} and all(r.region[2] - r.region[0] == 256 for r in rows)


def test_a_browser_upload_ranks_the_queue_and_the_outcome_says_so(db, world, store, standin,
                                                                 config):
    """Small uploads are imported in the request (no import job): they are ranked too."""
    from app.services import jobs, uploads
    pid = _project(db, store)
    sent = []
    with db.session_scope() as s:
        outcome = uploads.upload(s, actor(s, "annotator"), store, config, pid,
                                 [("new.tif", tiff(nuclei((300, 300), n=5, seed=9)[0]))],
                                 sent.append)
    assert [r.status for r in outcome.results] == ["imported"]
    assert outcome.ranking == {"scoring_job": sent[0]}
    assert jobs.ranking_sentence(outcome.ranking) == (
        f" The queue is being ranked (job #{sent[0]}).")
    # an import job's outcome line names it the same way (not as a count)
    line = jobs.outcome("import", {"imported": 1, "duplicate": 0, "rejected": 0,
                                   "scoring_job": 7, "prediction_job": 6})
    assert line == ("1 imported, 0 duplicates, 0 rejected. The model's suggestions for the "
                    "new images are being predicted (job #6). The queue is being ranked "
                    "(job #7).")
    assert jobs.outcome("import", {"imported": 1, "scoring_note": "Not now."}).endswith(
        "1 imported. Not now.")

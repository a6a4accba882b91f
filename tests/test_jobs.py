"""Job lifecycle: queued -> running -> done/failed/cancelled, stale recovery, and a real
Celery worker on the SQLite transport."""
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from app.deps import Deps
from app.errors import Conflict, PermissionDenied
from app.jobs import handlers
from app.jobs.builtin import staging_dir
import datetime as dt

from app.jobs.kinds import JobKind
from app.jobs.rows import create_job_row, reap_lost_jobs
from app.jobs.runner import run_job
from app.services import jobs
from app.tables import Image, Job
from tests.conftest import actor

ROOT = Path(__file__).resolve().parent.parent


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (32, 40), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def stage(config, token: str, files: dict[str, bytes]) -> str:
    folder = staging_dir(config, token)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return token


@pytest.fixture
def kind():
    """Register a test-only job kind and its handler for one test: kind(name, handler)."""
    added = []

    def register(name, handler):
        handlers.register(JobKind(name, action="train"), handler)
        added.append(name)
    yield register
    for name in added:
        handlers.unregister(name)


def add_job(db, world, kind="import", params=None, state="queued", worker=""):
    with db.session_scope() as s:
        job = Job(kind=kind, project_id=world["project_id"], user_id=world["annotator"],
                  params=params or {}, state=state, worker=worker)
        s.add(job)
        s.flush()
        return job.id


def job_row(db, job_id) -> Job:
    with db.session_scope() as s:
        return s.get(Job, job_id)


def test_import_job_runs_to_done(db, config, world):
    token = stage(config, "a" * 32, {"one.png": png_bytes(1), "two.png": png_bytes(2),
                                     "notes.txt": b"hello"})
    job_id = add_job(db, world, params={"staging": token})
    assert run_job(db, config, job_id, worker="w1") == "done"
    job = job_row(db, job_id)
    assert job.progress == 1.0 and job.started_at and job.finished_at
    assert (job.result["imported"], job.result["rejected"]) == (2, 1)
    assert "not a supported image type" in job.result["files"][0]["message"]
    assert not staging_dir(config, token).exists()


def test_failure_is_recorded(db, config, world):
    job_id = add_job(db, world, params={"staging": "b" * 32})
    assert run_job(db, config, job_id) == "failed"
    job = job_row(db, job_id)
    assert "staging folder missing" in job.error and job.finished_at is not None


def test_unknown_kind_fails_clearly(db, config, world):
    job_id = add_job(db, world, kind="teleport")
    assert run_job(db, config, job_id) == "failed"
    assert "Unknown job kind 'teleport'" in job_row(db, job_id).error


def test_cancel_between_steps(db, config, world, kind):
    steps = []

    def slow_steps(ctx, n):
        for i in range(n):
            steps.append(i)
            if i == 2:
                with ctx.db.session_scope() as s:
                    s.get(Job, ctx.job_id).cancel_requested = True
            ctx.progress(i / n, f"step {i}", force=True)
        return {}

    kind("steps", slow_steps)
    job_id = add_job(db, world, kind="steps", params={"n": 10})
    assert run_job(db, config, job_id) == "cancelled"
    assert steps == [0, 1, 2] and job_row(db, job_id).state == "cancelled"


def test_cancel_before_start_and_who_may_cancel(db, config, world):
    with db.session_scope() as s:
        info = jobs.submit_job(s, actor(s, "annotator"), world["project_id"], "import",
                               {"staging": "c" * 32}, lambda _id: None)
    with db.session_scope() as s:
        with pytest.raises(PermissionDenied):
            jobs.cancel_job(s, actor(s, "reviewer"), info.id)
        assert jobs.cancel_job(s, actor(s, "annotator"), info.id).cancel_requested
    assert run_job(db, config, info.id) == "cancelled"


def test_one_training_job_per_project(db, world):
    with db.session_scope() as s:
        reviewer = actor(s, "reviewer")
        jobs.submit_job(s, reviewer, world["project_id"], "train", {}, lambda _id: None)
        with pytest.raises(Conflict, match="already queued or running"):
            jobs.submit_job(s, reviewer, world["project_id"], "train", {}, lambda _id: None)
        assert [j.kind for j in jobs.list_jobs(s, actor(s, "viewer"), world["project_id"])] == ["train"]
        assert jobs.list_jobs(s, actor(s, "outsider")) == []


def beat(db, job_id, seconds_ago, owner="other-run"):
    with db.session_scope() as s:
        job = s.get(Job, job_id)
        job.owner, job.state = owner, "running"
        job.started_at = job.heartbeat_at = (
            dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=seconds_ago))


def test_reaper_fails_silent_jobs_and_leaves_live_ones_alone(db, world):
    dead = add_job(db, world, state="running", worker="w1")
    live = add_job(db, world, state="running", worker="w1")   # same worker name: a second worker
    beat(db, dead, 120)
    beat(db, live, 2)
    assert reap_lost_jobs(db, lost_after_s=30) == [dead]
    assert job_row(db, dead).state == "failed" and "no heartbeat for 30 s" in job_row(db, dead).error
    assert job_row(db, live).state == "running" and job_row(db, live).error == ""


def test_only_the_owner_finishes_a_job(db, config, world, kind):
    """A run whose job was declared lost meanwhile must not flip it back to done."""
    def reaped_meanwhile(ctx):
        beat(db, ctx.job_id, 600, owner=ctx.owner)
        assert reap_lost_jobs(db, lost_after_s=30) == [ctx.job_id]
        return {"trained": True}

    kind("reaped", reaped_meanwhile)
    job_id = add_job(db, world, kind="reaped")
    assert run_job(db, config, job_id) == "lost"
    job = job_row(db, job_id)
    assert job.state == "failed" and job.result == {} and "heartbeat" in job.error


def test_a_lost_job_stops_at_its_next_progress(db, config, world, kind):
    steps = []

    def long_steps(ctx):
        for i in range(5):
            steps.append(i)
            if i == 1:
                with ctx.db.session_scope() as s:   # another worker's reaper took it
                    s.get(Job, ctx.job_id).state = "failed"
            ctx.progress(i / 5, f"step {i}", force=True)
        return {}

    kind("long", long_steps)
    job_id = add_job(db, world, kind="long")
    assert run_job(db, config, job_id) == "lost"
    assert steps == [0, 1] and job_row(db, job_id).state == "failed"


def test_heartbeat_beats_while_the_handler_works(db, config, world, kind):
    seen = []

    def quiet(ctx):
        first = job_row(db, ctx.job_id).heartbeat_at
        time.sleep(0.6)                      # no progress call: only the heartbeat writes
        seen.append((first, job_row(db, ctx.job_id).heartbeat_at))
        return {}

    kind("quiet", quiet)
    job_id = add_job(db, world, kind="quiet")
    assert run_job(db, config, job_id, heartbeat_s=0.1) == "done"
    first, later = seen[0]
    assert later > first


def test_a_job_delivered_twice_runs_once(db, config, world, kind):
    calls = []
    kind("once", lambda ctx: calls.append(ctx.owner) or {})
    job_id = add_job(db, world, kind="once")
    assert run_job(db, config, job_id, worker="w1") == "done"
    assert run_job(db, config, job_id, worker="w2") == "done"   # second delivery: no run
    assert len(calls) == 1 and job_row(db, job_id).owner == calls[0]


def test_follow_up_and_submit_keep_one_training_per_project(db, world):
    with db.session_scope() as s:
        first, created = create_job_row(s, world["project_id"], world["annotator"], "train", {})
        assert created
        again, created = create_job_row(s, world["project_id"], world["annotator"], "train", {})
        assert (again, created) == (first, False)
    beat(db, first, 300)                       # its worker died: the next request reaps it
    with db.session_scope() as s:
        info = jobs.submit_job(s, actor(s, "reviewer"), world["project_id"], "train", {},
                               lambda _id: None)
    assert job_row(db, first).state == "failed" and info.id != first


def test_cancel_of_a_queued_job_is_immediate(db, world):
    with db.session_scope() as s:
        info = jobs.submit_job(s, actor(s, "reviewer"), world["project_id"], "train", {},
                               lambda _id: None)
        assert jobs.cancel_job(s, actor(s, "reviewer"), info.id).state == "cancelled"
        again = jobs.submit_job(s, actor(s, "reviewer"), world["project_id"], "train", {},
                                lambda _id: None)
        assert again.state == "queued"


def start_worker(config):
    env = {**os.environ, "CELLLOOP_DATA_DIR": str(config.data_dir),
           "DATABASE_URL": config.database_url,
           "SECRET_KEY": config.secret_key, "PYTHONUNBUFFERED": "1"}
    log = open(config.data_dir / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--pool=solo"], cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    return worker, log


def stop_worker(worker, log):
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)
    log.close()


def wait_for(db, config, job_id, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and job_row(db, job_id).state in ("queued", "running"):
        time.sleep(0.5)
    job = job_row(db, job_id)
    assert job.state not in ("queued", "running"), (
        job.state, (config.data_dir / "worker.log").read_text()[-3000:])
    return job


@pytest.mark.slow
def test_real_worker_runs_jobs_and_recovers_stale_ones(db, config, world):
    stale = add_job(db, world, state="running", worker="")
    beat(db, stale, 600)
    worker, log = start_worker(config)
    try:
        token = stage(config, "d" * 32, {"a.png": png_bytes(3), "b.png": png_bytes(4)})
        with db.session_scope() as s:
            info = jobs.submit_job(s, actor(s, "annotator"), world["project_id"], "import",
                                   {"staging": token}, Deps(config, db).enqueue)
        deadline = time.time() + 120
        while time.time() < deadline and job_row(db, info.id).state in ("queued", "running"):
            time.sleep(0.5)
        job = job_row(db, info.id)
        assert job.state == "done", (job.state, job.error,
                                     (config.data_dir / "worker.log").read_text()[-3000:])
        assert job.result["imported"] == 2 and job.worker.startswith("cellloop")
        assert job_row(db, stale).state == "failed"
        with db.session_scope() as s:
            assert len(s.scalars(select(Image)).all()) == 2
    finally:
        stop_worker(worker, log)


@pytest.mark.slow
def test_real_worker_trains_then_rescores_and_honours_cancel(db, config, world, lab):  # noqa: F811
    """Training in the loop on the real worker: the training job queues a scoring job
    through Celery when it ends; a job cancelled while queued never runs."""
    from app.services import training
    from app.tables import Score
    worker, log = start_worker(config)
    try:
        enqueue = Deps(config, db).enqueue
        with db.session_scope() as s:
            info = training.start_training(s, actor(s, "reviewer"), world["project_id"],
                                           {"rescore": True}, enqueue)
        trained = wait_for(db, config, info.id)
        assert trained.state == "done" and trained.result["activated"], trained.error
        follow = wait_for(db, config, trained.result["scoring_job"])
        assert follow.kind == "score" and follow.state == "done", follow.error
        with db.session_scope() as s:
            assert len(s.scalars(select(Score)).all()) == 1      # the one unannotated image
            queued = jobs.submit_job(s, actor(s, "reviewer"), world["project_id"], "score",
                                     {}, lambda _id: None)       # not sent yet
            jobs.cancel_job(s, actor(s, "reviewer"), queued.id)
        enqueue(queued.id)
        assert wait_for(db, config, queued.id).state == "cancelled"
    finally:
        stop_worker(worker, log)


def test_two_simultaneous_training_requests_queue_one_job(db, world):
    """Two tabs (or a click and the automatic retrain) at the same moment: the database's
    unique index keeps one queued training; the other request is told it is busy."""
    import threading
    barrier, outcomes = threading.Barrier(4), []

    def submit():
        barrier.wait()
        try:
            with db.session_scope() as s:
                outcomes.append(jobs.submit_job(s, actor(s, "reviewer"), world["project_id"],
                                                "train", {}, lambda _id: None).id)
        except Conflict:
            outcomes.append("busy")
        except Exception as exc:  # noqa: BLE001 - a locked database is a refusal, not a copy
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.session_scope() as s:
        active = s.scalars(select(Job.id).where(Job.kind == "train",
                                                Job.state.in_(("queued", "running")))).all()
    assert len(active) == 1, outcomes
    assert outcomes.count(active[0]) == 1


def test_the_database_refuses_a_second_active_training(db, world):
    from sqlalchemy.exc import IntegrityError
    add_job(db, world, kind="train")
    with pytest.raises(IntegrityError):
        add_job(db, world, kind="train")
    add_job(db, world, kind="train", state="done")          # finished ones do not count


def test_a_queued_job_on_an_idle_queue_is_sent_again(db, config, world, monkeypatch):
    """A pool child that dies after taking a message but before claiming the job leaves it
    queued; the worker's watch sends it again once its queue has been idle a while."""
    from app.jobs import reaper as reaper_module
    sent = []
    monkeypatch.setattr(reaper_module, "send_job",
                        lambda _config, _db, job_id, _celery: sent.append(job_id))
    watch = reaper_module.Reaper(config, ["gpu"], celery=None)
    old = add_job(db, world, kind="score")
    fresh = add_job(db, world, kind="predict")
    other_queue = add_job(db, world, kind="import")
    with db.session_scope() as s:
        long_ago = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=5)
        for job_id in (old, other_queue):
            s.get(Job, job_id).sent_at = long_ago
        s.get(Job, fresh).sent_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert watch.resend_lost(after_s=60) == [old] and sent == [old]
    busy = add_job(db, world, kind="train", state="running")   # the queue is working
    assert busy and watch.resend_lost(after_s=60) == []


def test_job_kinds_are_one_table_the_database_index_agrees_with():
    import ast

    from app.jobs import kinds
    from app.tables import EXCLUSIVE_ACTIVE
    assert set(handlers.HANDLERS) == set(kinds.KINDS)
    exclusive = sorted(k.name for k in kinds.KINDS.values() if k.exclusive)
    assert exclusive == ["score", "train"]
    assert "kind IN (" + ", ".join(f"'{k}'" for k in reversed(exclusive)) + ")" in EXCLUSIVE_ACTIVE
    # the services below the handlers never import app.jobs (no import circle)
    for name in ("training", "scoring", "prediction", "simulation", "imports", "learning_loop"):
        tree = ast.parse((ROOT / "app" / "services" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m and m.startswith("app.jobs")}, name


def test_a_handler_stopped_by_should_stop_ends_cancelled(db, config, world, kind):
    from models.cancel import Cancelled

    def stops(ctx):
        with ctx.db.session_scope() as s:
            s.get(Job, ctx.job_id).cancel_requested = True
        if ctx.should_stop():
            raise Cancelled()
        return {}

    kind("stops", stops)
    job_id = add_job(db, world, kind="stops")
    assert run_job(db, config, job_id) == "cancelled"
    assert job_row(db, job_id).message == "Cancelled by the user."

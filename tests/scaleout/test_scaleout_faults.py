"""Faults on the scale-out stack (PostgreSQL + Redis + S3, two gunicorn workers, a worker per
queue): six simultaneous HTTP saves of one draft, spread over both web workers, make one
version; a web worker killed -9 while saves are in flight leaves no partial version and the
save then goes through; Postgres connections dropped under the app (all of them, and one in the middle of a
save's transaction) lose nothing and leave no partial version; Redis killed and restarted
while a training runs: the job ends done and the next job runs; kill -9 of the training
child: the job fails within a minute and training starts again."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from cellloop_client import Client
from tests.images_data import nuclei, tiff
from tests.live.harness import TINY_TRAINING
from tests.live.test_faults import save_body
from tests.scaleout.conftest import make_site, restart_redis

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]
PROJECT = "Faults"


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    app = make_site(stack, tmp_path_factory.mktemp("faults") / "site", PROJECT)
    try:
        token = app.cli("create-token", "boss", "--name", "faults", "--write").stdout.strip()
        app.client = Client(app.base, token, timeout=120)
        folder = tmp_path_factory.mktemp("plate")
        truth = {}
        for k in range(4):
            img, labels = nuclei((96, 96), n=8, seed=k)
            (folder / f"f{k}.tif").write_bytes(tiff(img))
            truth[f"f{k}.tif"] = labels
        results = app.client.upload_folder(PROJECT, folder, progress=False)
        assert [r["status"] for r in results] == ["imported"] * 4, results
        app.ids = {i["name"]: i["id"] for i in app.client.images(PROJECT)}
        for name in ("f0.tif", "f1.tif"):
            app.client.upload_annotation(app.ids[name], truth[name])
        yield app
    finally:
        app.stop()


def count_versions(site, image_id: int) -> int:
    return site.query("SELECT count(*) FROM annotation WHERE image_id = ?", image_id)[0][0]


def test_six_simultaneous_http_saves_make_one_version(site):
    anna = site.login("anna", "anna-password-1")
    image_id = site.ids["f3.tif"]
    deps = anna.get(site.url("/_dash-dependencies"), timeout=30).json()
    site.python(
        "from app.config import Config; from app.deps import Deps; from app.db import Database;"
        "from app.services import drafts, users\n"
        "c = Config.from_env(); d = Deps(c, Database(c.sqlalchemy_url))\n"
        "with d.db.session_scope() as s:\n"
        f"    drafts.record_edit(s, users.find_user(s, 'anna'), c, d.store, {image_id},"
        " {'op': 'add', 'shape': {'type': 'rect', 'x0': 3, 'y0': 3, 'x1': 19, 'y1': 19}})\n")
    body = save_body(deps, image_id, {"id": image_id, "can_edit": True}, {"rev": 1})
    barrier, codes = threading.Barrier(6), []

    def post():
        barrier.wait()
        codes.append(anna.post(site.url("/_dash-update-component"), json=body,
                               timeout=60).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert count_versions(site, image_id) == 1, codes
    assert codes == [200] * 6, codes


def test_kill_9_of_a_web_worker_mid_save(site):
    """Saves of one draft in flight on both web workers while one worker is killed -9: no
    partial version (every version row's mask is in the bucket, numbers 1..n), gunicorn
    replaces the worker, and the same save then goes through."""
    ben = site.login("ben", "ben-password-1")
    image_id = site.ids["f1.tif"]                 # has version 1 (uploaded through the API)
    deps = ben.get(site.url("/_dash-dependencies"), timeout=30).json()
    site.python(
        "from app.config import Config; from app.deps import Deps; from app.db import Database;"
        "from app.services import drafts, users\n"
        "c = Config.from_env(); d = Deps(c, Database(c.sqlalchemy_url))\n"
        "with d.db.session_scope() as s:\n"
        f"    drafts.record_edit(s, users.find_user(s, 'ben'), c, d.store, {image_id},"
        " {'op': 'add', 'shape': {'type': 'rect', 'x0': 60, 'y0': 60, 'x1': 80, 'y1': 80}})\n")
    body = save_body(deps, image_id, {"id": image_id, "can_edit": True}, {"rev": 1})
    victim = site.web_worker_pids()[0]
    barrier, codes = threading.Barrier(5), []

    def post():
        barrier.wait()
        try:
            codes.append(ben.post(site.url("/_dash-update-component"), json=body,
                                  timeout=60).status_code)
        except requests.RequestException as exc:
            codes.append(type(exc).__name__)

    def kill():
        barrier.wait()
        time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)

    threads = [threading.Thread(target=post) for _ in range(4)] + [threading.Thread(target=kill)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    deadline = time.time() + 60                   # gunicorn forks a new worker
    while time.time() < deadline and (victim in site.web_worker_pids()
                                      or len(site.web_worker_pids()) < 2):
        time.sleep(0.5)
    assert len(site.web_worker_pids()) == 2 and victim not in site.web_worker_pids()
    rows = site.query("SELECT version, label_blob_key FROM annotation WHERE image_id = ? "
                      "ORDER BY version", image_id)
    assert [v for v, _ in rows] == list(range(1, len(rows) + 1)) and len(rows) <= 2, (rows, codes)
    for _, key in rows:
        assert site.python(
            "from app.config import Config; from app.deps import open_store\n"
            f"print(open_store(Config.from_env()).exists({key!r}))\n").strip().endswith("True")
    # the save again (the killed one may or may not have committed): one version, at most
    r = ben.post(site.url("/_dash-update-component"), json=body, timeout=60)
    assert r.status_code == 200, r.text[:500]
    after = [v for (v,) in site.query(
        "SELECT version FROM annotation WHERE image_id = ? ORDER BY version", image_id)]
    assert after == [1, 2], (after, codes)


def _terminate_app_connections(site) -> int:
    db = site.env["DATABASE_URL"].rsplit("/", 1)[1]
    return len(site.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = ? AND pid <> pg_backend_pid()", db))


def test_dropped_postgres_connections_lose_nothing(site):
    before = site.client.images(PROJECT)
    assert _terminate_app_connections(site) >= 1       # every pooled connection of the app
    # pre-ping replaces the dead connections: the next requests on both workers just work
    for _ in range(6):
        assert requests.get(site.url("/healthz"), timeout=10).status_code == 200
        assert site.client.images(PROJECT) == before

    # a save whose connection dies in the middle of its transaction: no partial version
    image_id = site.ids["f2.tif"]
    out = site.python(
        "import psycopg\n"
        "from app.config import Config; from app.deps import Deps; from app.db import Database\n"
        "from app.services import annotations, drafts, users\n"
        "from sqlalchemy import text\n"
        "c = Config.from_env(); d = Deps(c, Database(c.sqlalchemy_url))\n"
        "with d.db.session_scope() as s:\n"
        "    u = users.find_user(s, 'ben')\n"
        f"    drafts.record_edit(s, u, c, d.store, {image_id}, {{'op': 'add', 'shape': "
        "{'type': 'rect', 'x0': 5, 'y0': 5, 'x1': 25, 'y1': 25}})\n"
        "s = d.db.session()\n"
        "u = users.find_user(s, 'ben')\n"
        "pid = s.execute(text('SELECT pg_backend_pid()')).scalar()\n"
        f"annotations.save(s, u, c, d.store, {image_id})\n"
        "s.flush()                                   # the version row is written, not committed\n"
        "with psycopg.connect(c.sqlalchemy_url.replace('+psycopg', ''), autocommit=True) as k:\n"
        "    k.execute('SELECT pg_terminate_backend(%s)', [pid])\n"
        "try:\n"
        "    s.commit(); print('committed')\n"
        "except Exception as exc:\n"
        "    print('refused', type(exc).__name__)\n")
    assert "refused" in out, out
    assert count_versions(site, image_id) == 0
    # ... and the same save, done again, goes through
    site.python(
        "from app.config import Config; from app.deps import Deps; from app.db import Database\n"
        "from app.services import annotations, users\n"
        "c = Config.from_env(); d = Deps(c, Database(c.sqlalchemy_url))\n"
        "with d.db.session_scope() as s:\n"
        f"    annotations.save(s, users.find_user(s, 'ben'), c, d.store, {image_id})\n")
    assert count_versions(site, image_id) == 1


def _running_training(site, minutes: float) -> int:
    site.set_training({**TINY_TRAINING, "epochs": 400, "steps_per_epoch": 20, "patience": 400},
                      project=PROJECT)
    job = site.client.train(PROJECT, max_minutes=minutes)
    deadline = time.time() + 120
    while time.time() < deadline and site.client.job(job["id"])["state"] != "running":
        time.sleep(0.3)
    assert site.client.job(job["id"])["state"] == "running"
    return job["id"]


def test_redis_restarted_during_a_job(site, stack):
    job_id = _running_training(site, 0.4)
    restart_redis(stack)                       # queues and results gone; job rows are not
    job = site.client.wait(job_id, timeout=300, progress=False)
    assert job["state"] == "done", job
    # the workers and web workers reconnected: a new job goes through Redis and runs
    done = site.client.wait(site.client.predict(PROJECT, [site.ids["f3.tif"]]), timeout=300,
                            progress=False)
    assert done["state"] == "done", done


def test_kill_9_of_the_training_child(site):
    job_id = _running_training(site, 1.5)
    time.sleep(2)
    children = site.worker_children("worker-gpu")
    assert children
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    killed = time.time()
    deadline = killed + 120
    while time.time() < deadline and site.client.job(job_id)["state"] == "running":
        time.sleep(1)
    job = site.client.job(job_id)
    assert job["state"] == "failed" and "no heartbeat" in (job.get("error") or ""), job
    assert time.time() - killed < 60
    site.set_training(TINY_TRAINING, project=PROJECT)
    again = site.client.wait(site.client.train(PROJECT, max_minutes=0.2), timeout=300,
                             progress=False)
    assert again["state"] == "done", again

"""The scaleout tier: CellLoop on PostgreSQL + Redis + S3 (moto), started as run.sh starts it
(gunicorn with two web workers; a Celery worker on each job queue, gpu and cpu, and one on the
ui queue for the pages' background callbacks, all through Redis), walked through a lab's
journey: import (HTTP upload, cpu queue) -> annotate and save (drafts and versions on Postgres,
masks on S3; two annotators saving the same image at once) -> train a tiny model (gpu queue)
-> predict -> export the project zip and the model. Then: nothing was written to the local
blob folder, every blob the database names is in the bucket, login lockouts are shared by the
web workers (rows in Postgres), and a Dash background callback runs on the ui worker."""
from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import requests

from cellloop_client import Client
from tests.images_data import nuclei, tiff
from tests.live.harness import TINY_TRAINING
from tests.scaleout.conftest import ScaleoutApp, make_site

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]
PROJECT = "Scale"


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    app = make_site(stack, tmp_path_factory.mktemp("scaleout") / "site", PROJECT)
    try:
        yield app
    finally:
        app.stop()


SAVE = """
import threading
from app.config import Config; from app.deps import Deps; from app.db import Database
from app.errors import Conflict
from app.services import annotations, drafts, leases, users
c = Config.from_env(); deps = Deps(c, Database(c.sqlalchemy_url))
image_id, who, force = {image_id}, {who}, {force}
for name, x in who:              # each draws a cell in their own draft, then lets go
    with deps.db.session_scope() as s:
        u = users.find_user(s, name)
        drafts.record_edit(s, u, c, deps.store, image_id,
                           {{"op": "add", "shape": {{"type": "rect", "x0": x, "y0": x,
                                                   "x1": x + 12, "y1": x + 12}}}})
        leases.release(s, u, image_id)
out, go = {{}}, threading.Barrier(len(who))
def save(name):                  # ... and all save at the same moment, each on its connection
    try:
        with deps.db.session_scope() as s:
            u = users.find_user(s, name)
            go.wait()
            out[name] = annotations.save(s, u, c, deps.store, image_id, force=force).version
    except Conflict:
        out[name] = "conflict"
threads = [threading.Thread(target=save, args=(name,)) for name, _ in who]
[t.start() for t in threads]; [t.join() for t in threads]
print(sorted(out.items()))
"""


def versions_of(site, image_id: int) -> list[int]:
    return [v for (v,) in site.query(
        "SELECT version FROM annotation WHERE image_id = ? ORDER BY version", image_id)]


def test_import_annotate_save_train_predict_export_on_postgres_redis_s3(site, stack, tmp_path):
    t0 = time.time()
    token = site.cli("create-token", "boss", "--name", "scaleout", "--write").stdout.strip()
    site.set_training(TINY_TRAINING, project=PROJECT)
    client = Client(site.base, token, timeout=120)

    # import: an HTTP upload, staged and imported by the cpu worker through Redis
    folder = tmp_path / "plate"
    folder.mkdir()
    truth = {}
    for k in range(5):
        img, labels = nuclei((96, 96), n=8, seed=k)
        (folder / f"field{k}.tif").write_bytes(tiff(img))
        truth[f"field{k}.tif"] = labels
    results = client.upload_folder(PROJECT, folder, progress=False)
    assert [r["status"] for r in results] == ["imported"] * 5, results
    # a zip is imported by a job on the cpu worker, which shares no disk with the web
    # workers here (its own data directory): the upload travels through the bucket
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in (5, 6):
            zf.writestr(f"more/extra{k}.tif", tiff(nuclei((96, 96), n=6, seed=k)[0]))
    pid = site.query("SELECT id FROM project WHERE name = ?", PROJECT)[0][0]
    staged = client.post(f"/projects/{pid}/images",
                         files=[("files", ("more.zip", buf.getvalue(), "application/zip"))])
    assert staged["job_id"], staged
    job = client.wait(staged["job_id"], timeout=300, progress=False)
    assert job["state"] == "done" and job["result"]["imported"] == 2, job
    assert not (site.data_dir / "staging").exists() or \
        not any((site.data_dir / "staging").iterdir())
    ids = {i["name"]: i["id"] for i in client.images(PROJECT)}
    assert set(ids) == set(truth) | {"more/extra5.tif", "more/extra6.tif"}, ids

    # annotate: three through the HTTP API, one with drafts and saves (two annotators)
    for name in sorted(ids)[:3]:
        assert client.upload_annotation(ids[name], truth[name])["status"] == "attached"
    # anna and ben draw on the same image and save at the same moment: Postgres locks the
    # image row, so one save makes version 1 and the other is told the image changed ...
    out = site.python(SAVE.format(image_id=ids["field3.tif"], force=False,
                                  who=[("anna", 10), ("ben", 40)]))
    assert sorted(out.strip().splitlines()[-1].count(k) for k in ("1)", "conflict")) == [1, 1], out
    assert versions_of(site, ids["field3.tif"]) == [1], out
    # ... and when both say "save mine as a new version" (force), each save that returns a
    # version made exactly that one (the first saver's renewed lease refuses the other):
    # nothing lost, no number twice
    out = site.python(SAVE.format(image_id=ids["field4.tif"], force=True,
                                  who=[("anna", 10), ("ben", 40)]))
    saved = sorted(v for _, v in eval(out.strip().splitlines()[-1]) if v != "conflict")
    assert saved and versions_of(site, ids["field4.tif"]) == saved == [1], out
    assert np.array_equal(client.annotation(ids["field0.tif"]) > 0, truth["field0.tif"] > 0)

    # train (gpu queue), then predict (gpu queue)
    job = client.wait(client.train(PROJECT, epochs=2), timeout=600, progress=False)
    assert job["state"] == "done" and job["result"], job
    (model,) = client.models(PROJECT)
    assert model["is_active"]
    done = client.wait(client.predict(PROJECT, [ids["field4.tif"]]), timeout=600,
                       progress=False)
    assert set(done["result"]["counts"]) == {"field4.tif"}
    mask = client.predictions(PROJECT, [ids["field4.tif"]])[ids["field4.tif"]]
    assert mask.shape == (96, 96)

    # export: the project zip from a web worker, the model file
    web = site.login("boss", "boss-password-1")
    pid = site.query("SELECT id FROM project WHERE name = ?", PROJECT)[0][0]
    r = web.get(site.url(f"/api/projects/{pid}/export.zip"), timeout=300)
    assert r.status_code == 200, r.text[:500]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = zf.namelist()
        assert any(n.endswith("manifest.json") for n in names), names
        assert sum("field" in n for n in names) >= 5, names
    path = client.download_model(model["id"], tmp_path / "models", format="cellloop")
    assert path.stat().st_size > 1000

    # the blobs are in the bucket, none on the local disk
    local = site.data_dir / "blobs"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*")), \
        list(local.rglob("*"))[:5]
    keys = set(_bucket_keys(stack, site))
    named = {k for row in site.query(
        "SELECT blob_key FROM image UNION SELECT label_blob_key FROM annotation "
        "UNION SELECT weights_blob_key FROM model_version") for k in row if k}
    assert named and named <= keys, named - keys
    staged = {key for (params,) in site.query("SELECT params FROM job WHERE kind = 'import'")
              for _sub, _name, key in (params or {}).get("staged_blobs", [])}
    assert staged and not staged & keys, "the staged upload is still in the bucket"
    print(f"\nscaleout journey: {time.time() - t0:.1f} s")


def _bucket_keys(stack: dict, site: ScaleoutApp):
    import boto3
    env = stack["_s3"].extra["env"]
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket, prefix = site.env["STORAGE_URL"][len("s3://"):].split("/", 1)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"].rsplit("/", 1)[-1]


def test_login_lockout_is_shared_by_the_web_workers(site):
    """Failed logins are rows in Postgres: the lockout holds whichever web worker (or host)
    the next attempt lands on. LOGIN_MAX_FAILURES=3 here; 8 fresh connections spread over
    the two workers."""
    codes = []
    for _ in range(8):
        s = requests.Session()
        page = s.get(site.url("/login"), timeout=30)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = s.post(site.url("/login"), data={"username": "anna", "password": "wrong",
                                             "csrf_token": token},
                   allow_redirects=False, timeout=30)
        codes.append(r.status_code)
    s = requests.Session()
    page = s.get(site.url("/login"), timeout=30)
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = s.post(site.url("/login"), data={"username": "anna", "password": "anna-password-1",
                                         "csrf_token": token}, allow_redirects=False,
               timeout=30)
    assert r.status_code != 302, ("the right password got in during a lockout", codes)


def test_the_ui_worker_serves_the_pages_background_callbacks(site):
    """With REDIS_URL the pages' background callbacks are Celery tasks on the ui queue: the ui
    worker has every one of them registered (it built the Dash app), so any web worker on any
    host can hand one over and read its result from Redis."""
    out = site.python(
        "import socket\n"
        "from app.config import Config; from app.jobs.celery_app import make_celery\n"
        "c = make_celery(Config.from_env())\n"
        "name = f'cellloop-ui@{socket.gethostname()}'\n"
        "found = c.control.inspect(destination=[name], timeout=10).registered() or {}\n"
        "print(sorted(t for t in found.get(name, []) if t.startswith('background_callback_')))\n"
        "print(c.conf.task_routes)\n")
    tasks = eval(out.strip().splitlines()[-2])
    assert len(tasks) >= 3, out          # annotate (2) and viewer (1) background callbacks


def test_a_background_callback_runs_on_the_ui_worker(site):
    """The viewer's "suggest" button (a Dash background callback) sent as the browser sends
    it: the web worker hands it to Celery through Redis, the ui worker runs it (the trained
    model predicts the image), and the result is read back through Redis, by whichever web
    worker the polls land on."""
    web = site.login("boss", "boss-password-1")
    image_id = site.query("SELECT id FROM image ORDER BY id LIMIT 1")[0][0]
    token = site.python(
        "from app.config import Config; from app.db import Database\n"
        "from app.background import sign_actor; from app.services import users\n"
        "c = Config.from_env(); db = Database(c.sqlalchemy_url)\n"
        "with db.session_scope() as s:\n"
        "    print(sign_actor(c.resolve_secret_key(), users.find_user(s, 'boss')))\n"
    ).strip().splitlines()[-1]
    deps = web.get(site.url("/_dash-dependencies"), timeout=30).json()
    cb = next(d for d in deps if any(i["id"] == "viewer-suggest" for i in d["inputs"]))
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
               for o in cb["output"].strip(".").split("...")]
    body = {"output": cb["output"], "outputs": outputs,
            "inputs": [{"id": "viewer-suggest", "property": "n_clicks", "value": 1}],
            "state": [{"id": "viewer-image-id", "property": "data",
                       "value": {"id": image_id, "token": token}}],
            "changedPropIds": ["viewer-suggest.n_clicks"]}
    first = web.post(site.url("/_dash-update-component"), json=body, timeout=60)
    assert first.status_code == 200 and "job" in first.json(), first.text[:500]
    handles = {k: first.json()[k] for k in ("cacheKey", "job")}
    deadline, answer = time.time() + 240, None
    while time.time() < deadline:
        r = web.post(site.url("/_dash-update-component"), params=handles, json=body,
                     timeout=60)
        if r.status_code == 200 and r.content and "response" in r.json():
            answer = r.json()["response"]
            break
        time.sleep(0.5)
    assert answer is not None, "no result from the ui worker: " + site.log_tail("worker-ui")
    text = json.dumps(answer)
    assert "viewer-prediction" in text and '"model"' in text, text[:1000]

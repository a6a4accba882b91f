"""The fault tier: CellLoop started as `run.sh` starts it (relative data directory, gunicorn
with two workers, a Celery worker per queue), then the faults found in a probe of the running
app are reproduced; each must now be refused or recovered from."""
import io
import os
import signal
import threading
import time
import zipfile

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.live.harness import DEMO, TINY_TRAINING, browser_login, chrome, mapped_libraries

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def train_tiny(live, **params) -> int:
    live.set_training(TINY_TRAINING)
    job_id = live.submit("train", params)
    job = live.wait_job(job_id, timeout=600)
    assert job["state"] == "done", job
    return live.query("SELECT id FROM model_version WHERE is_active=1")[0][0]


def test_downloads_work_with_a_relative_data_directory(live):
    """The probe: export.zip and the model files answered 500 under ./run.sh (written to
    data/exports, read from app/data/exports)."""
    model_id = train_tiny(live)
    viewer = live.login("victor")
    pid = live.project_id()
    r = viewer.get(live.url(f"/api/projects/{pid}/export.zip?formats=tiff,counts"), timeout=120)
    assert r.status_code == 200, r.text[:300]
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert any(n.endswith(".tif") for n in names)
    for ext in ("cellloop", "pt", "onnx"):
        r = viewer.get(live.url(f"/api/models/{model_id}/export.{ext}"), timeout=300)
        assert r.status_code == 200 and len(r.content) > 1000, (ext, r.status_code, r.text[:300])
    import onnxruntime
    onnxruntime.InferenceSession(r.content, providers=["CPUExecutionProvider"])
    # a refused request (not a member) leaves nothing behind
    outsider = live.cli("create-user", "olga", stdin="olga-password-1\n")
    assert outsider.returncode == 0
    before = sorted(p.name for p in (live.data_dir / "cache" / "model-exports").iterdir())
    assert live.login("olga", "olga-password-1").get(
        live.url(f"/api/models/{model_id}/export.onnx")).status_code == 404
    after = sorted(p.name for p in (live.data_dir / "cache" / "model-exports").iterdir())
    assert after == before and not any(n.startswith(".export-") for n in after)


def test_a_model_download_then_a_suggestion_keeps_the_app_writable(live):
    """The probe: a model download ran torch in a gunicorn worker; the next background
    callback, then forked from that worker, hung in an OpenMP barrier holding the SQLite
    write lock, so logins answered 500 and /healthz still said 200. (Callbacks now come from
    a job server, pages._background; the downloads still run torch outside the worker.)"""
    model_id = train_tiny(live)
    member = live.login("anna")
    for _ in range(3):            # reach both web workers
        for ext in ("pt", "onnx"):
            assert member.get(live.url(f"/api/models/{model_id}/export.{ext}"),
                              timeout=300).status_code == 200
    image_id = live.query("SELECT id FROM image ORDER BY id DESC LIMIT 1")[0][0]
    driver = chrome()
    try:
        browser_login(driver, live, "anna")
        driver.get(live.url(f"/annotate/{image_id}"))
        button = WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "annotate-suggest"))
        WebDriverWait(driver, 30).until(lambda d: button.is_enabled())
        button.click()
        asked = []        # with cells on screen the workspace asks before replacing them

        def loaded(d):
            confirm = d.find_elements(By.ID, "annotate-suggest-confirm")
            if not asked and confirm and confirm[0].is_displayed():
                asked.append(confirm[0].click())
            return "Model suggestion loaded" in d.find_element(By.ID, "annotate-message").text
        WebDriverWait(driver, 120).until(loaded)
    finally:
        driver.quit()
    start = time.time()
    live.login("rita")                                   # a write: a new login session
    assert time.time() - start < 5
    assert requests.get(live.url("/healthz"), timeout=10).status_code == 200
    for pid in live.web_worker_pids():
        libs = mapped_libraries(pid)
        assert not [lib for lib in libs if "libtorch" in lib], f"torch in web worker {pid}"


def test_healthz_fails_while_the_write_lock_is_held(live):
    import sqlite3
    holder = sqlite3.connect(live.data_dir / "cellloop.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = requests.get(live.url("/healthz"), timeout=30)
        assert r.status_code == 503 and "locked" in r.json()["database"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert requests.get(live.url("/healthz"), timeout=10).status_code == 200


def long_training(live) -> int:
    # a run that lasts its whole budget: no early stopping on a tiny network that plateaus
    live.set_training({**TINY_TRAINING, "epochs": 400, "steps_per_epoch": 20, "patience": 400})
    job_id = live.submit("train", {"max_minutes": 1.5})
    deadline = time.time() + 120
    while time.time() < deadline and live.job(job_id)["state"] != "running":
        time.sleep(0.3)
    assert live.job(job_id)["state"] == "running", live.job(job_id)
    return job_id


def test_kill_9_of_the_training_child_fails_the_job_and_training_starts_again(live):
    job_id = long_training(live)
    time.sleep(3)
    children = live.worker_children("worker-gpu")
    assert children
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    killed = time.time()
    job = live.wait_job(job_id, states=("failed", "done", "cancelled"), timeout=90)
    assert job["state"] == "failed" and "no heartbeat" in job["error"], job
    assert time.time() - killed < 60
    again = live.submit("train", {"max_minutes": 0.2})      # not "already queued or running"
    job = live.wait_job(again, timeout=300)
    assert job["state"] == "done", job


def test_a_second_worker_leaves_a_live_job_alone(live):
    job_id = long_training(live)
    owner = live.job(job_id)["owner"]
    live.start_worker("gpu", name="worker-gpu-2")
    time.sleep(20)                     # the new worker's start-up recovery and reaper ran
    job = live.job(job_id)
    assert job["state"] == "running" and job["owner"] == owner and job["error"] == "", job
    job = live.wait_job(job_id, timeout=300)
    assert job["state"] == "done" and job["error"] == "", job
    # a new model of the demo's strategy (stratified, no model needed) is ranked at once:
    # that scoring job ends before another may be submitted (one per project)
    for (follow,) in live.query("SELECT id FROM job WHERE kind='score' AND id > ?", job_id):
        assert live.wait_job(follow, timeout=300)["state"] == "done"
    busy = live.submit("score", {})
    assert live.wait_job(busy, timeout=300)["state"] == "done"


def dash_layout(session, live):
    return session.get(live.url("/_dash-layout"), timeout=30, allow_redirects=False)


def test_logout_ends_the_session_for_a_copied_cookie(live):
    owner = live.login("admin")
    copied = requests.Session()
    copied.cookies.update(owner.cookies)
    assert dash_layout(copied, live).status_code == 200
    page = owner.get(live.url("/logout"), timeout=30)
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert owner.post(live.url("/logout"), data={"csrf_token": token},
                      allow_redirects=False).status_code == 302
    assert dash_layout(copied, live).status_code == 401


def test_demo_accounts_are_refused_in_production(live):
    live.stop_process("web")
    live.start_web(env={"CELLLOOP_ENV": "production", "SECRET_KEY": "x" * 40})
    def post_login(password):
        # production cookies are Secure (HTTPS behind the proxy); on this loopback test
        # server the client sends them over plain HTTP as the proxy would
        s = requests.Session()
        page = s.get(live.url("/login"), timeout=30)
        for cookie in s.cookies:
            cookie.secure = False
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        return s.post(live.url("/login"), data={"username": "admin", "password": password,
                                                "csrf_token": token}, allow_redirects=False)

    r = post_login(DEMO["admin"])
    assert r.status_code == 403 and "set-password" in r.text, (r.status_code, r.text[:300])
    live.cli("set-password", "admin", stdin="a-new-admin-password-1\n")
    assert post_login("a-new-admin-password-1").status_code == 302


def save_body(deps, image_id, info, state):
    """The hand-made request of the workspace's Save button (as the browser sends it)."""
    cb = next(d for d in deps if any(i["id"] == "annotate-save" for i in d["inputs"]))
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
               for o in cb["output"].strip(".").split("...")]
    values = {"annotate-state": state, "annotate-info": info}
    return {"output": cb["output"], "outputs": outputs,
            "inputs": [{"id": "annotate-save", "property": "n_clicks", "value": 1}],
            "state": [{**s, "value": values[s["id"]]} for s in cb["state"]],
            "changedPropIds": ["annotate-save.n_clicks"]}


def test_six_simultaneous_saves_make_one_version(live):
    """The probe: six simultaneous saves of the same draft made six identical versions."""
    anna = live.login("anna")
    image_id = live.query("SELECT id FROM image ORDER BY id LIMIT 1")[0][0]
    deps = anna.get(live.url("/_dash-dependencies"), timeout=30).json()
    before = live.query("SELECT count(*) FROM annotation WHERE image_id=?", image_id)[0][0]
    live.python(
        "from app.config import Config; from app.db import Database;"
        "from app.services import drafts, users; from storage.blobstore import open_blob_store\n"
        "c = Config.from_env(); db = Database(c.sqlalchemy_url)\n"
        "store = open_blob_store(c.storage_url, c.blob_dir)\n"
        "with db.session_scope() as s:\n"
        f"    drafts.record_edit(s, users.find_user(s, 'anna'), c, store, {image_id},"
        " {'op': 'add', 'shape': {'type': 'rect', 'x0': 3, 'y0': 3, 'x1': 19, 'y1': 19}})\n")
    body = save_body(deps, image_id, {"id": image_id, "can_edit": True}, {"rev": 1})
    barrier, codes = threading.Barrier(6), []

    def post():
        barrier.wait()
        codes.append(anna.post(live.url("/_dash-update-component"), json=body,
                               timeout=60).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    after = live.query("SELECT count(*) FROM annotation WHERE image_id=?", image_id)[0][0]
    assert after == before + 1, (codes, after - before)
    assert codes == [200] * 6, codes
    assert requests.get(live.url("/healthz"), timeout=10).status_code == 200

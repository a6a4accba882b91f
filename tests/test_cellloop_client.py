"""cellloop_client against the test app served over real HTTP in this process (a werkzeug
server thread): folder upload with label pairing and batching, images as arrays, annotations
up and down, waiting for a job, errors as ApiError with the server's code. The round trip
with training and prediction against the app started as run.sh starts it is
tests/live/test_api_client.py."""
import ast
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update
from werkzeug.serving import make_server

from app.tables import Job
from cellloop_client import ApiError, Client, JobFailed
from tests.api_v1_support import issue
from tests.images_data import nuclei, tiff

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def http(server):
    """The test server on a free loopback port; its base URL."""
    server.extensions["cellloop"].send = lambda _job_id: None
    httpd = make_server("127.0.0.1", 0, server, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


def test_the_client_needs_only_requests_numpy_and_tifffile():
    tree = ast.parse((ROOT / "cellloop_client" / "__init__.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "io", "os", "re", "time", "pathlib", "typing",
                        "numpy", "requests", "tifffile", "tqdm"}


def test_upload_folder_annotations_and_arrays(http, db, world, tmp_path):
    client = Client(http, issue(db, "annotator"))
    assert client.me()["username"] == "annotator"
    assert client.project_id("Lab") == world["project_id"]
    folder = tmp_path / "plate"
    folder.mkdir()
    truth = {}
    for k in range(5):
        img, labels = nuclei((48, 64), seed=10 + k)
        (folder / f"w{k}.tif").write_bytes(tiff(img))
        truth[f"w{k}.tif"] = (img, labels)
    (folder / "w0_masks.tif").write_bytes(tiff(truth["w0.tif"][1]))
    (folder / "notes.txt").write_text("not an image")
    results = client.upload_folder("Lab", folder, batch_files=2, progress=False)
    assert sorted((r["name"], r["status"]) for r in results) == [
        (f"w{k}.tif", "imported") for k in range(5)]
    images = {i["name"]: i for i in client.images("Lab")}
    assert set(images) == set(truth) and images["w0.tif"]["n_cells"] > 0
    assert [i["name"] for i in client.images("Lab", status="annotated")] == ["w0.tif"]
    w1 = images["w1.tif"]["id"]
    assert np.array_equal(client.image_array(w1), truth["w1.tif"][0])
    labels = truth["w1.tif"][1]
    assert client.upload_annotation(w1, labels)["status"] == "attached"
    assert np.array_equal(client.annotation(w1) > 0, labels > 0)
    cells = client.annotation_json(w1, version=1)["cells"]
    assert len(cells) == len(np.unique(labels)) - 1
    assert [v["version"] for v in client.annotations(w1)] == [1]
    w2 = images["w2.tif"]["id"]
    attached = client.upload_polygons(w2, [[[5, 5], [20, 5], [20, 20]], cells[0]])
    assert attached["status"] == "attached" and attached["n_cells"] == 2
    assert client.annotation(w2).max() == 2
    with pytest.raises(ApiError) as refused:
        client.delete_image(w1)
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
    with pytest.raises(ApiError) as missing:
        client.prediction(w1)
    assert missing.value.code == "not_found"
    reader = Client(http, issue(db, "annotator", write=False))
    with pytest.raises(ApiError) as read_only:
        reader.upload_annotation(w1, labels)
    assert read_only.value.code == "read_only_token"


def test_wait_follows_a_job_to_its_end(http, db, world, image_id):
    client = Client(http, issue(db, "annotator"))
    from app.tables import ModelVersion
    with db.session_scope() as s:
        s.add(ModelVersion(project_id=world["project_id"], weights_blob_key="0" * 64,
                           is_active=True))
    job = client.predict("Lab", [image_id])
    assert job["state"] == "queued" and job["kind"] == "predict"

    def finish(state):
        with db.session_scope() as s:
            s.execute(update(Job).where(Job.id == job["id"]).values(state=state, progress=1.0,
                                                                     message="finished"))
    timer = threading.Timer(0.5, finish, ("done",))
    timer.start()
    assert client.wait(job, poll=0.1, progress=False)["state"] == "done"
    finish("failed")
    with pytest.raises(JobFailed):
        client.wait(job["id"], poll=0.1, progress=False)
    with pytest.raises(ApiError) as bad:
        client.predict("Lab", [999_999])
    assert (bad.value.status, bad.value.code) == (404, "not_found")


def test_a_rate_limited_request_is_retried_after_retry_after(monkeypatch):
    """429 answers are sent again after the server's Retry-After, up to `retries` times;
    then the refusal is an ApiError with the server's code."""
    import requests

    def answer(status, body, headers=None):
        r = requests.Response()
        r.status_code, r._content = status, body.encode()
        r.headers.update({"Content-Type": "application/json", **(headers or {})})
        return r

    limited = '{"error": {"code": "rate_limited", "message": "slow down"}}'

    class Server(requests.Session):
        def __init__(self, answers):
            super().__init__()
            self.answers, self.calls = list(answers), 0

        def request(self, method, url, **kwargs):
            self.calls += 1
            return self.answers.pop(0)

    slept = []
    monkeypatch.setattr("cellloop_client.time.sleep", slept.append)
    server = Server([answer(429, limited, {"Retry-After": "7"}),
                     answer(429, limited, {"Retry-After": "3"}),
                     answer(200, '{"username": "me"}')])
    assert Client("http://x", "cl_t", session=server).me() == {"username": "me"}
    assert (server.calls, slept) == (3, [7.0, 3.0])
    server = Server([answer(429, limited, {"Retry-After": "1"})] * 3)
    with pytest.raises(ApiError) as refused:
        Client("http://x", "cl_t", retries=2, session=server).me()
    assert (server.calls, refused.value.code) == (3, "rate_limited")

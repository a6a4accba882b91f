"""The authorization matrix of /api/v1: every endpoint, called as nobody, with a bad token,
with a revoked token, as a non-member, as each project role and as a site admin (with
read-write tokens),
gets exactly the answer its role table says: 401 without a live token, 404 for non-members
(as the pages: a project's existence is not revealed), 403 below the needed role, and
otherwise whatever the service answers (never 401/403/404).

A new endpoint fails `test_every_endpoint_is_in_the_matrix` until it is added here."""
import io

import numpy as np
import pytest
from sqlalchemy import select

from app.api_v1.registry import ENDPOINTS
from app.permissions import SYSTEM
from app.services import jobs, model_downloads, prediction, tokens
from app.tables import Image, ModelVersion
from tests.api_v1_support import bearer, issue
from tests.conftest import actor
from tests.images_data import nuclei, tiff

ROLES = ("viewer", "annotator", "reviewer", "owner")
REFUSED = {401, 403, 404}
# the least role each endpoint needs; None: any account; "public": no credentials at all
NEEDS = {
    "openapi_json": "public", "docs_page": "public",
    "get_me": None, "list_projects": None,
    "get_project": "viewer", "list_images": "viewer", "get_image": "viewer",
    "get_pixels": "viewer", "list_annotations": "viewer", "get_latest_annotation": "viewer",
    "get_annotation": "viewer", "list_models": "viewer", "get_model": "viewer",
    "download_model": "viewer", "list_jobs": "viewer", "get_job": "viewer",
    "get_prediction": "viewer",
    "upload_images": "annotator", "upload_annotation": "annotator",
    "upload_polygons": "annotator",
    "start_job": "annotator", "start_predictions": "annotator",
    "cancel_job": "starter",          # who started it (the reviewer here) or an owner
    "activate_model": "owner", "delete_image": "owner",
}
ORDER = sorted(NEEDS, key=lambda name: name == "delete_image")   # the deletion last


def test_every_endpoint_is_in_the_matrix():
    assert set(NEEDS) == set(ENDPOINTS)


@pytest.fixture
def setup(server, db, world, lab, config, monkeypatch):
    """The lab project with an active model (fake weights: nothing here loads them), a cached
    prediction, a queued job started by the reviewer, jobs that are never sent, and model
    exports that write a stand-in file."""
    server.extensions["cellloop"].send = lambda _job_id: None

    def fake_export(_config, version_id, fmt, out):
        (out / f"cellloop-project{world['project_id']}-model{version_id}"
               f"{model_downloads.SUFFIX[fmt]}").write_bytes(b"weights")
    monkeypatch.setattr(model_downloads, "_export_in_child", fake_export)
    pid = world["project_id"]
    with db.session_scope() as s:
        ids = s.scalars(select(Image.id).where(Image.project_id == pid).order_by(Image.id)).all()
        mv = ModelVersion(project_id=pid, weights_blob_key="0" * 64, is_active=True,
                          metrics={"f1": 0.5})
        s.add(mv)
        s.flush()
        image = s.get(Image, ids[0])
        labels = np.zeros((96, 96), np.uint16)
        labels[10:20, 10:20] = 1
        prediction._store_cache(prediction._cache_path(config, image, mv), labels)
        job = jobs.submit_job(s, actor(s, "reviewer"), pid, "predict", {}, lambda _id: None)
        model_id = mv.id
    tokens_by_role = {who: issue(db, who) for who in (*ROLES, "outsider", "admin")}
    revoked = issue(db, "owner", name="old")
    with db.session_scope() as s:
        for info in tokens.list_tokens(s, actor(s, "owner")):
            if info.name == "old":
                tokens.revoke_token(s, SYSTEM, info.id)
    return {"project_id": pid, "image_id": ids[0], "victims": {"owner": ids[5], "admin": ids[4]}, "version": 1,
            "model_id": model_id, "job_id": job.id, "tokens": tokens_by_role,
            "revoked": revoked}


def call(client, name: str, ids: dict, headers: dict, who: str):
    ep = ENDPOINTS[name]
    victim = ids["victims"].get(who, ids["victims"]["owner"])
    values = {**ids, "image_id": victim if name == "delete_image" else ids["image_id"]}
    url = "/api/v1" + ep.rule
    for param, _conv in ep.path_params:
        url = url.replace(f"<int:{param}>", str(values[param]))
    kwargs = {}
    if name == "upload_images":
        img, _ = nuclei((96, 96), seed=hash(headers.get("Authorization", "")) % 1000 + 50)
        kwargs["data"] = {"files": [(io.BytesIO(tiff(img)), "new.tif")]}
    elif name == "upload_annotation":
        _, labels = nuclei((96, 96), n=8, seed=0)
        kwargs["data"] = {"file": (io.BytesIO(tiff(labels)), "labels.tif")}
    elif name == "upload_polygons":
        kwargs["json"] = {"cells": [{"polygon": [[10, 10], [30, 10], [30, 30], [10, 30]]}]}
    elif name == "start_job":
        kwargs["json"] = {"kind": "predict"}
    elif name == "start_predictions":
        kwargs["json"] = {"image_ids": [ids["image_id"]]}
    return client.open(url, method=ep.method, headers=headers, **kwargs)


def expected_refusal(name: str, who: str) -> int | None:
    """The status the matrix demands for `who`, or None when the call must go through."""
    needs = NEEDS[name]
    if needs == "public":
        return None
    if who in ("anonymous", "bad token", "revoked token"):
        return 401
    if needs is None:
        return None
    if who == "outsider":
        return 404
    if who == "admin":                 # site admins may do everything
        return None
    if needs == "starter":
        return None if who in ("reviewer", "owner") else 403
    return None if ROLES.index(who) >= ROLES.index(needs) else 403


def test_authorization_matrix(serve, config, setup):
    # many bad tokens from one address on purpose: no lockout in this test
    client = serve(config.replace(login_max_failures=10_000)).test_client()
    headers = {"anonymous": {}, "bad token": bearer("cl_" + "x" * 43),
               "revoked token": bearer(setup["revoked"]),
               **{who: bearer(t) for who, t in setup["tokens"].items()}}
    wrong = []
    for name in ORDER:
        for who in ("anonymous", "bad token", "revoked token", "outsider", *ROLES[:3], "admin",
                    "owner"):
            r = call(client, name, setup, headers[who], who)
            want = expected_refusal(name, who)
            ok = r.status_code == want if want else r.status_code not in REFUSED
            ok = ok and (r.status_code >= 500 or r.status_code < 400 or
                         (r.is_json and r.json["error"]["code"]))
            if not ok or r.status_code >= 500:
                wrong.append(f"{name} as {who}: {r.status_code} (want "
                             f"{want or 'not 401/403/404'}) {r.get_data(as_text=True)[:160]}")
    assert wrong == []


def test_every_write_endpoint_refuses_read_tokens_and_browser_sessions(setup, db, login):
    """Writes need a read-write token, whatever the role: the owner's read token gets
    `read_only_token`, the owner's logged-in browser `token_required`."""
    read = bearer(issue(db, "owner", write=False, name="read"))
    browser = login("owner")
    writes = [name for name in ORDER if ENDPOINTS[name].write]
    assert len(writes) >= 8
    wrong = []
    for name in writes:
        for client, headers, code in ((browser, read, "read_only_token"),
                                      (browser, {}, "token_required")):
            r = call(client, name, setup, headers, "owner")
            if (r.status_code, r.is_json and r.json["error"]["code"]) != (403, code):
                wrong.append(f"{name} with {code}: {r.status_code} {r.get_data(as_text=True)[:120]}")
    assert wrong == []

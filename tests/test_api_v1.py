"""/api/v1: tokens (create, hashed, scopes, revoke, expiry, rate limit), the JSON error shape,
and the endpoints' behaviour through the Flask test client. The authorization matrix is in
test_api_v1_matrix.py, the OpenAPI document in test_api_v1_openapi.py."""
import datetime as dt
import io

import numpy as np
import pytest
import tifffile
from sqlalchemy import select, update

from app.permissions import SYSTEM
from app.services import tokens
from app.tables import ApiToken
from tests.api_v1_support import bearer, issue
from tests.conftest import actor
from tests.images_data import nuclei, tiff


def test_tokens_are_stored_hashed_and_shown_once(db, world):
    with db.session_scope() as s:
        new = tokens.create_token(s, actor(s, "annotator"), "pipeline", write=True,
                                  expires_days=30)
    assert new.token.startswith("cl_") and len(new.token) > 40
    with db.session_scope() as s:
        row = s.scalar(select(ApiToken))
        assert row.token_hash == tokens.hash_token(new.token) and new.token not in (
            row.token_hash, row.prefix)
        listed = tokens.list_tokens(s, actor(s, "annotator"))
        assert [(t.name, t.scope, t.state) for t in listed] == [("pipeline", "write", "active")]
        assert not hasattr(listed[0], "token")
        assert tokens.list_tokens(s, actor(s, "viewer")) == []


def test_bearer_token_authenticates_as_its_owner(server, db, world):
    client, token = server.test_client(), issue(db, "viewer", write=False, name="notebook")
    r = client.get("/api/v1/me", headers=bearer(token))
    assert r.status_code == 200, r.json
    assert r.json["username"] == "viewer" and r.json["token"]["scope"] == "read"
    assert r.json["token"]["name"] == "notebook"
    projects = client.get("/api/v1/projects", headers=bearer(token)).json["items"]
    assert [(p["name"], p["role"]) for p in projects] == [("Lab", "viewer")]


@pytest.mark.parametrize("header", ["", "Bearer ", "Bearer cl_nope", "Basic abc", "Bearer x"])
def test_missing_or_bad_tokens_get_401_json(server, db, world, header):
    r = server.test_client().get("/api/v1/projects",
                                 headers={"Authorization": header} if header else {})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert r.json["error"]["code"] == "unauthorized" and r.json["error"]["message"]


def test_revoked_and_expired_tokens_and_deactivated_accounts_stop_working(server, db, world):
    client = server.test_client()
    token = issue(db, "annotator")
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    with db.session_scope() as s:
        (info,) = tokens.list_tokens(s, actor(s, "annotator"))
        tokens.revoke_token(s, actor(s, "annotator"), info.id)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    expiring = issue(db, "annotator", expires_days=1)
    with db.session_scope() as s:
        s.execute(update(ApiToken).where(ApiToken.token_hash == tokens.hash_token(expiring))
                  .values(expires_at=dt.datetime(2000, 1, 1)))
    assert client.get("/api/v1/me", headers=bearer(expiring)).status_code == 401
    other = issue(db, "reviewer")
    from app.services import users
    with db.session_scope() as s:
        users.set_active(s, SYSTEM, world["reviewer"], False)
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 401


def test_only_the_owner_or_an_admin_revokes_a_token(db, world):
    from app.errors import NotFound
    with db.session_scope() as s:
        new = tokens.create_token(s, actor(s, "annotator"), "mine")
        with pytest.raises(NotFound):
            tokens.revoke_token(s, actor(s, "viewer"), new.info.id)
        assert tokens.revoke_token(s, actor(s, "admin"), new.info.id).state == "revoked"


def test_a_read_token_cannot_write_and_a_browser_session_only_reads(server, db, world, login,
                                                                   image_id):
    read = issue(db, "owner", write=False)
    r = server.test_client().delete(f"/api/v1/images/{image_id}", headers=bearer(read))
    assert (r.status_code, r.json["error"]["code"]) == (403, "read_only_token")
    browser = login("owner")
    assert browser.get(f"/api/v1/images/{image_id}").status_code == 200
    r = browser.delete(f"/api/v1/images/{image_id}")
    assert (r.status_code, r.json["error"]["code"]) == (403, "token_required")
    r = server.test_client().delete(f"/api/v1/images/{image_id}", headers=bearer(issue(db, "owner")))
    assert (r.status_code, r.json) == (200, {"deleted": 1})


def test_token_use_is_rate_limited_per_minute(server, db, world, config, serve, monkeypatch):
    from app.tables import utcnow
    noon = utcnow().replace(hour=12, minute=0, second=30)
    monkeypatch.setattr(tokens, "utcnow", lambda: noon)   # no minute boundary mid-test
    served = serve(config.replace(api_rate_per_minute=3))
    client, token = served.test_client(), issue(db, "viewer")
    answers = [client.get("/api/v1/me", headers=bearer(token)).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    r = client.get("/api/v1/me", headers=bearer(token))
    assert r.json["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    with db.session_scope() as s:
        row = s.scalar(select(ApiToken))
        assert row.last_used_at is not None and row.window_count >= 4


def test_guessing_tokens_locks_the_address_like_failed_logins(server, db, world, config, serve):
    served = serve(config.replace(login_max_failures=3))
    client = served.test_client()
    codes = [client.get("/api/v1/me", headers=bearer(f"cl_guess{i}")).status_code
             for i in range(4)]
    assert codes == [401, 401, 401, 429]
    good = issue(db, "viewer")     # the address is locked, whatever the token
    assert client.get("/api/v1/me", headers=bearer(good)).status_code == 429


def test_bad_tokens_lock_the_address_only_in_a_row(server, db, world, config, serve):
    """A stale token retried from an address that also uses a good one never locks it: a
    good token ends the run of failures, as a successful login does."""
    client = serve(config.replace(login_max_failures=3)).test_client()
    good = bearer(issue(db, "viewer"))
    codes = []
    for _ in range(4):
        codes += [client.get("/api/v1/me", headers=bearer("cl_stale")).status_code
                  for _ in range(2)]
        codes.append(client.get("/api/v1/me", headers=good).status_code)
    assert codes == [401, 401, 200] * 4


def test_errors_are_json_with_stable_codes(server, db, world, image_id):
    client, token = server.test_client(), issue(db, "annotator")
    h = bearer(token)
    r = client.get("/api/v1/nowhere", headers=h)
    assert (r.status_code, r.json["error"]["code"]) == (404, "not_found")
    r = client.get(f"/api/v1/projects/{world['project_id']}/images?per_page=0", headers=h)
    assert (r.status_code, r.json["error"]["code"]) == (400, "invalid")
    assert r.json["error"]["details"][0]["field"] == "per_page"
    r = client.get(f"/api/v1/projects/{world['project_id']}/images?colour=red", headers=h)
    assert r.status_code == 400 and r.json["error"]["details"][0]["field"] == "colour"
    r = client.post(f"/api/v1/projects/{world['project_id']}/jobs", headers=h, data="{nope",
                    content_type="application/json")
    assert (r.status_code, r.json["error"]["code"]) == (400, "bad_request")
    r = client.post(f"/api/v1/projects/{world['project_id']}/jobs", headers=h,
                    json={"kind": "train"})
    assert (r.status_code, r.json["error"]["code"]) == (403, "forbidden")
    r = client.get(f"/api/v1/images/{image_id}/annotations/latest", headers=h)
    assert (r.status_code, r.json["error"]["code"]) == (404, "not_found")


def test_list_upload_get_and_download_images(server, db, world):
    client, h = server.test_client(), bearer(issue(db, "annotator"))
    pid = world["project_id"]
    img, labels = nuclei(shape=(48, 64), seed=3)
    other, _ = nuclei(shape=(48, 64), seed=4)
    r = client.post(f"/api/v1/projects/{pid}/images", headers=h, data={"files": [
        (io.BytesIO(tiff(img)), "a.tif"), (io.BytesIO(tiff(labels)), "a_masks.tif"),
        (io.BytesIO(tiff(other)), "b.tif"), (io.BytesIO(b"MZ..."), "virus.exe")]})
    assert r.status_code == 201, r.json
    by_name = {x["name"]: x for x in r.json["results"]}
    assert by_name["a.tif"]["status"] == "imported" and by_name["a.tif"]["n_cells"] > 0
    assert by_name["b.tif"]["status"] == "imported"
    assert by_name["virus.exe"]["status"] == "rejected" and r.json["job_id"] is None
    page = client.get(f"/api/v1/projects/{pid}/images?status=annotated", headers=h).json
    assert [i["name"] for i in page["items"]] == ["a.tif"] and page["total"] == 1
    paged = client.get(f"/api/v1/projects/{pid}/images?per_page=1&page=2&sort=name",
                       headers=h).json
    assert [i["name"] for i in paged["items"]] == ["b.tif"] and paged["n_pages"] == 2
    image_id = by_name["a.tif"]["image_id"]
    detail = client.get(f"/api/v1/images/{image_id}", headers=h).json
    assert detail["shape"] == [1, 1, 48, 64] and detail["n_cells"] == by_name["a.tif"]["n_cells"]
    r = client.get(f"/api/v1/images/{image_id}/pixels.tif", headers=h)
    assert r.status_code == 200 and r.mimetype == "image/tiff"
    assert np.array_equal(tifffile.imread(io.BytesIO(r.data)), img)


def test_annotations_as_tiff_and_json_and_uploaded(server, db, world, image_id):
    client, h = server.test_client(), bearer(issue(db, "annotator"))
    _, labels = nuclei((60, 80))     # the image_id fixture's image
    r = client.post(f"/api/v1/images/{image_id}/annotations", headers=h,
                    data={"file": (io.BytesIO(tiff(labels)), "labels.tif")})
    assert r.status_code == 201 and r.json["status"] == "attached", r.json
    again = client.post(f"/api/v1/images/{image_id}/annotations", headers=h,
                        data={"file": (io.BytesIO(tiff(labels)), "labels.tif")})
    assert again.status_code == 200 and again.json["status"] == "skipped"
    replace = client.post(f"/api/v1/images/{image_id}/annotations", headers=h, data={
        "file": (io.BytesIO(tiff(labels)), "labels.tif"), "replace": "true"})
    assert (replace.status_code, replace.json["error"]["code"]) == (403, "forbidden")
    wrong = client.post(f"/api/v1/images/{image_id}/annotations", headers=bearer(
        issue(db, "reviewer")), data={"file": (io.BytesIO(tiff(labels[:10])), "l.tif"),
                                       "replace": "true"})
    assert (wrong.status_code, wrong.json["error"]["code"]) == (400, "invalid")
    tif = client.get(f"/api/v1/images/{image_id}/annotations/latest", headers=h)
    assert tif.status_code == 200 and tif.headers["X-Annotation-Version"] == "1"
    assert np.array_equal(tifffile.imread(io.BytesIO(tif.data)) > 0, labels > 0)
    js = client.get(f"/api/v1/images/{image_id}/annotations/1?format=json", headers=h).json
    assert js["n_cells"] == len(js["cells"]) == len(np.unique(labels)) - 1
    x, y = np.asarray(js["cells"][0]["polygon"]).mean(axis=0)
    assert labels[int(y), int(x)] == js["cells"][0]["label"]
    versions = client.get(f"/api/v1/images/{image_id}/annotations", headers=h).json["items"]
    assert [(v["version"], v["source"]) for v in versions] == [(1, "imported")]
    assert client.get(f"/api/v1/images/{image_id}/annotations/7",
                      headers=h).json["error"]["code"] == "not_found"


def test_uploads_over_the_size_limit_are_refused_as_json(server, db, world, config, serve):
    served = serve(config.replace(max_content_length=4096))
    img, _ = nuclei(shape=(48, 64), seed=3)
    r = served.test_client().post(f"/api/v1/projects/{world['project_id']}/images",
                                  headers=bearer(issue(db, "annotator")),
                                  data={"files": [(io.BytesIO(tiff(img)), "a.tif")]})
    assert (r.status_code, r.json["error"]["code"]) == (413, "too_large")


def test_polygons_round_trip_into_a_new_version(server, db, world, image_id):
    client = server.test_client()
    annotator, reviewer = bearer(issue(db, "annotator")), bearer(issue(db, "reviewer"))
    _, labels = nuclei((60, 80))
    url = f"/api/v1/images/{image_id}/annotations"
    assert client.post(url, headers=annotator, data={
        "file": (io.BytesIO(tiff(labels)), "l.tif")}).status_code == 201
    cells = client.get(f"{url}/latest?format=json", headers=annotator).json["cells"]
    r = client.post(f"{url}/polygons", headers=annotator, json={"cells": cells})
    assert r.status_code == 200 and r.json["status"] == "skipped"      # it has one already
    r = client.post(f"{url}/polygons", headers=reviewer, json={"cells": cells, "replace": True})
    assert r.status_code == 201 and r.json["status"] == "attached", r.json
    assert r.json["n_cells"] == len(cells)
    back = tifffile.imread(io.BytesIO(client.get(f"{url}/2", headers=reviewer).data))
    agree = np.logical_and(back > 0, labels > 0).sum() / np.logical_or(back > 0, labels > 0).sum()
    assert agree > 0.85
    bad = client.post(f"{url}/polygons", headers=reviewer, json={
        "cells": [{"polygon": [[1, 1], [2, 2]]}], "replace": True})
    assert (bad.status_code, bad.json["error"]["code"]) == (400, "invalid")
    assert bad.json["error"]["details"][0]["field"].startswith("cells.0.polygon")


def test_token_use_and_refusals_are_logged(server, db, world, caplog):
    import logging
    client, token = server.test_client(), issue(db, "viewer", name="notebook")
    with caplog.at_level(logging.INFO):
        client.get("/api/v1/projects", headers=bearer(token))
        client.get("/api/v1/projects", headers=bearer("cl_wrong"))
    used = [r.getMessage() for r in caplog.records if r.name == "cellloop.api"]
    assert any("('notebook') of viewer: GET /api/v1/projects -> 200" in m for m in used), used
    refused = [r for r in caplog.records if "api token refused" in r.getMessage()]
    assert refused and refused[0].levelno == logging.WARNING
    assert token not in caplog.text


def test_ids_and_pages_beyond_sql_integers_are_refused_not_a_server_error(server, db, world,
                                                                       image_id):
    client, h = server.test_client(), bearer(issue(db, "annotator"))
    huge = 10**30
    for url in (f"/api/v1/images/{huge}", f"/api/v1/jobs/{huge}",
                f"/api/v1/images/{image_id}/annotations/{huge}"):
        r = client.get(url, headers=h)
        assert (r.status_code, r.json["error"]["code"]) == (404, "not_found"), url
    for url in (f"/api/v1/projects/{world['project_id']}/images?page={huge}",
                f"/api/v1/images/{image_id}/prediction?model={huge}"):
        r = client.get(url, headers=h)
        assert (r.status_code, r.json["error"]["code"]) == (400, "invalid"), url
    for path, body in (("predictions", {"image_ids": [huge]}),
                       ("jobs", {"kind": "predict", "image_ids": [huge]})):
        r = client.post(f"/api/v1/projects/{world['project_id']}/{path}", headers=h, json=body)
        assert (r.status_code, r.json["error"]["code"]) == (400, "invalid"), path


def test_a_non_member_cannot_tell_an_image_or_model_id_exists(server, db, world, image_id):
    from app.tables import ModelVersion
    with db.session_scope() as s:
        mv = ModelVersion(project_id=world["project_id"], weights_blob_key="0" * 64)
        s.add(mv)
        s.flush()
        model_id = mv.id
    client, h = server.test_client(), bearer(issue(db, "outsider"))
    for real, missing in ((f"/images/{image_id}", "/images/999999"),
                          (f"/images/{image_id}/annotations", "/images/999999/annotations"),
                          (f"/images/{image_id}/prediction", "/images/999999/prediction"),
                          (f"/models/{model_id}", "/models/999999"),
                          (f"/models/{model_id}/download", "/models/999999/download")):
        a, b = (client.get("/api/v1" + url, headers=h) for url in (real, missing))
        assert a.status_code == b.status_code == 404 and a.json == b.json, (real, a.json, b.json)


def test_cancelling_a_queued_upload_removes_its_staged_files(server, db, world, config):
    import zipfile
    server.extensions["cellloop"].send = lambda _job_id: None      # it stays queued
    client, h = server.test_client(), bearer(issue(db, "annotator"))
    img, _ = nuclei(shape=(48, 64), seed=3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.tif", tiff(img))
    r = client.post(f"/api/v1/projects/{world['project_id']}/images", headers=h,
                    data={"files": [(io.BytesIO(buf.getvalue()), "plate.zip")]})
    assert r.status_code == 201 and r.json["job_id"], r.json
    staging = config.data_dir / "staging"
    assert any(staging.iterdir())
    r = client.post(f"/api/v1/jobs/{r.json['job_id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json["state"] == "cancelled", r.json
    assert not any(staging.iterdir())


def test_polygons_too_costly_to_draw_are_refused_as_invalid(server, db, world, image_id,
                                                            monkeypatch):
    from app.imaging import outlines
    monkeypatch.setattr(outlines, "RASTER_WORK_BASE", 10_000)
    monkeypatch.setattr(outlines, "RASTER_WORK_PER_PIXEL", 1)
    whole = {"polygon": [[0, 0], [80, 0], [80, 60], [0, 60]]}
    r = server.test_client().post(f"/api/v1/images/{image_id}/annotations/polygons",
                                  headers=bearer(issue(db, "annotator")),
                                  json={"cells": [whole] * 10})
    assert (r.status_code, r.json["error"]["code"]) == (400, "invalid")
    assert "too much to draw" in r.json["error"]["message"]


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/nowhere", "/api/v1/images/1/nothing"])
def test_unknown_api_paths_are_json_404_for_anyone(server, path):
    """Every path under /api/v1/ is the API's (the site guard lets only the API's own routes
    through): /api/v1/ was the app's HTML shell, served to anonymous users."""
    r = server.test_client().get(path)
    assert (r.status_code, r.is_json and r.json["error"]["code"]) == (404, "not_found")


def test_a_body_with_only_defaults_may_be_left_out(server, db, world, image_id):
    """POST /predictions with no body predicts every image (its documented default); a body
    with a required field left out is `invalid`, not a JSON parse error."""
    from app.tables import ModelVersion
    server.extensions["cellloop"].send = lambda _job_id: None
    with db.session_scope() as s:
        s.add(ModelVersion(project_id=world["project_id"], weights_blob_key="0" * 64,
                           is_active=True))
    client, h = server.test_client(), bearer(issue(db, "annotator"))
    r = client.post(f"/api/v1/projects/{world['project_id']}/predictions", headers=h)
    assert (r.status_code, r.json["kind"]) == (202, "predict"), r.json
    r = client.post(f"/api/v1/projects/{world['project_id']}/jobs", headers=h)
    assert (r.status_code, r.json["error"]["code"]) == (400, "invalid")
    assert r.json["error"]["details"][0]["field"] == "kind"
    doc = client.get("/api/v1/openapi.json").json["paths"]
    assert not doc["/api/v1/projects/{project_id}/predictions"]["post"]["requestBody"]["required"]
    assert doc["/api/v1/projects/{project_id}/jobs"]["post"]["requestBody"]["required"]

"""Pixel routes: renderings, thumbnails, overlays, export downloads; access and caching."""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from app.services import imports, uploads
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, png, tiff


@pytest.fixture
def image_id(db, config, world):
    img, lab = nuclei(shape=(64, 80))
    with db.session_scope() as s:
        results = imports.import_files(
            s, actor(s, "annotator"), LocalBlobStore(config.blob_dir), world["project_id"],
            [imports.ImportFile("a.tif", read=lambda: tiff(img), read_labels=lambda: tiff(lab))],
            1 << 28)
    return results[0].image_id


def test_render_and_cache(login, image_id):
    client = login("viewer")
    r = client.get(f"/api/images/{image_id}/render.jpg?size=40")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert PILImage.open(io.BytesIO(r.data)).size == (40, 32)
    again = client.get(f"/api/images/{image_id}/render.jpg?size=40",
                       headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    views = json.dumps([{"color": "#00ff00", "low": 0, "high": 1}])
    green = client.get(f"/api/images/{image_id}/render.png", query_string={"views": views})
    rgb = np.asarray(PILImage.open(io.BytesIO(green.data)))
    assert rgb[..., 0].max() == 0 and rgb[..., 1].max() == 255
    assert client.get(f"/api/images/{image_id}/render.png?views=[bad").status_code == 400
    assert client.get(f"/api/images/{image_id}/thumbnail.jpg").status_code == 200
    overlay = client.get(f"/api/images/{image_id}/overlay.png")
    assert overlay.status_code == 200
    assert np.asarray(PILImage.open(io.BytesIO(overlay.data))).shape == (64, 80, 4)


def test_routes_check_access(server, login, image_id):
    assert server.test_client().get(f"/api/images/{image_id}/render.jpg").status_code == 401
    outsider = login("outsider")
    assert outsider.get(f"/api/images/{image_id}/render.jpg").status_code == 404
    assert outsider.get(f"/api/images/{image_id}/overlay.png").status_code == 404
    assert outsider.get("/api/projects/1/export.zip").status_code == 404
    assert login("viewer").get("/api/images/999/render.jpg").status_code == 404


def test_export_download(login, image_id, world):
    r = login("viewer").get(f"/api/projects/{world['project_id']}/export.zip?formats=tiff,counts")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.data)).namelist()
    assert {"tiff/a.tif", "tiff/a_masks.tif", "counts.csv", "manifest.json"} <= set(names)
    bad = login("viewer").get(f"/api/projects/{world['project_id']}/export.zip?formats=gif")
    assert bad.status_code == 400 and "Unknown export format" in bad.get_json()["error"]


def test_upload_inline_and_staged(session, config, world):
    store = LocalBlobStore(config.blob_dir)
    sent = []
    img, _ = nuclei()
    annotator = actor(session, "annotator")
    data_url = "data:image/png;base64," + __import__("base64").b64encode(png(
        (img // 16).astype(np.uint8))).decode()
    out = uploads.upload(session, annotator, store, config, world["project_id"],
                         [("cells.png", data_url), ("notes.txt", b"hi")], sent.append)
    assert [r.status for r in out.results] == ["imported", "rejected"] and sent == []
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("x.tif", tiff(img))
    out = uploads.upload(session, annotator, store, config, world["project_id"],
                         [("batch.zip", zbuf.getvalue())], sent.append)
    assert out.job_id == sent[0] and out.results == []
    with pytest.raises(Exception, match="damaged"):
        uploads.upload(session, annotator, store, config, world["project_id"],
                       [("x.png", "data:image/png;base64,@@@")], sent.append)
    with pytest.raises(Exception, match="not a usable file name"):
        uploads.upload(session, annotator, store, config, world["project_id"],
                       [("../", b"x")], sent.append)

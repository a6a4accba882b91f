"""Gallery of a 10,000-image project and display rendering of a 2048x2048 16-bit 2-channel
image, timed server-side through the real Flask app (test client, logged in).

Baselines in the same run: the gallery on a 100-image project (does paging keep the time
flat in the number of images?), and for rendering, loading the stored array alone.

    python bench/bench_gallery_display.py
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import median_ms, write_section  # noqa: E402

from app import migrate  # noqa: E402
from app.wsgi import create_app  # noqa: E402
from app.config import Config  # noqa: E402
from app.permissions import SYSTEM  # noqa: E402
from app.services import projects, users  # noqa: E402
from app.tables import Annotation, Image, ModelVersion, Score  # noqa: E402
from storage.blobstore import LocalBlobStore, get_array, put_array  # noqa: E402


def fill(db, name: str, n: int, blob_key: str) -> int:
    with db.session_scope() as s:
        pid = projects.create_project(
            s, SYSTEM, name, owner_id=users.find_user(s, "bench").id,
            channels=[{"name": "DAPI", "color": "#00ffff"}, {"name": "GFP", "color": "#ff00ff"}],
            starting_model="none").id
        statuses = ["new", "annotated", "in_progress", "reviewed", "excluded"]
        rows = [dict(project_id=pid, name=f"plate{i // 96:03d}/well_{i:05d}.tif",
                     blob_key=blob_key, sha256=f"{name}-{i}", shape=[1, 2, 2048, 2048],
                     dtype="uint16", axes="ZCYX", channel_names=["a", "b"],
                     status=statuses[i % 5], quality_note="") for i in range(n)]
        s.execute(Image.__table__.insert(), rows)
        model = ModelVersion(project_id=pid, is_active=True)
        s.add(model)
        s.flush()
        ids = [r[0] for r in s.execute(Image.__table__.select().with_only_columns(
            Image.id).where(Image.project_id == pid))]
        s.execute(Annotation.__table__.insert(), [
            dict(image_id=i, version=1, n_cells=i % 300, source="imported", points=[],
                 cell_classes={}, review_state="accepted", review_comment="")
            for i in ids[::2]])
        s.execute(Score.__table__.insert(), [
            dict(image_id=i, model_version_id=model.id, strategy="entropy", value=(i * 7919) % 1000)
            for i in ids[1::2]])
    return pid


def gallery_callback(client, pid: int, sort: str, page: int) -> None:
    body = {"output": "..images-gallery.children...images-pager.max_value..",
            "outputs": [{"id": "images-gallery", "property": "children"},
                        {"id": "images-pager", "property": "max_value"}],
            "inputs": [{"id": "images-filter-status", "property": "value", "value": ""},
                       {"id": "images-sort", "property": "value", "value": sort},
                       {"id": "images-pager", "property": "active_page", "value": page},
                       {"id": "images-refresh", "property": "data", "value": 0}],
            "state": [{"id": "images-project-id", "property": "data", "value": pid}],
            "changedPropIds": ["images-sort.value"]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:300]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(env="testing", secret_key="bench-secret-key-123456",
                     data_dir=Path(tmp)).validated()
        migrate.upgrade(cfg)
        server = create_app(cfg)
        db = server.extensions["cellloop"].db
        store = LocalBlobStore(cfg.blob_dir)
        rng = np.random.default_rng(0)
        big = rng.integers(0, 4000, (1, 2, 2048, 2048), dtype=np.uint16)
        key = put_array(store, big)
        with db.session_scope() as s:
            users.create_user(s, SYSTEM, "bench", "bench-password", is_admin=True)
        p_small = fill(db, "small", 100, key)
        p_big = fill(db, "big", 10_000, key)
        client = server.test_client()
        login_page = client.get("/login").get_data(as_text=True)   # the form's CSRF token
        token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
        client.post("/login", data={"username": "bench", "password": "bench-password",
                                    "csrf_token": token})

        rows = []
        for label, sort, page in [("newest first, page 1", "-created", 1),
                                  ("name, page 200 of 417", "name", 200),
                                  ("most uncertain first", "-score", 1),
                                  ("most cells", "-cells", 1)]:
            small_ms = median_ms(lambda: gallery_callback(client, p_small, sort, min(page, 5)))
            big_ms = median_ms(lambda: gallery_callback(client, p_big, sort, page))
            rows.append(f"| {label} | {big_ms:.0f} ms | {small_ms:.0f} ms | "
                        f"{big_ms / small_ms:.2f}x |")
        def layout_request():
            r = client.post("/_dash-update-component", json={
            "output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"},
                        {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname",
                        "value": f"/projects/{p_big}/images"},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "changedPropIds": ["_pages_location.pathname"]})
            assert r.status_code == 200 and b"images-upload" in r.data, r.data[:300]

        layout_ms = median_ms(layout_request)

        with db.session_scope() as s:
            image_id = s.query(Image.id).filter(Image.project_id == p_big).first()[0]
        load_ms = median_ms(lambda: get_array(store, key), repeat=10)
        render = {}
        for size in (2048, 1024):
            url = f"/api/images/{image_id}/render.jpg?size={size}&z=0&views=%5B%5D"
            render[size] = median_ms(lambda url=url: client.get(url, headers={"Cache-Control":
                                                                          "no-cache"}), 10)
        thumb_ms = median_ms(lambda: client.get(f"/api/images/{image_id}/thumbnail.jpg"), 10)
    body = f"""### Gallery (goal: under 500 ms server time at 10,000 images)

Gallery callback (`/_dash-update-component`, 24 images per page with latest annotation,
annotator and score), median of 7, 10,000-image project vs 100-image project:

| query | 10,000 images | 100 images | ratio |
|---|---|---|---|
{chr(10).join(rows)}

Page layout (`/projects/<id>/images`, 10,000 images): {layout_ms:.0f} ms.

### Display rendering (goal: under 150 ms server time)

2048x2048 uint16, 2 channels (cyan + magenta: 4 colour components), auto contrast, JPEG, through `/api/images/<id>/render.jpg`,
median of 10:

| rendering | time | ratio to baseline |
|---|---|---|
| baseline: load the stored array (.npy, 16 MiB) | {load_ms:.0f} ms | 1.00x |
| full resolution 2048x2048 | {render[2048]:.0f} ms | {render[2048] / load_ms:.1f}x |
| viewer size 1024x1024 | {render[1024]:.0f} ms | {render[1024] / load_ms:.1f}x |
| thumbnail (160 px) | {thumb_ms:.0f} ms | {thumb_ms / load_ms:.1f}x |
"""
    write_section("gallery-display", "Gallery and display (issue 3)", body)


if __name__ == "__main__":
    main()

"""Export limited to accepted annotations (issue 19, item 15): each image's newest accepted
version, nothing that still waits for review, and the choice reaches the download route."""
import io
import json
import zipfile

import tifffile

from app.services import annotations, drafts, exports
from tests.conftest import actor
from tests.images_data import rect


def save(session, config, store, image_id, box):  # noqa: F811
    anna = actor(session, "annotator")
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(*box)})
    version = annotations.save(session, anna, config, store, image_id)
    session.commit()
    return version


def test_accepted_only_exports_the_newest_accepted_version(session, config, store, world,  # noqa: F811
                                                           three_images, tmp_path):
    pid, (a, b, _c) = world["project_id"], three_images
    reviewer, owner = actor(session, "reviewer"), actor(session, "owner")
    save(session, config, store, a, (2, 2, 9, 9))
    annotations.review(session, reviewer, a, accept=True)
    save(session, config, store, a, (30, 30, 40, 40))        # v2 of a: waits for review
    save(session, config, store, b, (2, 2, 9, 9))            # b: never accepted
    session.commit()

    summary = exports.export_project(session, owner, store, pid, tmp_path / "acc", ("tiff",
                                     "counts"), accepted_only=True)
    assert summary.n_images == 1 and summary.n_annotated == 1
    tiffs = sorted(p.name for p in (tmp_path / "acc" / "tiff").iterdir())
    assert tiffs == ["img0.tif", "img0_masks.tif"]
    mask = tifffile.imread(tmp_path / "acc" / "tiff" / "img0_masks.tif")
    assert mask[5, 5] > 0 and mask[35, 35] == 0               # version 1, not version 2
    counts = json.loads((tmp_path / "acc" / "counts.json").read_text())
    assert [(c["image"], c["annotation_version"]) for c in counts] == [("img0.tif", 1)]
    manifest = json.loads((tmp_path / "acc" / "manifest.json").read_text())
    assert manifest["accepted_only"] is True
    assert [m["exported_version"] for m in manifest["images"]] == [1, None, None]

    everything = exports.export_project(session, owner, store, pid, tmp_path / "all",
                                        ("counts",))
    assert everything.n_images == 3 and everything.n_annotated == 2
    rows = json.loads((tmp_path / "all" / "counts.json").read_text())
    assert [r["annotation_version"] for r in rows] == [2, 1, ""]


def test_download_route_takes_accepted_only(login, world, db, config, image_id):
    with db.session_scope() as s:
        anna = actor(s, "annotator")
        from storage.blobstore import LocalBlobStore
        store = LocalBlobStore(config.blob_dir)
        drafts.record_edit(s, anna, config, store, image_id,
                           {"op": "add", "shape": rect(2, 2, 9, 9)})
        annotations.save(s, anna, config, store, image_id)
    client = login("viewer")
    url = f"/api/projects/{world['project_id']}/export.zip?formats=counts"
    with zipfile.ZipFile(io.BytesIO(client.get(url + "&accepted=1").data)) as zf:
        assert json.loads(zf.read("counts.json")) == []
        assert json.loads(zf.read("manifest.json"))["accepted_only"] is True
    with zipfile.ZipFile(io.BytesIO(client.get(url).data)) as zf:
        assert len(json.loads(zf.read("counts.json"))) == 1


def test_images_page_export_link_carries_the_choice(server, world):
    from pages import images as page
    pid = world["project_id"]
    assert page.export_link(["tiff", "counts"], True, pid) == (
        f"/api/projects/{pid}/export.zip?formats=tiff%2Ccounts&accepted=1")
    assert page.export_link(["tiff"], False, pid).endswith("?formats=tiff")


def test_cli_export_accepted_only(tmp_path, monkeypatch, capsys):
    from app import cli
    from tests.images_data import nuclei, tiff
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    src = tmp_path / "src"
    (src / "masks").mkdir(parents=True)
    for k in range(3):
        img, lab = nuclei(seed=k)
        (src / f"cell{k}.tif").write_bytes(tiff(img))
        if k < 2:       # imported masks count as accepted; cell2 has none
            (src / "masks" / f"cell{k}_masks.tif").write_bytes(tiff(lab))
    assert cli.main(["init-db"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("boss-password\n"))
    assert cli.main(["create-user", "boss", "--admin"]) == 0
    assert cli.main(["create-project", "P", "--owner", "boss"]) == 0
    assert cli.main(["import", "P", str(src), "--masks", str(src / "masks"), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["export", "P", str(tmp_path / "o"), "--format", "counts",
                     "--accepted-only"]) == 0
    assert "exported 2 images (2 annotated)" in capsys.readouterr().out

"""Browser uploads through the services as the Images page makes them (base64 data URLs),
then the import job as the worker runs it: zips with images/ and labels/ folders, label images
uploaded with their images or on their own, staging removed on every outcome, unsupported
files named with every accepted suffix, and re-uploads of deleted images (issue 19, items 2,
6 and 14)."""
import base64
import io
import os
import time
import zipfile

import numpy as np
import pytest
from sqlalchemy import func, select

from app.demo import load_demo
from app.jobs import builtin
from app.jobs.runner import JobContext, run_job
from app.services import gallery, imports, projects, uploads
from app.services.formats import ACCEPTED_SUFFIXES
from app.services.sources import iter_import_files
from app.tables import Annotation, Image, Job
from storage.blobstore import get_array
from tests.conftest import actor
from tests.images_data import nuclei, png, tiff


def data_url(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


def zip_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def send(session, store, config, world, files, sent, who="owner", masks=False, replace=False):
    files = [(n, data_url(d)) for n, d in files]
    if masks:
        return uploads.upload_masks(session, actor(session, who), store, config,
                                    world["project_id"], files, sent.append, replace)
    return uploads.upload(session, actor(session, who), store, config, world["project_id"],
                          files, sent.append)


def job(db, job_id) -> Job:
    with db.session_scope() as s:
        return s.get(Job, job_id)


def staging(config):
    root = config.data_dir / "staging"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def plate(n=2):
    """{name: bytes} of a zip laid out as the CLI takes it: images/ and labels/."""
    files, labels = {}, {}
    for k in range(n):
        img, lab = nuclei(seed=k)
        files[f"images/cell_{k}.tif"] = tiff(img)
        files[f"labels/cell_{k}_masks.tif"] = tiff(lab)
        labels[f"images/cell_{k}.tif"] = lab
    return files, labels


def test_zip_upload_imports_images_and_masks_and_removes_staging(session, store, config, world,
                                                                 db):
    files, labels = plate()
    sent = []
    out = send(session, store, config, world, [("plate.zip", zip_bytes(files))], sent)
    assert out.job_id is not None and sent == [out.job_id] and out.results == []
    assert run_job(db, config, out.job_id) == "done"
    done = job(db, out.job_id)
    assert (done.result["imported"], done.result["rejected"]) == (2, 0), done.result
    assert done.message == "Done." and done.progress == 1.0
    assert [f["n_cells"] for f in done.result["files"]] == [len(np.unique(v)) - 1
                                                           for v in labels.values()]
    for name, lab in labels.items():
        image = session.scalar(select(Image).where(Image.name == name))
        ann = session.scalar(select(Annotation).where(Annotation.image_id == image.id))
        assert np.array_equal(get_array(store, ann.label_blob_key), lab)
    assert staging(config) == []


def test_a_listed_zip_stream_still_reads(session, store, world, tmp_path):
    """The import job once made a list of the zip's items first: every read then met a closed
    archive ("Attempt to use ZIP archive that was already closed")."""
    files, labels = plate()
    path = tmp_path / "plate.zip"
    path.write_bytes(zip_bytes(files))
    items = list(iter_import_files([path]))
    results = imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                                  items, 1 << 28)
    # each image came with its label image: as many cells as the mask has labels
    assert [(r.status, r.n_cells) for r in results] == [
        ("imported", len(np.unique(lab)) - 1) for lab in labels.values()]


def test_large_batch_goes_to_the_job_with_its_label_images(session, store, config, world, db,
                                                            monkeypatch):
    monkeypatch.setattr(uploads, "INLINE_MAX_FILES", 1)
    img, lab = nuclei()
    sent = []
    out = send(session, store, config, world,
               [("a.tif", tiff(img)), ("a_masks.tif", tiff(lab)), ("b.png", png((img >> 8).astype(np.uint8)))],
               sent)
    assert out.job_id is not None and out.results == []
    assert run_job(db, config, out.job_id) == "done"
    files = {f["name"]: f for f in job(db, out.job_id).result["files"]}
    assert set(files) == {"a.tif", "b.png"}
    assert files["a.tif"]["n_cells"] == len(np.unique(lab)) - 1
    assert staging(config) == []


def test_label_images_uploaded_with_their_images_inline(session, store, config, world):
    img, lab = nuclei()
    out = send(session, store, config, world,
               [("a.tif", tiff(img)), ("a_masks.tif", tiff(lab)), ("b_masks.tif", tiff(lab))],
               [])
    assert out.job_id is None
    assert [(r.name, r.status) for r in out.results] == [("a.tif", "imported"),
                                                         ("b_masks.tif", "rejected")]
    assert out.results[0].message == f"with labels a_masks.tif ({len(np.unique(lab)) - 1} cells)"
    assert "no image b.* is in this upload" in out.results[1].message
    assert "Label images (masks)" in out.results[1].message
    assert session.scalar(select(func.count(Image.id))) == 1


def test_failed_job_says_why_and_removes_staging(session, store, config, world, db, monkeypatch):
    sent = []
    out = send(session, store, config, world, [("plate.zip", zip_bytes(plate()[0]))], sent)

    def broken(*_a, **_k):
        raise OSError("No space left on device")
    monkeypatch.setattr(imports, "import_files", broken)
    assert run_job(db, config, out.job_id) == "failed"
    failed = job(db, out.job_id)
    assert failed.error == "OSError: No space left on device"
    assert staging(config) == []


def test_cancelled_job_removes_staging(session, store, config, world, db, monkeypatch):
    sent = []
    out = send(session, store, config, world, [("plate.zip", zip_bytes(plate(3)[0]))], sent)
    original = JobContext.progress

    def progress(self, fraction, message="", force=False):
        if fraction > 0:     # the user presses Cancel once the first file is in
            with self.db.session_scope() as s:
                s.get(Job, self.job_id).cancel_requested = True
        return original(self, fraction, message, force=True)
    monkeypatch.setattr(JobContext, "progress", progress)
    assert run_job(db, config, out.job_id) == "cancelled"
    assert staging(config) == []
    assert session.scalar(select(func.count(Image.id))) == 1    # the one before the cancel


def test_cancel_before_the_job_starts_removes_staging(session, store, config, world, db):
    from app.errors import PermissionDenied
    out = send(session, store, config, world, [("plate.zip", zip_bytes(plate(1)[0]))], [])
    with pytest.raises(PermissionDenied):
        uploads.cancel_import(session, actor(session, "reviewer"), config, out.job_id)
    session.rollback()
    assert len(staging(config)) == 1
    info = uploads.cancel_import(session, actor(session, "owner"), config, out.job_id)
    assert info.state == "cancelled" and staging(config) == []
    assert run_job(db, config, out.job_id) == "cancelled"     # the late message does nothing


def test_cancel_before_start_removes_files_staged_in_the_blob_store(session, store, config,
                                                                    world):
    """With STORAGE_URL an upload is staged as blobs for the worker of another host; a
    cancel before the job starts removes those blobs too (they were left in the bucket)."""
    from app.services import jobs
    staged = [["images", "a.tif", builtin.stage_blob(store, b"pixels of a")],
              ["labels", "a.tif", builtin.stage_blob(store, b"labels of a")]]
    info = jobs.submit_job(session, actor(session, "owner"), world["project_id"], "import",
                           {"staging": "0123456789abcdef0123456789abcdef", "staged_blobs": staged}, lambda _id: None)
    assert all(store.exists(key) for _s, _n, key in staged)
    done = uploads.cancel_import(session, actor(session, "owner"), config, info.id, store)
    assert done.state == "cancelled"
    assert not any(store.exists(key) for _s, _n, key in staged)


def test_the_same_file_imported_twice_at_once_is_a_duplicate(session, store, world,
                                                             monkeypatch):
    """Two uploads of one file racing: the second insert meets the unique (project, sha256)."""
    from sqlalchemy.exc import IntegrityError

    def racing(*_args, **_kwargs):
        raise IntegrityError("INSERT INTO image", {}, Exception("UNIQUE constraint failed"))
    monkeypatch.setattr(imports, "import_one", racing)
    [result] = imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                                   [imports.ImportFile("a.tif", read=lambda: b"")], 1 << 28)
    assert result.status == "duplicate" and "at the same moment" in result.message


def test_stale_staging_is_removed_but_live_jobs_keep_theirs(session, store, config, world, db):
    sent = []
    live = send(session, store, config, world, [("plate.zip", zip_bytes(plate(1)[0]))], sent)
    [live_token] = staging(config)
    orphan = builtin.staging_dir(config, "f" * 32)
    orphan.mkdir(parents=True)
    (orphan / "x.tif").write_bytes(b"x")
    fresh = builtin.staging_dir(config, "e" * 32)
    fresh.mkdir()
    old = time.time() - 2 * builtin.STALE_AFTER_S
    for folder in (orphan, builtin.staging_dir(config, live_token)):
        os.utime(folder, (old, old))
    assert builtin.clean_stale_staging(config, db) == ["f" * 32]
    assert staging(config) == sorted([live_token, "e" * 32])
    assert job(db, live.job_id).state == "queued"


def test_unsupported_files_are_named_with_every_accepted_suffix(session, store, config, world,
                                                                db):
    out = send(session, store, config, world, [("notes.doc", b"hello"),
                                               ("a.tif", tiff(nuclei()[0]))], [])
    [refused] = [r for r in out.results if r.status == "rejected"]
    assert refused.name == "notes.doc"
    for suffix in ACCEPTED_SUFFIXES:
        assert suffix in refused.message
    # inside a zip, through the job
    sent = []
    out = send(session, store, config, world,
               [("mixed.zip", zip_bytes({"notes.doc": b"hi", "c.png": png(np.eye(9, dtype=np.uint8))}))],
               sent)
    assert run_job(db, config, out.job_id) == "done"
    messages = [f["message"] for f in job(db, out.job_id).result["files"]]
    assert any(".zip" in m and ".h5" in m and "notes.doc" in m for m in messages)


def test_label_images_on_their_own_attach_to_images_by_stem(session, store, config, world):
    imgs = {k: nuclei(seed=k) for k in range(3)}
    imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                        [imports.ImportFile(f"plate/cell_{k}.tif", read=lambda k=k: tiff(imgs[k][0]))
                         for k in range(3)], 1 << 28)
    ids = {im.name: im.id for im in session.scalars(select(Image))}
    out = send(session, store, config, world, [
        ("cell_0_masks.tif", tiff(imgs[0][1])),
        ("cell_1.png", png(imgs[1][1].astype(np.uint8))),
        ("cell_2_labels.tif", tiff(imgs[2][1][:10])),             # wrong size
        ("cell_9_masks.tif", tiff(imgs[0][1])),                   # no such image
        ("notes.txt", b"x")], [], who="annotator", masks=True)
    assert [(r.name, r.status) for r in out.results] == [
        ("cell_0_masks.tif", "attached"), ("cell_1.png", "attached"),
        ("cell_2_labels.tif", "rejected"), ("cell_9_masks.tif", "rejected"),
        ("notes.txt", "rejected")]
    assert "'plate/cell_2.tif'" in out.results[2].message
    assert "no image named 'cell_9'" in out.results[3].message
    ann = session.scalar(select(Annotation).where(Annotation.image_id == ids["plate/cell_0.tif"]))
    assert ann.source == "imported" and np.array_equal(get_array(store, ann.label_blob_key),
                                                       imgs[0][1])
    assert session.get(Image, ids["plate/cell_1.tif"]).status == "annotated"
    # an annotated image keeps its annotation unless asked to replace it
    again = send(session, store, config, world, [("cell_0.tif", tiff(imgs[1][1]))], [],
                 masks=True)
    assert again.results[0].status == "skipped" and "Replace existing" in again.results[0].message
    replaced = send(session, store, config, world, [("cell_0.tif", tiff(imgs[1][1]))], [],
                    masks=True, replace=True)
    assert replaced.results[0].status == "attached"
    versions = session.scalars(select(Annotation.version).where(
        Annotation.image_id == ids["plate/cell_0.tif"])).all()
    assert sorted(versions) == [1, 2]


def test_a_zip_of_label_images_attaches_through_the_job(session, store, config, world, db):
    img, lab = nuclei()
    imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                        [imports.ImportFile("x.tif", read=lambda: tiff(img))], 1 << 28)
    sent = []
    out = send(session, store, config, world,
               [("masks.zip", zip_bytes({"labels/x_cp_masks.tif": tiff(lab),
                                         "labels/y_masks.tif": tiff(lab)}))], sent, masks=True)
    assert run_job(db, config, out.job_id) == "done"
    result = job(db, out.job_id).result
    assert result["attach_masks"] and (result["attached"], result["rejected"]) == (1, 1), result["files"]
    assert staging(config) == []


def test_viewer_cannot_upload_label_images(session, store, config, world):
    from app.errors import PermissionDenied
    with pytest.raises(PermissionDenied):
        send(session, store, config, world, [("a.tif", b"x")], [], who="viewer", masks=True)


def test_reupload_of_a_deleted_image(session, store, config, world):
    """Was a 500 (the (project, sha256) unique constraint met the soft-deleted row)."""
    img, lab = nuclei()
    owner = actor(session, "owner")
    [first] = imports.import_files(session, owner, store, world["project_id"], [imports.ImportFile(
        "a.tif", read=lambda: tiff(img), read_labels=lambda: tiff(lab))], 1 << 28)
    gallery.delete_images(session, owner, world["project_id"], [first.image_id])
    session.commit()
    assert projects.get_project(session, owner, world["project_id"]).n_images == 0
    assert [p.n_images for p in projects.list_projects(session, owner)] == [0]
    # an annotator is told it is a duplicate of a deleted image
    [dup] = send(session, store, config, world, [("again.tif", tiff(img))], [],
                 who="annotator").results
    assert dup.status == "duplicate" and "deleted image 'a.tif'" in dup.message
    assert "ask a project owner to restore it" in dup.message
    # the owner's upload restores it, with its annotation history
    [back] = send(session, store, config, world, [("again.tif", tiff(img))], []).results
    assert (back.status, back.restored, back.image_id) == ("imported", True, first.image_id)
    assert "restored" in back.message and "1 version" in back.message
    assert session.get(Image, first.image_id).deleted_at is None
    assert projects.get_project(session, owner, world["project_id"]).n_images == 1


def test_demo_is_idempotent_after_an_owner_deleted_a_demo_image(session, store, config):
    first = load_demo(session, store, config)
    pid = first["project_id"]
    owner = actor(session, "admin")
    victim = gallery.list_images(session, owner, pid).items[0]
    gallery.delete_images(session, owner, pid, [victim.id])
    session.commit()
    again = load_demo(session, store, config)     # was an IntegrityError: run.sh aborted
    assert again["imported"] == 0
    assert session.get(Image, victim.id).deleted_at is not None      # stays deleted
    assert projects.get_project(session, owner, pid).n_images == first["imported"] - 1


def test_replacing_annotations_with_label_images_needs_a_reviewer(session, store, config,
                                                                  world):
    """Replacing appends an accepted version over someone's work: annotators may attach label
    images to unannotated images only."""
    from app.errors import PermissionDenied
    img, lab = nuclei()
    imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                        [imports.ImportFile("x.tif", read=lambda: tiff(img))], 1 << 28)
    with pytest.raises(PermissionDenied):
        send(session, store, config, world, [("x_masks.tif", tiff(lab))], [],
             who="annotator", masks=True, replace=True)
    done = send(session, store, config, world, [("x_masks.tif", tiff(lab))], [],
                who="reviewer", masks=True, replace=True)
    assert done.results[0].status == "attached"


@pytest.mark.parametrize("name", ["a\x00b.tif", "x" * 250 + ".tif", ".hidden.tif"])
def test_unusable_file_names_are_refused_clearly(session, store, config, world, name):
    from app.errors import ValidationError
    with pytest.raises(ValidationError, match="not a usable file name"):
        send(session, store, config, world, [(name, b"x")], [])

"""`python -m app copy-to`: an embedded install (SQLite + local blobs) copied to PostgreSQL +
S3 (moto), verified by row counts, table digests and blob hashes; the copy then serves (a
new version saved on Postgres + S3 gets the next id and version number); a second run only
checks; a target holding other rows is refused."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import func, select

from app.config import Config
from app.db import Database
from app.deps import open_store
from app.scaleout_copy import CopyError, copy_install
from app.services import annotations, drafts, users
from app.tables import Annotation, Image
from storage.blobstore import get_array
from tests.images_data import rect
from tests.live.harness import ROOT
from tests.scaleout.conftest import app_env, new_database

pytestmark = [pytest.mark.scaleout]


def test_copy_to_postgres_and_s3_verified_then_serves(stack, config, db, world, lab, store,
                                                      monkeypatch):
    for key, value in app_env(stack).items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    with db.session() as s:
        annotator = users.find_user(s, "annotator")
    with db.session_scope() as s:
        image_id = s.scalars(select(Image.id).order_by(Image.id.desc())).first()
        drafts.record_edit(s, annotator, config, store, image_id,
                           {"op": "add", "shape": rect(5, 5, 30, 30)})
    with db.session_scope() as s:
        annotations.save(s, annotator, config, store, image_id)
    database_url = new_database(stack)
    storage_url = stack["STORAGE_URL"] + "-copy"

    # through the CLI, as an admin would run it
    done = subprocess.run(
        [sys.executable, "-m", "app", "copy-to", "--database-url", database_url,
         "--storage-url", storage_url], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, **{k: v for k, v in app_env(stack).items() if k.startswith("AWS_")},
             "CELLLOOP_DATA_DIR": str(config.data_dir), "SECRET_KEY": config.secret_key,
             "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verified" in done.stdout and "annotation" in done.stdout, done.stdout
    n_blobs = sum(1 for _ in store.keys())
    assert f"blobs: {n_blobs} " in done.stdout and n_blobs >= 12, done.stdout

    # the copy serves: same rows, blobs on S3, and a new save continues the numbering
    target = config.replace(database_url=database_url, storage_url=storage_url)
    tdb, tstore = Database(target.sqlalchemy_url), open_store(target)
    try:
        with tdb.session_scope() as s, db.session_scope() as src:
            for table in (Image, Annotation):
                assert s.scalar(select(func.count()).select_from(table)) == \
                    src.scalar(select(func.count()).select_from(table))
            ann = s.scalars(select(Annotation).where(Annotation.image_id == image_id)).one()
            assert np.array_equal(get_array(tstore, ann.label_blob_key),
                                  get_array(store, ann.label_blob_key))
            last_id = s.scalar(select(func.max(Annotation.id)))
        with tdb.session() as s:
            other = users.find_user(s, "owner")
        with tdb.session_scope() as s:
            drafts.record_edit(s, other, target, tstore, image_id - 1,
                               {"op": "add", "shape": rect(40, 40, 60, 60)})
        with tdb.session_scope() as s:
            v = annotations.save(s, other, target, tstore, image_id - 1)
        with tdb.session_scope() as s:
            assert s.get(Annotation, v.id) is not None and v.id == last_id + 1

        # again: the rows differ now (the new save), so the target is refused ...
        with pytest.raises(CopyError, match="already has other rows"):
            copy_install(config, database_url, storage_url)
    finally:
        tdb.engine.dispose()


def test_a_second_run_only_checks(stack, config, db, world, lab, monkeypatch):
    for key, value in app_env(stack).items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    database_url = new_database(stack)
    first = copy_install(config, database_url, stack["STORAGE_URL"] + "-again")
    again = copy_install(config, database_url, stack["STORAGE_URL"] + "-again")
    assert first.blobs_copied == first.blobs > 0 and again.blobs_copied == 0
    assert again.rows == first.rows and again.digests == first.digests

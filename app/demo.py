"""The demo project: a few real nuclei images (DSB 2018, CC0) and demo accounts.

Idempotent: running it again creates nothing twice, and brings back no demo image an owner
deleted (those are reported as duplicates of deleted images). Refused in production, because
the demo accounts have published passwords; a database once loaded with the demo and then run
in production refuses these accounts at login until their passwords are changed
(`python -m app set-password USERNAME`).

The project starts from the default starting model (the built-in nuclei model when it is
installed), so its first image opens with the model's cells as suggestions, and its queue
serves regions ranked by stratified random (`load_demo` returns the ranking job to run).
"""
from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session

from app.config import Config
from app.errors import ConfigurationError
from app.permissions import SYSTEM
from app.services import imports, learning_loop, projects, users
from app.tables import Project
from storage.blobstore import BlobStore

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_PROJECT = "Demo: DSB 2018 nuclei"
# (username, password, site admin, role in the demo project)
DEMO_ACCOUNTS = [
    ("admin", "cellloop-admin", True, "owner"),
    ("anna", "cellloop-anna", False, "annotator"),
    ("rita", "cellloop-rita", False, "reviewer"),
    ("victor", "cellloop-victor", False, "viewer"),
]


def published_passwords() -> dict[str, str]:
    """username -> the demo password published in this file (refused at login in production)."""
    return {username: password for username, password, _admin, _role in DEMO_ACCOUNTS}


def load_demo(session: Session, store: BlobStore, config: Config) -> dict:
    """Create the demo accounts and project; return what exists afterwards."""
    if config.is_production:
        raise ConfigurationError("The demo has published passwords; it is not loaded in "
                                 "production.")
    for username, password, is_admin, _role in DEMO_ACCOUNTS:
        if users.find_user(session, username) is None:
            users.create_user(session, SYSTEM, username, password, is_admin=is_admin)
    session.commit()
    pid = session.query(Project.id).filter(Project.name == DEMO_PROJECT).scalar()
    if pid is None:
        owner = users.find_user(session, "admin")
        pid = projects.create_project(
            session, SYSTEM, DEMO_PROJECT,
            "Fluorescence nuclei from the 2018 Data Science Bowl (BBBC038v1, CC0). Four "
            "images come with ground-truth annotations; the rest wait in the queue.",
            channels=[{"name": "nuclei", "color": "#ffffff"}],
            classes=[{"name": "nucleus", "color": "#ff3b30"}], owner_id=owner.id,
            store=store).id      # the default starting model: built-in nuclei-v1 if installed
    for username, _pw, _admin, role in DEMO_ACCOUNTS[1:]:
        projects.set_member(session, SYSTEM, pid, username, role)
    session.commit()
    files = []
    for path in sorted((DEMO_DIR / "images").glob("*.png")):
        label = DEMO_DIR / "labels" / (path.stem + ".tif")
        files.append(imports.ImportFile(
            name=path.name, read=path.read_bytes,
            read_labels=label.read_bytes if label.exists() else None, labels_name=label.name))
    results = imports.import_files(session, SYSTEM, store, pid, files, config.max_image_pixels,
                                  max_bytes=config.max_image_bytes, restore_deleted=False)
    imported = sum(r.status == "imported" for r in results)
    unannotated = sum(r.new_unannotated for r in results)
    # a scoring job that ranks the queue before the first annotator opens it (`python -m app
    # demo` runs it in its own process; nothing is sent to a worker)
    ranked = learning_loop.after_import(session, pid, None, unannotated, lambda _id: None)
    session.commit()
    log.info("demo project %r: %d new images", DEMO_PROJECT, imported)
    return {"project_id": pid, "imported": imported, "accounts": DEMO_ACCOUNTS,
            "ranking_job": ranked.get("scoring_job")}

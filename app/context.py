"""Per-process and per-request access to the app's parts, for Flask routes and Dash pages.

`get_session()` opens one SQLAlchemy session per request (closed at teardown);
`current_actor()` is the logged-in `User`, attached to that session.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g
from flask_login import current_user
from sqlalchemy.orm import Session

from app.config import Config
from app.db import Database
from app.tables import User


@dataclass
class AppState:
    config: Config
    db: Database
    _celery: object = None
    _blobs: object = None

    @property
    def blobs(self):
        """The blob store (local directory, or STORAGE_URL)."""
        from storage.blobstore import open_blob_store
        if self._blobs is None:
            self._blobs = open_blob_store(self.config.storage_url, self.config.blob_dir)
        return self._blobs

    def enqueue(self, job_id: int) -> None:
        """Send job `job_id` to the worker on its kind's queue (the Celery app is built on
        first use)."""
        from app.jobs.celery_app import make_celery
        from app.jobs.runner import send_job
        if self._celery is None:
            self._celery = make_celery(self.config)
        send_job(self.config, self.db, job_id, self._celery)


def state() -> AppState:
    return current_app.extensions["cellloop"]


def get_config() -> Config:
    return state().config


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = state().db.session()
    return g.db_session


def close_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def current_actor() -> User | None:
    """The logged-in, active user, or None."""
    user = current_user._get_current_object() if current_user else None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user

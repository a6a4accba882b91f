"""What the services need from the running process, in one object: the configuration, the
database, the blob store and how to start a job (`enqueue`).

The composition roots build one `Deps` per process: `app.wsgi` for the web server (kept in
`server.extensions["cellloop"]`), the worker for job handlers (`JobContext.deps`), the CLI
for its commands. Services take the parts they use from it rather than a row of positional
arguments. The blob store is opened here and nowhere else (`open_store`)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from app.config import Config
from app.db import Database


def open_store(config: Config):
    """The blob store the configuration names (a local folder, or STORAGE_URL)."""
    from storage.blobstore import open_blob_store
    return open_blob_store(config.storage_url, config.blob_dir)


@dataclass
class Deps:
    config: Config
    db: Database
    # How a job row is handed to a worker; None: through Celery on the job kind's queue.
    send: Callable[[int], None] | None = None
    _store: object = field(default=None, repr=False)
    _celery: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def store(self):
        """The blob store, opened on first use."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.config)
        return self._store

    def enqueue(self, job_id: int) -> None:
        """Start job `job_id`: `send` when given (CLI, tests), else Celery (the Celery app is
        built once per process, on first use)."""
        if self.send is not None:
            self.send(job_id)
            return
        from app.jobs.celery_app import make_celery
        from app.jobs.celery_app import send_job
        with self._lock:
            if self._celery is None:
                self._celery = make_celery(self.config)
        send_job(self.config, self.db, job_id, self._celery)

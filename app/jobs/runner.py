"""Run one job: mark it running, call its handler, record done/failed/cancelled.

Pure Python over the database; the Celery task is a thin wrapper, and tests can call
`run_job` directly as well as through a real worker.
"""
from __future__ import annotations

import logging
import time
import traceback

from sqlalchemy import select, update

from app.config import Config
from app.db import Database
from app.jobs.registry import HANDLERS, load_handlers
from app.tables import Job, utcnow

log = logging.getLogger(__name__)
STALE_MESSAGE = ("The worker running this job stopped (restart or crash) before it finished. "
                 "Start it again.")


class JobCancelled(Exception):
    """Raised inside a handler when the user asked to cancel."""


class JobContext:
    """What a handler gets: progress reporting, the cancel flag, and the database."""

    def __init__(self, db: Database, config: Config, job_id: int, project_id: int | None,
                 user_id: int | None, min_interval_s: float = 0.5):
        self.db = db
        self.config = config
        self.job_id = job_id
        self.project_id = project_id
        self.user_id = user_id
        self._min_interval = min_interval_s
        self._last_write = 0.0
        self.listeners: list = []     # e.g. the CLI printing progress
        self.send = None              # how follow-up jobs are started (default: Celery)

    def follow_up(self, kind: str, params: dict | None = None) -> int:
        """Queue another job in the same project for the same user (e.g. rescoring after
        training) and start it: through Celery, or as `send` says (CLI, tests)."""
        with self.db.session_scope() as s:
            job = Job(kind=kind, project_id=self.project_id, user_id=self.user_id,
                      params=dict(params or {}), state="queued", message="Waiting for a worker.")
            s.add(job)
            s.flush()
            job_id = job.id
        if self.send is not None:
            self.send(job_id)
        else:
            from app.jobs.celery_app import RUN_JOB, make_celery
            make_celery(self.config).send_task(RUN_JOB, args=[job_id])
        return job_id

    def progress(self, fraction: float, message: str = "", force: bool = False) -> None:
        """Store progress (0..1) and a message; raise JobCancelled if cancel was requested.

        Writes are throttled to one per `min_interval_s` unless `force`."""
        now = time.monotonic()
        if not force and now - self._last_write < self._min_interval:
            return
        self._last_write = now
        for listener in self.listeners:
            listener(fraction, message)
        with self.db.session_scope() as s:
            s.execute(update(Job).where(Job.id == self.job_id).values(
                progress=max(0.0, min(1.0, float(fraction))), message=message[:2000]))
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if cancel:
            raise JobCancelled()

    def cancel_requested(self) -> bool:
        """Whether the user asked to cancel (checked at most every `min_interval_s`)."""
        now = time.monotonic()
        if now - getattr(self, "_last_check", 0.0) < self._min_interval:
            return False
        self._last_check = now
        with self.db.session_scope() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))

    def check_cancel(self) -> None:
        with self.db.session_scope() as s:
            if s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)):
                raise JobCancelled()


def run_job(db: Database, config: Config, job_id: int, worker: str = "",
            listeners: list | None = None, send=None) -> str:
    """Run job `job_id` to the end; return its final state. `send(job_id)` starts follow-up
    jobs (default: Celery)."""
    load_handlers()
    config.apply_to_models()
    with db.session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            log.warning("job %s vanished before it ran", job_id)
            return "missing"
        if job.state != "queued":
            return job.state  # cancelled before it started, or delivered twice
        if job.cancel_requested:
            job.state, job.finished_at, job.message = "cancelled", utcnow(), "Cancelled."
            return job.state
        job.state, job.started_at, job.worker = "running", utcnow(), worker
        kind, params = job.kind, dict(job.params or {})
        ctx = JobContext(db, config, job.id, job.project_id, job.user_id)
        ctx.listeners = list(listeners or [])
        ctx.send = send
    handler = HANDLERS.get(kind)
    state, values = "done", {}
    try:
        if handler is None:
            raise LookupError(f"Unknown job kind {kind!r}")
        result = handler(ctx, **params)
        values = {"result": result or {}, "progress": 1.0}
    except JobCancelled:
        state, values = "cancelled", {"message": "Cancelled by the user."}
        log.info("job %s (%s) cancelled", job_id, kind)
    except Exception as exc:  # noqa: BLE001 - any failure of a handler is recorded on the job
        state = "failed"
        values = {"error": f"{type(exc).__name__}: {exc}",
                  "message": "Failed: " + str(exc)[:500]}
        log.error("job %s (%s) failed:\n%s", job_id, kind, traceback.format_exc())
    with db.session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            state=state, finished_at=utcnow(), **values))
    return state


def fail_stale_jobs(db: Database, worker: str) -> int:
    """Mark jobs left `running` by this worker (or by an unknown one) as failed."""
    with db.session_scope() as s:
        result = s.execute(update(Job).where(
            Job.state == "running", Job.worker.in_([worker, ""])).values(
            state="failed", finished_at=utcnow(), error=STALE_MESSAGE, message=STALE_MESSAGE))
        n = result.rowcount or 0
    if n:
        log.warning("marked %d stale running job(s) as failed", n)
    return n

"""Run one job: claim it, call its handler, record done/failed/cancelled.

Pure Python over the database; the Celery task is a thin wrapper, and tests can call
`run_job` directly as well as through a real worker.

Ownership: a run claims a queued job with one conditional UPDATE (queued -> running, with
its own `owner` id), so a message delivered twice runs once. While the handler works, a
thread beats `heartbeat_at` every HEARTBEAT_S. Only the owner may write progress or the
final state (every such UPDATE is conditioned on `owner`), so a job that was declared lost
cannot later flip to "done". `rows.reap_lost_jobs` fails running jobs whose heartbeat stopped
(the worker was killed, crashed or lost the database) and re-sends queued jobs whose
message may have been lost; it never touches a job that is still beating.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import traceback

from sqlalchemy import select, update

from app.config import Config
from app.db import Database
from app.deps import Deps
from app.jobs.handlers import handler_for
from app.states import JobState
from app.tables import Job, utcnow
from models.cancel import Cancelled

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0          # how often a running job proves its worker is alive


class JobLost(Exception):
    """This run no longer owns its job (it was declared lost): stop without writing."""


class JobContext:
    """What a handler gets: the job's ids, the process's dependencies (`deps`: config,
    database, blob store, how to start a job), progress reporting and the cancel flag.

    Cancelling has one form: `models.cancel.Cancelled`, raised by `progress` when the flag is
    set, and by the services and models when `should_stop()` says so."""

    def __init__(self, deps: Deps, job_id: int, project_id: int | None,
                 user_id: int | None, min_interval_s: float = 0.5):
        self.deps = deps
        self.db = deps.db
        self.config = deps.config
        self.job_id = job_id
        self.project_id = project_id
        self.user_id = user_id
        self._min_interval = min_interval_s
        self._last_write = 0.0
        self._last_check = 0.0
        self.listeners: list = []     # e.g. the CLI printing progress
        self.owner = ""               # this run's id; progress writes are conditioned on it
        self.lost = threading.Event() # set by the heartbeat when the job was taken away

    def progress(self, fraction: float, message: str = "", force: bool = False) -> None:
        """Store progress (0..1) and a message; raise `Cancelled` if cancel was requested.

        Writes are throttled to one per `min_interval_s` unless `force`."""
        now = time.monotonic()
        if not force and now - self._last_write < self._min_interval:
            return
        self._last_write = now
        for listener in self.listeners:
            listener(fraction, message)
        if self.lost.is_set():
            raise JobLost()
        with self.db.session_scope() as s:
            query = update(Job).where(Job.id == self.job_id)
            if self.owner:
                query = query.where(Job.owner == self.owner, Job.state == JobState.running)
            written = s.execute(query.values(
                progress=max(0.0, min(1.0, float(fraction))), message=message[:2000],
                heartbeat_at=utcnow())).rowcount
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if self.owner and not written:
            self.lost.set()
            raise JobLost()
        if cancel:
            raise Cancelled()

    def should_stop(self) -> bool:
        """Whether the work should stop now: the user asked to cancel (read at most every
        `min_interval_s`; once seen, it stays seen) or the job was taken away."""
        if self.lost.is_set() or getattr(self, "_cancel_seen", False):
            return True
        now = time.monotonic()
        if now - self._last_check < self._min_interval:
            return False
        self._last_check = now
        with self.db.session_scope() as s:
            self._cancel_seen = bool(s.scalar(select(Job.cancel_requested)
                                              .where(Job.id == self.job_id)))
        return self._cancel_seen


def new_owner(worker: str) -> str:
    """An id for one run of one job: worker name, process id and a random part."""
    return f"{worker or 'local'}:{os.getpid()}:{secrets.token_hex(4)}"[:128]


class Heartbeat:
    """A daemon thread that beats the job's `heartbeat_at` while its handler runs; when the
    beat finds the job no longer ours (declared lost), it sets `ctx.lost`."""

    def __init__(self, ctx: JobContext, interval_s: float = HEARTBEAT_S):
        self.ctx, self.interval = ctx, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{ctx.job_id}-heartbeat",
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.ctx.db.session_scope() as s:
                    n = s.execute(update(Job).where(
                        Job.id == self.ctx.job_id, Job.owner == self.ctx.owner,
                        Job.state == JobState.running).values(heartbeat_at=utcnow())).rowcount
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("job %s: heartbeat not written (%s)", self.ctx.job_id, exc)
                continue
            if not n:
                log.warning("job %s is no longer owned by %s; stopping it", self.ctx.job_id,
                            self.ctx.owner)
                self.ctx.lost.set()
                return


def run_job(db: Database, config: Config, job_id: int, worker: str = "",
            listeners: list | None = None, send=None,
            heartbeat_s: float = HEARTBEAT_S, deps: Deps | None = None) -> str:
    """Run job `job_id` to the end; return its final state. Follow-up jobs are started with
    `deps.enqueue`: `deps` as given (the worker's, built once per process), else one built for
    this run with `send(job_id)` as its sender (None: Celery)."""
    deps = deps or Deps(config, db, send=send)
    config.apply_to_models()
    owner = new_owner(worker)
    now = utcnow()
    with db.session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            log.warning("job %s vanished before it ran", job_id)
            return "missing"
        if job.state == JobState.queued and job.cancel_requested:
            s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.queued).values(
                state=JobState.cancelled, finished_at=now, message="Cancelled."))
            return JobState.cancelled
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.queued)
                            .values(state=JobState.running, started_at=now, heartbeat_at=now,
                                    worker=worker, owner=owner, message="Starting.")).rowcount
        if not claimed:
            s.rollback()
            current = s.get(Job, job_id)
            log.info("job %s not run: it is %s (delivered twice, or cancelled)", job_id,
                     current.state if current else "gone")
            return current.state if current else "missing"
        kind, params = job.kind, dict(job.params or {})
        project_id, user_id = job.project_id, job.user_id
    ctx = JobContext(deps, job_id, project_id, user_id)
    ctx.listeners = list(listeners or [])
    ctx.owner = owner
    handler = handler_for(kind)
    state, values = JobState.done, {}
    with Heartbeat(ctx, heartbeat_s):
        try:
            if handler is None:
                raise LookupError(f"Unknown job kind {kind!r}")
            result = handler(ctx, **params)
            values = {"result": result or {}, "progress": 1.0, "message": "Done."}
        except JobLost:
            log.warning("job %s (%s) was declared lost while it ran; its result is dropped",
                        job_id, kind)
            return "lost"
        except Cancelled:
            state, values = JobState.cancelled, {"message": "Cancelled by the user."}
            log.info("job %s (%s) cancelled", job_id, kind)
        except Exception as exc:  # noqa: BLE001 - any failure of a handler is recorded on the job
            state = JobState.failed
            values = {"error": f"{type(exc).__name__}: {exc}",
                      "message": "Failed: " + str(exc)[:500]}
            log.error("job %s (%s) failed:\n%s", job_id, kind, traceback.format_exc())
    if ctx.lost.is_set() and state == JobState.cancelled:
        return "lost"
    if not finish_job(db, job_id, owner, state, values):
        log.warning("job %s (%s) finished as %s, but it was no longer ours to finish", job_id,
                    kind, state)
        return "lost"
    return state


def finish_job(db: Database, job_id: int, owner: str, state: str, values: dict,
               attempts: int = 5) -> bool:
    """Write the final state, only if `owner` still holds the job; retried when the database
    is busy (a job whose last write hit a lock once stayed "running" for ever)."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            with db.session_scope() as s:
                return bool(s.execute(update(Job).where(
                    Job.id == job_id, Job.owner == owner, Job.state == JobState.running).values(
                    state=state, finished_at=utcnow(), **values)).rowcount)
        except Exception as exc:  # noqa: BLE001 - retried, then left to the reaper
            if attempt == attempts - 1:
                log.error("job %s: final state %s not written: %s", job_id, state, exc)
                return False
            time.sleep(delay)
            delay *= 2
    return False

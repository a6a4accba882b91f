"""Run one job: claim it, call its handler, record done/failed/cancelled.

Pure Python over the database; the Celery task is a thin wrapper, and tests can call
`run_job` directly as well as through a real worker.

Ownership: a run claims a queued job with one conditional UPDATE (queued -> running, with
its own `owner` id), so a message delivered twice runs once. While the handler works, a
thread beats `heartbeat_at` every HEARTBEAT_S. Only the owner may write progress or the
final state (every such UPDATE is conditioned on `owner`), so a job that was declared lost
cannot later flip to "done". `reap_lost_jobs` fails running jobs whose heartbeat stopped
(the worker was killed, crashed or lost the database) and re-sends queued jobs whose
message may have been lost; it never touches a job that is still beating.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
import time
import traceback

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Config
from app.db import Database
from app.jobs.registry import HANDLERS, load_handlers
from app.tables import Job, utcnow

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0          # how often a running job proves its worker is alive
LOST_AFTER_S = 30.0        # no heartbeat for this long: the job's worker is gone
STALE_MESSAGE = ("The worker running this job stopped (killed, crashed or restarted) before it "
                 "finished: no heartbeat for {seconds:.0f} s. Start it again.")


EXCLUSIVE = {"train", "score"}           # kinds that run at most once per project at a time
ACTIVE_STATES = ("queued", "running")


class JobLost(Exception):
    """This run no longer owns its job (it was declared lost): stop without writing."""


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
        self.owner = ""               # this run's id; progress writes are conditioned on it
        self.lost = threading.Event() # set by the heartbeat when the job was taken away

    def follow_up(self, kind: str, params: dict | None = None) -> int | None:
        """Queue another job in the same project for the same user (e.g. rescoring after
        training) and start it: through Celery, or as `send` says (CLI, tests). Kinds that
        run once per project are not queued twice: the id of the one already queued or
        running is returned instead (None when there is none and nothing was queued)."""
        with self.db.session_scope() as s:
            job_id, created = create_job_row(s, self.project_id, self.user_id, kind,
                                             dict(params or {}))
        if not created:
            return job_id
        if self.send is not None:
            self.send(job_id)
        else:
            send_job(self.config, self.db, job_id)
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
        if self.lost.is_set():
            raise JobLost()
        with self.db.session_scope() as s:
            query = update(Job).where(Job.id == self.job_id)
            if self.owner:
                query = query.where(Job.owner == self.owner, Job.state == "running")
            written = s.execute(query.values(
                progress=max(0.0, min(1.0, float(fraction))), message=message[:2000],
                heartbeat_at=utcnow())).rowcount
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if self.owner and not written:
            self.lost.set()
            raise JobLost()
        if cancel:
            raise JobCancelled()

    def cancel_requested(self) -> bool:
        """Whether the user asked to cancel (checked at most every `min_interval_s`)."""
        if self.lost.is_set():
            return True
        now = time.monotonic()
        if now - getattr(self, "_last_check", 0.0) < self._min_interval:
            return False
        self._last_check = now
        with self.db.session_scope() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))


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
                        Job.state == "running").values(heartbeat_at=utcnow())).rowcount
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
            heartbeat_s: float = HEARTBEAT_S) -> str:
    """Run job `job_id` to the end; return its final state. `send(job_id)` starts follow-up
    jobs (default: Celery)."""
    load_handlers()
    config.apply_to_models()
    owner = new_owner(worker)
    now = utcnow()
    with db.session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            log.warning("job %s vanished before it ran", job_id)
            return "missing"
        if job.state == "queued" and job.cancel_requested:
            s.execute(update(Job).where(Job.id == job_id, Job.state == "queued").values(
                state="cancelled", finished_at=now, message="Cancelled."))
            return "cancelled"
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.state == "queued").values(
            state="running", started_at=now, heartbeat_at=now, worker=worker, owner=owner,
            message="Starting.")).rowcount
        if not claimed:
            s.rollback()
            current = s.get(Job, job_id)
            log.info("job %s not run: it is %s (delivered twice, or cancelled)", job_id,
                     current.state if current else "gone")
            return current.state if current else "missing"
        kind, params = job.kind, dict(job.params or {})
        project_id, user_id = job.project_id, job.user_id
    ctx = JobContext(db, config, job_id, project_id, user_id)
    ctx.listeners = list(listeners or [])
    ctx.send = send
    ctx.owner = owner
    handler = HANDLERS.get(kind)
    state, values = "done", {}
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
        except JobCancelled:
            state, values = "cancelled", {"message": "Cancelled by the user."}
            log.info("job %s (%s) cancelled", job_id, kind)
        except Exception as exc:  # noqa: BLE001 - any failure of a handler is recorded on the job
            state = "failed"
            values = {"error": f"{type(exc).__name__}: {exc}",
                      "message": "Failed: " + str(exc)[:500]}
            log.error("job %s (%s) failed:\n%s", job_id, kind, traceback.format_exc())
    if ctx.lost.is_set() and state == "cancelled":
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
                    Job.id == job_id, Job.owner == owner, Job.state == "running").values(
                    state=state, finished_at=utcnow(), **values)).rowcount)
        except Exception as exc:  # noqa: BLE001 - retried, then left to the reaper
            if attempt == attempts - 1:
                log.error("job %s: final state %s not written: %s", job_id, state, exc)
                return False
            time.sleep(delay)
            delay *= 2
    return False


def create_job_row(session: Session, project_id: int | None, user_id: int | None, kind: str,
                   params: dict) -> tuple[int, bool]:
    """(job id, created): a new queued job row, or, for kinds that run once per project, the
    one already queued or running (created False). Jobs whose worker stopped beating are
    failed first, so a dead worker never blocks the project. The caller commits."""
    exclusive = project_id is not None and kind in EXCLUSIVE
    if exclusive:
        reap_lost(session, project_id)
        busy = _active(session, project_id, kind)
        if busy is not None:
            return busy, False
    job = Job(kind=kind, project_id=project_id, user_id=user_id, params=dict(params),
              state="queued", message="Waiting for a worker.")
    try:
        with session.begin_nested():     # two requests at once: the unique index decides
            session.add(job)
            session.flush()
    except IntegrityError:
        busy = _active(session, project_id, kind) if exclusive else None
        if busy is None:
            raise
        return busy, False
    return job.id, True


def _active(session: Session, project_id: int, kind: str) -> int | None:
    return session.scalar(select(Job.id).where(
        Job.project_id == project_id, Job.kind == kind, Job.state.in_(ACTIVE_STATES)))


def reap_lost(session: Session, project_id: int | None = None,
              lost_after_s: float = LOST_AFTER_S) -> list[int]:
    """Fail running jobs whose heartbeat is older than `lost_after_s` (their worker is gone),
    in the caller's transaction; return their ids. Jobs still beating are never touched."""
    cutoff = utcnow() - dt.timedelta(seconds=lost_after_s)
    silent = (Job.state == "running") & ((Job.heartbeat_at.is_(None) & (
        Job.started_at.is_(None) | (Job.started_at < cutoff))) | (Job.heartbeat_at < cutoff))
    query = select(Job.id).where(silent)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    ids = list(session.scalars(query))
    if ids:
        message = STALE_MESSAGE.format(seconds=lost_after_s)
        session.execute(update(Job).where(Job.id.in_(ids), silent).values(
            state="failed", finished_at=utcnow(), error=message, message=message))
        log.warning("failed %d job(s) whose worker stopped beating: %s", len(ids), ids)
    return ids


def reap_lost_jobs(db: Database, lost_after_s: float = LOST_AFTER_S) -> list[int]:
    with db.session_scope() as s:
        return reap_lost(s, lost_after_s=lost_after_s)


def queued_job_ids(db: Database) -> list[int]:
    with db.session_scope() as s:
        return list(s.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)))


def send_job(config: Config, db: Database, job_id: int, celery=None) -> None:
    """Hand job `job_id` to Celery on its kind's queue and note when it was sent."""
    from app.jobs.celery_app import RUN_JOB, make_celery, queue_for
    with db.session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        queue = job.queue or queue_for(job.kind)
        job.queue, job.sent_at = queue, utcnow()
    (celery or make_celery(config)).send_task(RUN_JOB, args=[job_id], queue=queue)

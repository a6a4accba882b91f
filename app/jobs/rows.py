"""Job rows in the database, below everything that runs or submits jobs: create a queued row
(one active row per project for exclusive kinds), and fail the running rows whose worker
stopped beating.

Both the service that submits jobs (`app.services.jobs`) and the runner use these, so this
module imports only the tables, the states and the kinds table.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import Database
from app.jobs.kinds import is_exclusive
from app.states import ACTIVE_JOB_STATES, JobState
from app.tables import Job, utcnow

log = logging.getLogger(__name__)
LOST_AFTER_S = 30.0        # no heartbeat for this long: the job's worker is gone
STALE_MESSAGE = ("The worker running this job stopped (killed, crashed or restarted) before it "
                 "finished: no heartbeat for {seconds:.0f} s. Start it again.")


def create_job_row(session: Session, project_id: int | None, user_id: int | None, kind: str,
                   params: dict) -> tuple[int, bool]:
    """(job id, created): a new queued job row, or, for kinds that run once per project, the
    one already queued or running (created False). Jobs whose worker stopped beating are
    failed first, so a dead worker never blocks the project. The caller commits."""
    exclusive = project_id is not None and is_exclusive(kind)
    if exclusive:
        reap_lost(session, project_id)
        busy = active_job(session, project_id, kind)
        if busy is not None:
            return busy, False
    job = Job(kind=kind, project_id=project_id, user_id=user_id, params=dict(params),
              state=JobState.queued, message="Waiting for a worker.")
    try:
        with session.begin_nested():     # two requests at once: the unique index decides
            session.add(job)
            session.flush()
    except IntegrityError:
        busy = active_job(session, project_id, kind) if exclusive else None
        if busy is None:
            raise
        return busy, False
    return job.id, True


def active_job(session: Session, project_id: int, kind: str) -> int | None:
    """The id of the queued or running job of `kind` in the project, if any."""
    return session.scalar(select(Job.id).where(
        Job.project_id == project_id, Job.kind == kind, Job.state.in_(ACTIVE_JOB_STATES)))


def reap_lost(session: Session, project_id: int | None = None,
              lost_after_s: float = LOST_AFTER_S) -> list[int]:
    """Fail running jobs whose heartbeat is older than `lost_after_s` (their worker is gone),
    in the caller's transaction; return their ids. Jobs still beating are never touched."""
    cutoff = utcnow() - dt.timedelta(seconds=lost_after_s)
    silent = (Job.state == JobState.running) & ((Job.heartbeat_at.is_(None) & (
        Job.started_at.is_(None) | (Job.started_at < cutoff))) | (Job.heartbeat_at < cutoff))
    query = select(Job.id).where(silent)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    ids = list(session.scalars(query))
    if ids:
        message = STALE_MESSAGE.format(seconds=lost_after_s)
        session.execute(update(Job).where(Job.id.in_(ids), silent).values(
            state=JobState.failed, finished_at=utcnow(), error=message, message=message))
        log.warning("failed %d job(s) whose worker stopped beating: %s", len(ids), ids)
    return ids


def reap_lost_jobs(db: Database, lost_after_s: float = LOST_AFTER_S) -> list[int]:
    with db.session_scope() as s:
        return reap_lost(s, lost_after_s=lost_after_s)


def queued_job_ids(db: Database) -> list[int]:
    with db.session_scope() as s:
        return list(s.scalars(select(Job.id).where(Job.state == JobState.queued)
                              .order_by(Job.id)))

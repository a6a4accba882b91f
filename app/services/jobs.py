"""Jobs as the user sees them: submit, list, inspect, cancel.

A job row is committed before its task is sent, so the worker always finds it. The kinds, the
permission each needs and which run at most once per project at a time (one training per
project) are the table in `app.jobs.kinds`; this module never imports the handlers.

What a job says is worked out when it is read (`JobInfo.message`), not stored: a queued job
names the job it waits behind on its queue (a worker per queue runs one job at a time), a
finished job states its outcome ("8 imported, 0 duplicates, 0 rejected.") rather than its
last progress message.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, PermissionDenied
from app.permissions import Actor, Role, require, role_of
from app.jobs.kinds import kind_of, queue_for
from app.jobs.rows import create_job_row, reap_lost
from app.states import ACTIVE_JOB_STATES, JobState
from app.tables import Job, Membership, User, utcnow
from app.wording import plural


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str
    project_id: int | None
    username: str
    state: str
    progress: float
    message: str
    error: str
    result: dict
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    queue: str = ""

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return (end - self.started_at).total_seconds()

    @property
    def remaining_s(self) -> float | None:
        """Linear estimate from progress so far: elapsed × (1 − progress) / progress (None
        until there is some). A training job's progress is the share of its expected time
        spent, so for it this is its own estimate from the first timed steps on."""
        elapsed = self.elapsed_s
        if elapsed is None or self.state != JobState.running or self.progress <= 0.001 or elapsed < 2:
            return None
        return elapsed * (1 - self.progress) / self.progress


def _info(job: Job, username: str, waiting: str = "") -> JobInfo:
    result = dict(job.result or {})
    message = job.message
    if job.state == JobState.done:
        message = outcome(job.kind, result, job.message)
    elif job.state == JobState.queued and waiting:
        message = waiting
    return JobInfo(job.id, job.kind, job.project_id, username, job.state, job.progress,
                   message, job.error, result, job.cancel_requested, job.created_at,
                   job.started_at, job.finished_at, _queue(job))


def ranking_sentence(ranking: dict) -> str:
    """" The queue is being ranked (job #N)." after an import that ranks the pool
    (`learning_loop.after_import`'s result), or why it does not; "" when nothing was to
    rank."""
    if ranking.get("scoring_job"):
        return f" The queue is being ranked (job #{ranking['scoring_job']})."
    return f" {ranking['scoring_note']}" if ranking.get("scoring_note") else ""


def outcome(kind: str, result: dict, message: str = "") -> str:
    """One line on what a finished job did: the handler's own `outcome`, or one made from
    the result of the kinds that give none."""
    text = result.get("outcome")
    if isinstance(text, str) and text:
        return text
    if kind == "import":
        counts = [(k, v) for k, v in result.items() if isinstance(v, int)
                  and not isinstance(v, bool) and not (k == "restored" and v == 0)
                  and k not in ("prediction_job", "scoring_job")]
        if counts:
            follow = (f" The model's suggestions for the new images are being predicted "
                      f"(job #{result['prediction_job']})." if result.get("prediction_job")
                      else "")
            follow += ranking_sentence(result)
            return ", ".join(plural(v, k) if k == "duplicate" else f"{v} {k}"
                             for k, v in counts) + "." + follow
    if kind == "score" and "n_images" in result:
        return (f"Scored {plural(result['n_images'], 'image')} with {result.get('strategy')} "
                f"under model #{result.get('model_version_id')}.")
    if kind == "predict" and "n_images" in result:
        return (f"Predicted {plural(result['n_images'], 'image')} with model "
                f"#{result.get('model_version_id')}.")
    if kind == "simulate" and "n_images" in result:
        return f"Simulation finished on {plural(result['n_images'], 'image')}."
    return message or "Done."


def _queue(job) -> str:
    return job.queue or queue_for(job.kind)


def waiting_texts(session: Session, actor: Actor, queued: list[Job]) -> dict[int, str]:
    """{job id: what it waits for} for queued jobs: "Waiting behind job #N (train, running)"
    when a job on the same queue is running or queued before it (the one running, else the
    first queued), else "Waiting for a worker." The kind of a job in a project the actor
    cannot see is not given."""
    if not queued:
        return {}
    active = session.execute(select(Job.id, Job.kind, Job.queue, Job.state, Job.project_id)
                             .where(Job.state.in_(ACTIVE_JOB_STATES)).order_by(Job.id)).all()
    visible = None if actor.is_admin else set(session.scalars(
        select(Membership.project_id).where(Membership.user_id == actor.id)))
    out = {}
    for job in queued:
        queue = _queue(job)
        ahead = [a for a in active if _queue(a) == queue and a.id != job.id
                 and (a.state == JobState.running or a.id < job.id)]
        if not ahead:
            out[job.id] = "Waiting for a worker."
            continue
        first = next((a for a in ahead if a.state == JobState.running), ahead[0])
        seen = visible is None or first.project_id in visible
        more = f" and {len(ahead) - 1} more" if len(ahead) > 1 else ""
        if seen:
            out[job.id] = f"Waiting behind job #{first.id} ({first.kind}, {first.state}){more}."
        else:   # nothing about projects the user cannot see, not even a job number
            out[job.id] = f"Waiting behind a job of another project{more}."
    return out


def submit_job(session: Session, actor: Actor, project_id: int | None, kind: str,
               params: dict, enqueue: Callable[[int], None]) -> JobInfo:
    """Create a job row, commit it, and hand its id to `enqueue` (the Celery sender).
    Conflict when `kind` runs once per project and one is already queued or running."""
    job_kind = kind_of(kind)
    if job_kind is None:
        raise NotFound(f"Unknown job kind {kind!r}.")
    if project_id is None:
        if not actor.is_admin:
            raise PermissionDenied("Only site admins can start jobs outside a project.")
    else:
        require(session, actor, project_id, job_kind.action)
    job_id, created = create_job_row(session, project_id, actor.id, kind, params)
    if not created:
        session.commit()   # keep the reaping of a dead worker's job
        raise Conflict(f"A {kind} job (#{job_id}) is already queued or running in this "
                       "project; wait for it or cancel it.")
    session.commit()
    enqueue(job_id)
    return _info(session.get(Job, job_id), actor.username)


def _visible(session: Session, actor: Actor):
    query = select(Job, User.username).outerjoin(User, User.id == Job.user_id)
    if actor.is_admin:
        return query
    member_projects = select(Membership.project_id).where(Membership.user_id == actor.id)
    return query.where(or_(Job.project_id.in_(member_projects),
                           (Job.project_id.is_(None)) & (Job.user_id == actor.id)))


def list_jobs(session: Session, actor: Actor, project_id: int | None = None,
              limit: int = 50) -> list[JobInfo]:
    query = _visible(session, actor)
    if project_id is not None:
        require(session, actor, project_id, "view")
        query = query.where(Job.project_id == project_id)
    rows = session.execute(query.order_by(Job.id.desc()).limit(max(1, min(limit, 500)))).all()
    waiting = waiting_texts(session, actor, [job for job, _ in rows
                                             if job.state == JobState.queued])
    return [_info(job, name or "system", waiting.get(job.id, "")) for job, name in rows]


def get_job(session: Session, actor: Actor, job_id: int) -> JobInfo:
    row = session.execute(_visible(session, actor).where(Job.id == job_id)).first()
    if row is None:
        raise NotFound("No such job.")
    job = row[0]
    waiting = waiting_texts(session, actor, [job] if job.state == JobState.queued else [])
    return _info(job, row[1] or "system", waiting.get(job.id, ""))


def _may_cancel(session: Session, actor: Actor, job: Job) -> bool:
    if actor.is_admin or (actor.id is not None and job.user_id == actor.id):
        return True
    role = role_of(session, actor, job.project_id) if job.project_id is not None else None
    return role is not None and role >= Role.owner


def may_cancel(session: Session, actor: Actor, job_id: int) -> bool:
    """Whether `actor` may cancel the job (the page shows Cancel only then)."""
    get_job(session, actor, job_id)                   # members only
    return _may_cancel(session, actor, session.get(Job, job_id))


def cancel_job(session: Session, actor: Actor, job_id: int) -> JobInfo:
    """Ask a job to stop: its handler stops at the next step; a queued job never starts."""
    info = get_job(session, actor, job_id)
    job = session.get(Job, job_id)
    if not _may_cancel(session, actor, job):
        raise PermissionDenied("Only the person who started a job, project owners and site "
                               "admins can cancel it.")
    if job.state == JobState.queued:
        # Nobody is running it: cancel it now (the worker skips it if the message arrives).
        session.execute(update(Job).where(Job.id == job_id, Job.state == JobState.queued).values(
            state=JobState.cancelled, cancel_requested=True, finished_at=utcnow(),
            message="Cancelled before it started."))
    elif job.state == JobState.running:
        job.cancel_requested = True
        if job.project_id is not None:   # a job whose worker is gone ends now, as failed
            reap_lost(session, job.project_id)
    session.flush()
    session.expire_all()
    return get_job(session, actor, info.id)

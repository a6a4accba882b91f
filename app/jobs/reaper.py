"""The worker's watch over jobs: fail running jobs whose worker stopped beating, and send
queued jobs again when their message may have been lost (at start, and whenever a queue of
this worker has had nothing running for RESEND_AFTER_S while a job of it still waits).

Runs in the Celery worker's main process (a daemon thread), which never runs jobs itself, so
it keeps watching while a child trains and after a child was killed. Sending a queued job
twice is harmless: `run_job` claims a job with one conditional UPDATE, so the second delivery
finds it no longer queued and does nothing.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import select

from app.config import Config
from app.db import Database
from app.jobs.celery_app import queue_for, send_job
from app.jobs.rows import LOST_AFTER_S, reap_lost_jobs
from app.states import JobState
from app.tables import Job, utcnow

log = logging.getLogger(__name__)
INTERVAL_S = 10.0
RESEND_AFTER_S = 60.0


class Reaper:
    def __init__(self, config: Config, queues: list[str], celery, interval_s: float = INTERVAL_S,
                 lost_after_s: float = LOST_AFTER_S):
        self.config, self.queues, self.celery = config, list(queues), celery
        self.interval, self.lost_after = interval_s, lost_after_s
        self.db = Database(config.sqlalchemy_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-reaper", daemon=True)

    def recover(self) -> None:
        """At worker start: fail the jobs of dead workers, re-send this worker's queued jobs."""
        reap_lost_jobs(self.db, self.lost_after)
        with self.db.session_scope() as s:
            queued = [(j.id, j.queue or queue_for(j.kind)) for j in
                      s.scalars(select(Job).where(Job.state == JobState.queued).order_by(Job.id))]
        for job_id, queue in queued:
            if queue in self.queues:
                log.info("re-sending queued job %s to queue %s", job_id, queue)
                send_job(self.config, self.db, job_id, self.celery)

    def resend_lost(self, after_s: float = RESEND_AFTER_S) -> list[int]:
        """Re-send the queued jobs of this worker's queues that were sent over `after_s` ago
        while nothing runs on their queue: the worker is idle, so their message was lost
        (e.g. a pool child died after taking it). A duplicate message is harmless."""
        cutoff = utcnow() - dt.timedelta(seconds=after_s)
        with self.db.session_scope() as s:
            running = {j.queue or queue_for(j.kind)
                       for j in s.scalars(select(Job).where(Job.state == JobState.running))}
            waiting = [(j.id, j.queue or queue_for(j.kind)) for j in s.scalars(
                select(Job).where(Job.state == JobState.queued, Job.sent_at.is_not(None),
                                  Job.sent_at < cutoff).order_by(Job.id))]
        lost = [job_id for job_id, queue in waiting
                if queue in self.queues and queue not in running]
        for job_id in lost:
            log.warning("queued job %s waited %.0f s on an idle queue; sending it again",
                        job_id, after_s)
            send_job(self.config, self.db, job_id, self.celery)
        return lost

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reap_lost_jobs(self.db, self.lost_after)
                self.resend_lost()
            except Exception as exc:  # noqa: BLE001 - the watch goes on; next round retries
                log.warning("job reaper: %s", exc)

"""The Celery application, built from Config: SQLite transport by default, Redis when
REDIS_URL is set; and `send_job`, which hands a job row to it on its kind's queue (the queues
and which kind goes where: `app.jobs.kinds`)."""
from __future__ import annotations

from celery import Celery

from app.config import Config
from app.db import Database
from app.jobs.kinds import UI_QUEUE, queue_for
from app.tables import Job, utcnow

RUN_JOB = "cellloop.run_job"


def make_celery(config: Config) -> Celery:
    celery = Celery("cellloop", broker=config.celery_broker_url,
                    backend=config.celery_result_backend, include=["app.jobs.tasks"],
                    set_as_current=True)
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,              # a job whose worker dies is not silently lost
        worker_prefetch_multiplier=1,     # long jobs: take one at a time
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        task_default_queue="gpu",
        # A killed worker child must not lose the message silently: the job row is failed
        # by the reaper (no heartbeat), so the message is acknowledged, not redelivered.
        task_reject_on_worker_lost=False,
        # Dash's background callback tasks ("background_callback_<key>", REDIS_URL only) run
        # on the ui queue, served by workers that build the Dash app (app.jobs.kinds.UI_QUEUE).
        task_routes={"background_callback_*": {"queue": UI_QUEUE}},
        cellloop_config=config,
    )
    if config.redis_url:
        # Redis redelivers a message not acknowledged within the visibility timeout (1 h by
        # default) to another worker: make it longer than any training budget, or a long job
        # would be handed out twice. (Redis only: the SQLite transport passes these options
        # to create_engine, which refuses them.)
        celery.conf.broker_transport_options = {"visibility_timeout": 12 * 3600}
    return celery


def prepare_broker(config: Config) -> None:
    """Create the embedded (SQLite) broker's tables now, from `init-db`: the workers that
    run.sh starts side by side each tried to create them at once, and one logged
    "table kombu_queue already exists" and "Connection to broker lost" before retrying.
    Nothing to do with Redis."""
    if config.redis_url:
        return
    with make_celery(config).connection_for_write() as connection:
        connection.default_channel.session.close()


def send_job(config: Config, db: Database, job_id: int, celery=None) -> None:
    """Hand job `job_id` to Celery on its kind's queue and note when it was sent (a new
    Celery app is built when none is given: pass the process's own, see `app.deps.Deps`)."""
    with db.session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        queue = job.queue or queue_for(job.kind)
        job.queue, job.sent_at = queue, utcnow()
    (celery or make_celery(config)).send_task(RUN_JOB, args=[job_id], queue=queue)

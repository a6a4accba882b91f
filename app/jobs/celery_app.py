"""The Celery application, built from Config: SQLite transport by default, Redis when
REDIS_URL is set."""
from __future__ import annotations

from celery import Celery

from app.config import Config

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
        cellloop_config=config,
    )
    return celery

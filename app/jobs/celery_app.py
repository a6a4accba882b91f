"""The Celery application, built from Config: SQLite transport by default, Redis when
REDIS_URL is set."""
from __future__ import annotations

from celery import Celery

from app.config import Config

RUN_JOB = "cellloop.run_job"
# Two queues, so an import never waits behind a training: `gpu` takes the model work
# (training, scoring, prediction, simulation; it runs on the CPU where there is no GPU),
# `cpu` the file work (imports). run.sh and the Procfile start a worker for each.
QUEUES = ("cpu", "gpu")
KIND_QUEUE = {"import": "cpu", "train": "gpu", "score": "gpu",
              "predict": "gpu", "simulate": "gpu"}


def queue_for(kind: str) -> str:
    return KIND_QUEUE.get(kind, "gpu")


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
        cellloop_config=config,
    )
    return celery

"""Celery tasks: thin wrappers that run jobs in the worker process."""
from __future__ import annotations

import functools
import logging

from celery import shared_task
from celery.signals import worker_process_init

from app.config import Config
from app.db import Database
from app.jobs.celery_app import RUN_JOB
from app.jobs.runner import run_job

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _database(url: str) -> Database:
    """One engine per worker process (created after fork, never inherited)."""
    return Database(url)


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    _database.cache_clear()


@shared_task(name=RUN_JOB, bind=True, acks_late=True)
def run_job_task(self, job_id: int) -> str:
    config: Config = self.app.conf.cellloop_config
    return run_job(_database(config.sqlalchemy_url), config, int(job_id),
                   worker=self.request.hostname or "")

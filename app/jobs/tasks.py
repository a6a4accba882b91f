"""Celery tasks: thin wrappers that run jobs in the worker process."""
from __future__ import annotations

import functools
import logging

from celery import shared_task
from celery.signals import worker_process_init

from app.config import Config
from app.db import Database
from app.deps import Deps
from app.jobs.celery_app import RUN_JOB
from app.jobs.runner import run_job

log = logging.getLogger(__name__)
_deps: dict[str, Deps] = {}      # this process's, by database URL (rebuilt after fork)


@functools.lru_cache(maxsize=4)
def _database(url: str) -> Database:
    """One engine per worker process (created after fork, never inherited)."""
    return Database(url)


def deps_for(config: Config, celery) -> Deps:
    """The worker process's dependencies, built once: its database, blob store, and this
    worker's own Celery app for the jobs its jobs start."""
    deps = _deps.get(config.sqlalchemy_url)
    if deps is None:
        deps = _deps[config.sqlalchemy_url] = Deps(config, _database(config.sqlalchemy_url),
                                                   _celery=celery)
    return deps


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    _database.cache_clear()
    _deps.clear()


@shared_task(name=RUN_JOB, bind=True, acks_late=True)
def run_job_task(self, job_id: int) -> str:
    config: Config = self.app.conf.cellloop_config
    deps = deps_for(config, self.app)
    return run_job(deps.db, config, int(job_id), worker=self.request.hostname or "",
                   deps=deps)

"""The job kinds, as plain data: one `JobKind` record per kind (name, the permission it needs
in its project, whether it runs at most once per project at a time, its Celery queue).

This module imports nothing of the app, so the service that submits jobs
(`app.services.jobs`), the runner, the Celery sender and the worker all read the same table
without importing the handlers (which import the services). The handler of each kind is
looked up by the same name in `app.jobs.handlers.HANDLERS`.

Two queues, so an import never waits behind a training: `gpu` takes the model work (training,
scoring, prediction, simulation; it runs on the CPU where there is no GPU), `cpu` the file
work (imports). run.sh and the Procfile start a worker for each.

`exclusive` kinds must match the partial unique index `app.tables.EXCLUSIVE_ACTIVE`
(train, score): the database enforces what this table says.
"""
from __future__ import annotations

from dataclasses import dataclass

QUEUES = ("cpu", "gpu")
# Dash background callbacks (predict the image on screen, score the cells shown) go through
# Celery on this queue when REDIS_URL is set, so any web worker on any host can start one and
# read its result; `python -m app worker --queues ui` serves it (it builds the Dash app, whose
# callbacks are the tasks). Not a job queue: no job kind runs there.
UI_QUEUE = "ui"


@dataclass(frozen=True)
class JobKind:
    name: str
    action: str               # what the submitter needs in the project (permissions.ACTIONS)
    queue: str = "gpu"
    exclusive: bool = False   # at most one queued or running per project


KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("import", action="import", queue="cpu"),
    JobKind("train", action="train", exclusive=True),
    JobKind("score", action="train", exclusive=True),
    JobKind("predict", action="annotate"),
    JobKind("simulate", action="train"),
)}


def kind_of(name: str) -> JobKind | None:
    return KINDS.get(name)


def queue_for(name: str) -> str:
    kind = KINDS.get(name)
    return kind.queue if kind is not None else "gpu"


def is_exclusive(name: str) -> bool:
    kind = KINDS.get(name)
    return kind is not None and kind.exclusive

"""Run a training job of the test project to the end, in the test process."""
from app.jobs.runner import run_job
from app.services import training
from app.tables import Job
from tests.conftest import actor


def train(db, config, world, **params):
    """(final state, result, error) of a training job started by the reviewer."""
    with db.session_scope() as s:
        info = training.start_training(s, actor(s, "reviewer"), world["project_id"], params,
                                       lambda _id: None)
    state = run_job(db, config, info.id)
    with db.session_scope() as s:
        job = s.get(Job, info.id)
        return state, dict(job.result), job.error

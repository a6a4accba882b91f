"""Run a training job of the test project to the end, in the test process."""
from app.jobs.runner import run_job
from app.services import training
from app.tables import Job
from tests.conftest import actor


def train(db, config, world, **params):
    """(final state, result, error) of a training job started by the reviewer. The scoring
    job it leaves queued (a new model of a strategy that needs none is ranked at once) runs
    here too, as a worker would run it next."""
    with db.session_scope() as s:
        info = training.start_training(s, actor(s, "reviewer"), world["project_id"], params,
                                       lambda _id: None)
    state = run_job(db, config, info.id, send=lambda _id: None)
    with db.session_scope() as s:
        job = s.get(Job, info.id)
        result, error = dict(job.result), job.error
        follow = s.get(Job, result["scoring_job"]) if result.get("scoring_job") else None
        queued = follow.id if follow is not None and follow.state == "queued" else None
    if queued is not None:
        assert run_job(db, config, queued) == "done"
    return state, result, error

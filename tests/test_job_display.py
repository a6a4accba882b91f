"""Issue 19 items 7 and 8: what a job says when it is read. A queued job names the job it
waits behind on its queue (gpu: training, scoring...; cpu: imports), or says it
waits for a worker; a finished job states its outcome, not its last progress message
(a finished import read "1/8")."""
import pytest

from app.services import jobs, projects
from app.tables import Job
from tests.conftest import actor


def add(db, project_id, kind, state, result=None, message="", user_id=None):
    with db.session_scope() as s:
        job = Job(kind=kind, project_id=project_id, user_id=user_id, state=state,
                  params={}, result=result or {}, message=message)
        s.add(job)
        s.flush()
        return job.id


def message_of(db, username, job_id) -> str:
    with db.session_scope() as s:
        return jobs.get_job(s, actor(s, username), job_id).message


def test_a_queued_job_says_what_it_waits_behind(db, world):
    pid = world["project_id"]
    training = add(db, pid, "train", "running")
    score = add(db, pid, "score", "queued")
    imp = add(db, pid, "import", "queued")
    assert message_of(db, "viewer", score) == f"Waiting behind job #{training} (train, running)."
    assert message_of(db, "viewer", imp) == "Waiting for a worker."    # other queue: free
    second = add(db, pid, "import", "queued")
    assert message_of(db, "viewer", second) == f"Waiting behind job #{imp} (import, queued)."
    predict = add(db, pid, "predict", "queued")
    assert message_of(db, "viewer", predict) == (
        f"Waiting behind job #{training} (train, running) and 1 more.")
    with db.session_scope() as s:
        listed = {j.id: j.message for j in jobs.list_jobs(s, actor(s, "viewer"), pid)}
    assert listed[score] == f"Waiting behind job #{training} (train, running)."
    assert listed[imp] == "Waiting for a worker."
    with db.session_scope() as s:      # the stored message is left as it was
        assert s.get(Job, score).message == ""


def test_a_job_of_a_project_you_cannot_see_is_not_described(db, world):
    with db.session_scope() as s:
        other = projects.create_project(s, actor(s, "outsider"), "Elsewhere",
                                        starting_model="none").id
    running = add(db, other, "train", "running")
    mine = add(db, world["project_id"], "train", "queued")
    assert message_of(db, "owner", mine) == "Waiting behind a job of another project."
    assert message_of(db, "admin", mine) == f"Waiting behind job #{running} (train, running)."


def test_a_finished_job_states_its_outcome(db, world):
    pid = world["project_id"]
    imp = add(db, pid, "import", "done", {"imported": 8, "duplicate": 0, "rejected": 0,
                                          "restored": 0, "files": []}, message="Done.")
    assert message_of(db, "viewer", imp) == "8 imported, 0 duplicates, 0 rejected."
    one = add(db, pid, "import", "done", {"imported": 1, "duplicate": 1, "rejected": 2,
                                          "restored": 1, "files": []}, message="1/8")
    assert message_of(db, "viewer", one) == "1 imported, 1 duplicate, 2 rejected, 1 restored."
    train = add(db, pid, "train", "done", {"outcome": "Model #3: validation F1 0.766 on 4 "
                                                      "validation images; activated."},
                message="Comparing with the active model")
    assert message_of(db, "viewer", train).startswith("Model #3: validation F1 0.766 on 4")
    score = add(db, pid, "score", "done", {"n_images": 5, "strategy": "bald",
                                           "model_version_id": 3}, message="Done.")
    assert message_of(db, "viewer", score) == "Scored 5 images with bald under model #3."
    failed = add(db, pid, "import", "failed", {}, message="Failed: no files")
    assert message_of(db, "viewer", failed) == "Failed: no files"
    running = add(db, pid, "import", "running", {}, message="3/8: a.tif imported")
    assert message_of(db, "viewer", running) == "3/8: a.tif imported"


def test_time_left_is_estimated_from_the_first_percent():
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def info(progress, seconds, state="running"):
        return jobs.JobInfo(1, "train", 1, "x", state, progress, "", "", {}, False, now,
                            now - dt.timedelta(seconds=seconds), None)
    # a 4-hour training, 1 % in: the estimate is there, not "none until 2 %"
    assert info(0.01, 144).remaining_s == pytest.approx(14256, rel=0.01)
    assert info(0.0, 144).remaining_s is None and info(0.5, 1).remaining_s is None
    assert info(0.5, 60, "queued").remaining_s is None

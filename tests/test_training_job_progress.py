"""Issue 19 items 3 and 7 through the training job: the budget a person types reaches the
run; progress moves during the first epoch with steps done/total (it read "Loading annotated
images 0%" until the first epoch ended), and a finished job states its outcome with the
number of validation images instead of "Comparing with the active model"."""
import re

import pytest

from app.jobs.runner import run_job
from app.permissions import SYSTEM
from app.services import imports, jobs, projects, training
from app.tables import Job
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, tiff

TINY = {"width": 8, "depth": 2, "patch": 64, "batch": 4, "steps_per_epoch": 20, "epochs": 3,
        "patience": 20}


@pytest.fixture
def lab(db, config, world):
    store = LocalBlobStore(config.blob_dir)
    items = []
    for k in range(5):
        img, lab_ = nuclei(shape=(96, 96), n=8, seed=k)
        items.append(imports.ImportFile(f"d{k}.tif", read=lambda img=img: tiff(img),
                                       read_labels=lambda lab_=lab_: tiff(lab_)))
    with db.session_scope() as s:
        imports.import_files(s, SYSTEM, store, world["project_id"], items, 1 << 28)
        projects.set_training_settings(s, SYSTEM, world["project_id"], TINY)
    return store


def start(db, world, **params) -> int:
    with db.session_scope() as s:
        return training.start_training(s, actor(s, "owner"), world["project_id"], params,
                                       lambda _id: None).id


def test_a_whole_number_budget_reaches_the_job(db, world, lab):
    job_id = start(db, world, max_minutes="5", epochs="3")
    with db.session_scope() as s:
        assert s.get(Job, job_id).params["max_minutes"] == 5.0
        assert s.get(Job, job_id).params["epochs"] == 3


def test_progress_moves_with_steps_and_ends_with_the_outcome(db, config, world, lab):
    job_id = start(db, world, max_minutes=5)
    heard = []
    assert run_job(db, config, job_id, listeners=[lambda f, m: heard.append((f, m))]) == "done"
    messages = [m for _f, m in heard]
    assert messages[0].startswith("Loading annotated images: 0/5")
    first_validation = next(i for i, m in enumerate(messages) if "validating after epoch 1" in m)
    during_epoch_1 = [m for m in messages[:first_validation] if m.startswith("Training: step")]
    assert during_epoch_1, messages          # the first epoch is no longer silent
    assert re.match(r"Training: step \d+/60 · epoch 1/3 · loss \d\.\d{3}$", during_epoch_1[-1])
    assert any(m.startswith("Training: choosing how cells are cut") for m in messages)
    fractions = [f for f, _m in heard]
    assert fractions == sorted(fractions) and len(set(fractions)) >= 4
    assert 0 < fractions[-1] < 1
    with db.session_scope() as s:
        info = jobs.get_job(s, actor(s, "owner"), job_id)
        row = s.get(Job, job_id)
        n_val = row.result["metrics"]["n_images"]
        assert info.state == "done" and info.progress == 1.0
        assert info.message == row.result["outcome"]
        assert re.match(rf"Model #{row.result['model_version_id']}: validation F1 \d\.\d{{3}} "
                        rf"on {n_val} validation image", info.message), info.message
        assert "activated (the first model of the project)" in info.message
        assert "Trained 3 of 3 epochs (60 steps)" in info.message
        assert "Comparing" not in info.message

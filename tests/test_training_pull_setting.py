"""The project's `pull` training setting (decoupled L2-SP, TrainConfig.pull): 50 by
default, owners set it like the other training settings, bad values are refused with a
message, and a fine-tuning job trains with it and records the pull it used."""
import pytest
from sqlalchemy import select

from app.errors import ValidationError
from app.jobs.runner import run_job
from app.permissions import SYSTEM
from app.services import imports, model_versions, projects, training
from app.services.project_settings import ProjectSettings, clean_training, training_from
from app.tables import ModelVersion
from models import training as training_module
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, tiff

TINY = {"width": 8, "depth": 2, "patch": 64, "batch": 4, "steps_per_epoch": 4, "epochs": 1,
        "patience": 20}


@pytest.mark.parametrize("typed,pull", [("50", 50.0), (0, 0.0), ("12.5", 12.5)])
def test_a_pull_is_a_number_from_zero(typed, pull):
    assert clean_training({"pull": typed}) == {"pull": pull}


@pytest.mark.parametrize("typed", ["-1", "x", "2000"])
def test_a_bad_pull_is_refused_with_a_message(typed):
    with pytest.raises(ValidationError, match="pull must be"):
        clean_training({"pull": typed})


def test_fine_tuning_pulls_at_50_by_default_and_less_at_a_higher_learning_rate():
    """The default pull (50) holds lr x pull at 0.1 for learning rates above the default, so a
    faster learning rate alone is never refused or left unable to train; a pull the owners
    set is kept as set."""
    assert ProjectSettings().training.pull == 50.0
    assert training_from({}).pull == 50.0 and training_from({"lr": 5e-4}).pull == 50.0
    assert training_from({"lr": 0.05}).pull == pytest.approx(2.0)
    assert training_from({"lr": 3e-3}).pull == 33.3            # shown rounded
    assert training_from({"lr": 0.05, "pull": 0}).pull == 0.0
    assert training_from({"pull": 7.5}).pull == 7.5
    for lr in (1e-6, 2e-3, 0.02, 0.5, 1.0):
        training_module.check_pull(training_from({"lr": lr}).pull, lr)     # raises if not


def test_a_project_changing_only_its_learning_rate_keeps_a_pull_it_can_train_with(db, world):
    with db.session_scope() as s:
        stored = projects.set_training_settings(s, actor(s, "owner"), world["project_id"],
                                                {"lr": "0.05"})
        assert stored == {"lr": 0.05}                  # the default is not written down
        shown = projects.training_settings(s, actor(s, "owner"), world["project_id"])
    assert shown["lr"] == 0.05 and shown["pull"] == pytest.approx(2.0)


def test_a_fine_tuning_job_trains_with_the_projects_pull(db, config, world, monkeypatch):
    store = LocalBlobStore(config.blob_dir)
    items = []
    for k in range(3):
        img, lab = nuclei(shape=(96, 96), n=8, seed=k)
        items.append(imports.ImportFile(f"p{k}.tif", read=lambda img=img: tiff(img),
                                       read_labels=lambda lab=lab: tiff(lab)))
    pid = world["project_id"]
    with db.session_scope() as s:
        imports.import_files(s, SYSTEM, store, pid, items, 1 << 28)
        projects.set_training_settings(s, actor(s, "owner"), pid, {**TINY, "pull": "40"})
    built = []

    class Recording(training_module._PullToStart):
        def __init__(self, net, pull):
            super().__init__(net, pull)
            self.calls = 0
            built.append(self)

        def __call__(self, net, lr):
            self.calls += 1
            super().__call__(net, lr)

    monkeypatch.setattr(training_module, "_PullToStart", Recording)
    pulls = []
    for _ in range(2):                     # the second training fine-tunes the first
        with db.session_scope() as s:
            job = training.start_training(s, actor(s, "owner"), pid, {}, lambda _id: None)
        assert run_job(db, config, job.id) == "done"
        with db.session_scope() as s:
            newest = s.scalars(select(ModelVersion).where(ModelVersion.project_id == pid)
                               .order_by(ModelVersion.id.desc())).first()
            pulls.append((newest.parent_id,
                          model_versions.load(store, newest).meta["train_config"]["pull"],
                          newest.settings["pull"]))
    assert pulls[0] == (None, 0.0, 0.0)    # from scratch: nothing to pull back to
    assert pulls[1][0] is not None and pulls[1][1:] == (40.0, 40.0)
    assert len(built) == 1 and built[0].pull == 40.0
    assert built[0].calls == TINY["steps_per_epoch"] * TINY["epochs"]   # after every step


def test_the_cli_shows_and_changes_the_training_settings(tmp_path, monkeypatch, capsys):
    from app import cli
    from app.db import Database
    from app.services import users
    data = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(data))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    assert cli.main(["init-db"]) == 0
    db = Database(f"sqlite:///{data.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "boss", "boss-password")
        projects.create_project(s, SYSTEM, "Nuclei", owner_id=owner.id, starting_model="none")
    db.dispose()
    capsys.readouterr()
    assert cli.main(["training-settings", "Nuclei"]) == 0
    shown = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert shown["pull"] == "50" and shown["epochs"] == "40"      # the defaults
    assert cli.main(["training-settings", "Nuclei", "pull=20", "epochs=60"]) == 0
    out = capsys.readouterr().out
    assert "pull             20  (changed)" in out and "epochs           60  (changed)" in out
    assert "lr               0.002\n" in out
    assert cli.main(["training-settings", "Nuclei", "pull=-3"]) == 2
    assert "pull must be between 0.0 and 1000.0" in capsys.readouterr().err
    assert cli.main(["training-settings", "Nuclei", "pull=600"]) == 2     # x lr 0.002 = 1.2
    assert "pull (600) times the learning rate (0.002) must be below 1" in capsys.readouterr().err
    assert cli.main(["training-settings", "Nuclei", "pulll=6"]) == 2
    assert "Unknown training setting 'pulll' (settings: width, depth" in capsys.readouterr().err
    assert cli.main(["training-settings", "Nuclei", "pull"]) == 2
    assert "write KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["training-settings", "Nuclei", "pull=20"]) == 0   # the refused changes
    assert "pull             20\n" in capsys.readouterr().out            # left it; not changed

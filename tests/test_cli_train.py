"""Issue 19 item 7: `python -m app train` shows a tqdm bar that moves with the steps (it
printed 0% then 97% and nothing for 15 minutes), with the step count and a time estimate,
and ends on 100% and the training's outcome."""
import re
import sys

from app import cli
from app.db import Database
from app.permissions import SYSTEM
from app.services import imports, projects, users
from storage.blobstore import LocalBlobStore
from tests.images_data import nuclei, tiff

TINY = {"width": 8, "depth": 2, "patch": 64, "batch": 4, "steps_per_epoch": 100, "epochs": 2,
        "patience": 20}


def test_train_shows_a_moving_bar_and_the_outcome(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(data))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    assert cli.main(["init-db"]) == 0
    db = Database(f"sqlite:///{data.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "boss", "boss-password")
        pid = projects.create_project(s, SYSTEM, "Nuclei", owner_id=owner.id,
                                      starting_model="none").id
        items = []
        for k in range(4):
            img, lab = nuclei(shape=(96, 96), n=8, seed=k)
            items.append(imports.ImportFile(f"d{k}.tif", read=lambda img=img: tiff(img),
                                           read_labels=lambda lab=lab: tiff(lab)))
        imports.import_files(s, SYSTEM, LocalBlobStore(data / "blobs"), pid, items, 1 << 28)
        projects.set_training_settings(s, SYSTEM, pid, TINY)
    db.dispose()
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.main(["train", "Nuclei", "--max-minutes", "2"]) == 0
    out, err = capsys.readouterr()
    frames = [f for f in re.split(r"[\r\n]", err) if "%|" in f]
    percents = [int(f.split("%|")[0]) for f in frames]
    steps = [f for f in frames if re.search(r"Training: step \d+/200 · epoch [12]/2", f)]
    assert len(steps) >= 2, err                    # the bar moves during training
    assert len({p for p in percents if 0 < p < 100}) >= 3, percents
    assert percents == sorted(percents) and percents[-1] == 100
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", steps[-1])      # elapsed<time left
    assert re.search(r"Model #\d+: validation F1 \d\.\d{3} on \d+ validation image", out), out
    # the new model ranks the queue at once (the default strategy needs no model), here
    assert "ranked the queue (job 2: done)" in out, out

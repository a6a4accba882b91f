"""`python -m app` commands: success paths, clear errors, non-zero exits."""
import io
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.db import Database
from app.services import projects, users

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    return tmp_path / "data"


def run(monkeypatch, argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(argv)


def test_user_project_member_flow(env, monkeypatch, capsys):
    assert run(monkeypatch, ["init-db"]) == 0
    assert run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n") == 0
    assert run(monkeypatch, ["create-user", "ann"], "ann-password\n") == 0
    assert run(monkeypatch, ["create-project", "Nuclei", "--owner", "boss",
                             "--channels", "DAPI:#0000ff"]) == 0
    assert run(monkeypatch, ["add-member", "Nuclei", "ann", "annotator"]) == 0
    assert run(monkeypatch, ["set-password", "ann"], "ann-new-password\n") == 0
    assert run(monkeypatch, ["deactivate-user", "ann"]) == 0
    out = capsys.readouterr().out
    assert "created user boss (site admin)" in out and "ann is annotator" in out
    db = Database(f"sqlite:///{env.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        boss = users.find_user(s, "boss")
        assert boss.is_admin and not users.find_user(s, "ann").is_active
        assert [(m.username, m.role) for m in projects.list_members(s, boss, 1)] == [
            ("boss", "owner"), ("ann", "annotator")]
    db.dispose()


def test_init_db_prepares_the_embedded_broker_before_workers_start(env, monkeypatch):
    """run.sh starts two workers side by side after init-db; each used to create the SQLite
    broker's tables and one logged "table kombu_queue already exists"."""
    import sqlite3
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert run(monkeypatch, ["init-db"]) == 0
    assert run(monkeypatch, ["init-db"]) == 0                  # again: nothing to do
    with sqlite3.connect(env / "celery-broker.sqlite") as broker:
        tables = {r[0] for r in broker.execute("SELECT name FROM sqlite_master")}
    assert {"kombu_queue", "kombu_message"} <= tables


@pytest.mark.parametrize("argv,stdin,message", [
    (["create-user", "x1"], "", "no password on standard input"),
    (["create-user", "bob"], "short\n", "at least 8 characters"),
    (["create-project", "P", "--owner", "nobody"], "", "no user called 'nobody'"),
    (["add-member", "Nope", "boss", "viewer"], "", "No project called 'Nope'"),
    (["add-member", "1", "boss", "emperor"], "", "unknown role"),
])
def test_errors_exit_non_zero_with_a_message(env, monkeypatch, capsys, argv, stdin, message):
    run(monkeypatch, ["init-db"])
    run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n")
    run(monkeypatch, ["create-project", "P0", "--owner", "boss"])
    capsys.readouterr()
    assert run(monkeypatch, argv, stdin) == 2
    assert message in capsys.readouterr().err


def test_password_is_never_taken_from_argv(env, monkeypatch):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["create-user", "eve", "--password", "secret123"])


def test_demo_is_idempotent_and_refused_in_production(env, monkeypatch, capsys):
    assert run(monkeypatch, ["demo"]) == 0
    assert "12 new images" in capsys.readouterr().out
    assert run(monkeypatch, ["demo"]) == 0
    assert "0 new images" in capsys.readouterr().out
    monkeypatch.setenv("CELLLOOP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    assert run(monkeypatch, ["demo"]) == 2
    assert "not loaded in production" in capsys.readouterr().err


def test_module_entry_point(env):
    result = subprocess.run([sys.executable, "-m", "app", "list-users"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={"CELLLOOP_DATA_DIR": str(env), "PATH": "/usr/bin:/bin"})
    # a fresh data directory has no tables yet: a clear error, not a traceback
    assert result.returncode == 2 and "run `python -m app init-db` first" in result.stderr
    assert "Traceback" not in result.stderr
    subprocess.run([sys.executable, "-m", "app", "init-db"], cwd=ROOT, check=True,
                   capture_output=True, timeout=120, env={"CELLLOOP_DATA_DIR": str(env)})
    ok = subprocess.run([sys.executable, "-m", "app", "list-users"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        env={"CELLLOOP_DATA_DIR": str(env)})
    assert ok.returncode == 0 and ok.stdout == ""


def test_production_refuses_to_start_without_secret(env, monkeypatch, capsys):
    monkeypatch.setenv("CELLLOOP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert run(monkeypatch, ["init-db"]) == 2
    assert "SECRET_KEY must be set" in capsys.readouterr().err


def test_import_and_export_commands(env, monkeypatch, capsys, tmp_path):
    from tests.images_data import nuclei, tiff
    src = tmp_path / "src"
    (src / "masks").mkdir(parents=True)
    for k in range(3):
        img, lab = nuclei(seed=k)
        (src / f"cell{k}.tif").write_bytes(tiff(img))
        (src / "masks" / f"cell{k}_masks.tif").write_bytes(tiff(lab))
    (src / "broken.tif").write_bytes(b"II*\x00nope")
    run(monkeypatch, ["init-db"])
    run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n")
    run(monkeypatch, ["create-project", "P", "--owner", "boss"])
    capsys.readouterr()
    assert run(monkeypatch, ["import", "P", str(src), "--masks", str(src / "masks"),
                             "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "imported 3, duplicates 0, rejected 1" in captured.out
    assert "broken.tif" in captured.err
    assert run(monkeypatch, ["export", "P", str(tmp_path / "out.zip"), "--format",
                             "counts,tiff"]) == 0
    assert "exported 3 images (3 annotated)" in capsys.readouterr().out
    assert run(monkeypatch, ["export", "P", str(tmp_path / "o"), "--format", "gif"]) == 2
    assert run(monkeypatch, ["import", "P", str(tmp_path / "nothing-here")]) == 2


def test_predict_files_with_a_model_file(env, monkeypatch, capsys, tmp_path):
    """`predict` with a .cellloop file writes a mask and an overlay per image, counts.json
    and counts.csv;
    an unreadable file is skipped with its reason, and all skipped is an error."""
    import json

    from models.model import SegmentationModel
    from models.persist import save_model
    from models.unet import UNet
    from tests.images_data import nuclei, tiff

    net = UNet(in_channels=1, n_classes=3, width=4, depth=2).eval()
    save_model(SegmentationModel(net, {"architecture": net.config}, module=net),
               tmp_path / "m.cellloop")
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.tif").write_bytes(tiff(nuclei((48, 64))[0]))
    (images / "broken.tif").write_bytes(b"not a tiff")
    assert run(monkeypatch, ["predict", str(tmp_path / "m.cellloop"), str(images),
                             "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "a.tif:" in captured.out and "predicted 1 image(s)" in captured.out
    assert "skipped: broken.tif" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_masks.tif", "a_overlay.png", "counts.csv", "counts.json"]
    counts = json.loads((tmp_path / "out" / "counts.json").read_text())
    assert list(counts) == ["a.tif"]
    a = counts["a.tif"]               # the format counting models write too (issue 23)
    assert a["low"] == a["count"] == a["high"] == a["n_points"] == len(a["points"])
    assert run(monkeypatch, ["predict", str(tmp_path / "m.cellloop"), str(images / "broken.tif"),
                             "--out", str(tmp_path / "out2")]) == 2

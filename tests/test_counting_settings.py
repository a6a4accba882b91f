"""Issue 23: owners choose how a points project's counting model is trained (what it
regresses, what it reads, steps, sigma) from the CLI (`python -m app counting-settings`) or
the project page, with bad values refused by name and other roles refused; the next
training uses what they chose."""
from types import SimpleNamespace

import numpy as np
import pytest

from app import cli
from app.errors import PermissionDenied, ValidationError
from app.permissions import SYSTEM
from app.services import counting, imports, model_versions, projects, users
from app.services.project_settings import AUTO, STAIN, CountingSettings
from app.services.project_settings import COUNTING_INPUTS, clean_counting
from models.counting import CountingParams
from models.inference import INPUT_MAPPINGS
from models.nucleus_contrast import NUCLEUS_CONTRAST
from storage.blobstore import LocalBlobStore
from tests import test_counting_project as points_project
from tests.images_data import discs, png

counting_project = points_project.counting_project      # the fixture: a points project
train_with = points_project.train_with


def test_every_counting_input_is_one_a_model_can_read():
    assert all(name in INPUT_MAPPINGS for name in COUNTING_INPUTS if name not in (None, AUTO))
    assert STAIN == NUCLEUS_CONTRAST


def test_the_settings_defaults_are_the_trainers():
    """What the page and the CLI show for a project that changed nothing is what
    training uses."""
    shown, trained = CountingSettings(), CountingParams()
    for name in ("target", "steps", "sigma"):
        assert getattr(shown, name) == getattr(trained, name), name


@pytest.mark.parametrize("typed,clean", [
    ({"target": "density"}, {"target": "density"}),
    ({"input_mapping": "nucleus-contrast-v1"}, {"input_mapping": "nucleus-contrast-v1"}),
    ({"input_mapping": "none"}, {"input_mapping": None}),
    ({"input_mapping": "Channels"}, {"input_mapping": None}),
    ({"input_mapping": "auto"}, {"input_mapping": "auto"}),
    ({"input_mapping": "AUTO", "target": "Density"}, {"input_mapping": "auto",
                                                      "target": "density"}),
    ({"steps": "600", "sigma": "4"}, {"steps": 600, "sigma": 4.0})])
def test_counting_settings_are_checked_and_typed(typed, clean):
    assert clean_counting(typed) == clean


@pytest.mark.parametrize("typed,message", [
    ({"target": "blobs"}, "counting target must be one of centres, density"),
    ({"input_mapping": "nuclei-v9"}, "counting input must be one of auto, none, nucleus-contrast"),
    ({"input_mapping": ""}, "counting input must be one of"),
    ({"steps": "5"}, "steps must be between 10 and 20000"),
    ({"steps": "1.5"}, "steps must be a whole number"),
    ({"sigma": "0"}, "sigma must be between 1.0 and 20.0"),
    ({"batch": "4"}, "Unknown counting setting 'batch'")])
def test_bad_counting_settings_are_refused_by_name(typed, message):
    with pytest.raises(ValidationError, match=message):
        clean_counting(typed)


def test_only_owners_change_the_counting_settings_and_members_see_them(counting_project):
    db, _store, pid, _tmp = counting_project
    with db.session_scope() as s:
        users.create_user(s, SYSTEM, "anna", "anna-password")
        projects.set_member(s, SYSTEM, pid, "anna", "annotator")
        as_anna = users.find_user(s, "anna")
        with pytest.raises(PermissionDenied):
            counting.set_counting_settings(s, as_anna, pid, {"target": "density"})
        assert counting.counting_settings(s, as_anna, pid)["target"] == "centres"
        shown = counting.set_counting_settings(s, users.find_user(s, "boss"), pid,
                                               {"input_mapping": "nucleus-contrast-v1"})
        assert shown["input_mapping"] == "nucleus-contrast-v1"
        assert counting.counting_settings(s, as_anna, pid) == shown


def test_a_project_with_a_density_model_shows_density_until_its_owner_chooses(
        counting_project):
    """What the settings show is what the next training does: a project whose active model is
    a density, with no target chosen, keeps training densities (keeps_target)."""
    db, store, pid, _tmp = counting_project
    train_with(db, store, pid, {"target": "density"})
    with db.session_scope() as s:
        project = s.get(projects.Project, pid)
        project.settings = {**project.settings, "counting": {"steps": 20}}
        assert counting.counting_settings(s, SYSTEM, pid)["target"] == "density"
    meta, _settings = train_with(db, store, pid, {})          # and trains as it shows
    assert meta["density"]["target"] == "density"
    with db.session_scope() as s:
        counting.set_counting_settings(s, SYSTEM, pid, {"target": "centres"})
        assert counting.counting_settings(s, SYSTEM, pid)["target"] == "centres"
        assert model_versions.active_version(s, pid).settings["target"] == "density"


def test_the_cli_shows_and_changes_the_counting_settings_and_training_uses_them(
        counting_project, capsys):
    db, store, pid, _tmp = counting_project
    capsys.readouterr()
    assert cli.main(["counting-settings", "Marrow"]) == 0
    shown = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert shown == {"target": "centres", "input_mapping": "auto", "steps": "120",
                     "sigma": "2"}                          # the fixture's SMALL settings
    assert cli.main(["counting-settings", "Marrow", "input_mapping=nucleus-contrast-v1",
                     "steps=20"]) == 0
    out = capsys.readouterr().out
    assert "apply once it is set to points" not in out        # it is a points project
    assert "input_mapping    nucleus-contrast-v1  (changed)" in out
    assert "steps            20  (changed)" in out and "target           centres\n" in out
    assert cli.main(["counting-settings", "Marrow", "target=outline"]) == 2
    assert "counting target must be one of centres, density" in capsys.readouterr().err
    assert cli.main(["counting-settings", "Marrow", "steps"]) == 2
    assert "write KEY=VALUE" in capsys.readouterr().err
    with db.session_scope() as s:
        projects.set_annotation_mode(s, SYSTEM, pid, "outlines")
    assert cli.main(["counting-settings", "Marrow"]) == 0
    assert "outlines: these apply once it is set to points" in capsys.readouterr().out
    with db.session_scope() as s:
        projects.set_annotation_mode(s, SYSTEM, pid, "points")
    result = counting.train_counting_project(db, store, pid, None, lambda *_a: None,
                                             lambda: False)
    with db.session_scope() as s:
        mv = s.get(counting.ModelVersion, result["model_version_id"])
        assert mv.settings["input_mapping"] == "nucleus-contrast-v1"
        assert mv.metrics["steps"] == 20


def he_like(image: np.ndarray) -> np.ndarray:
    """A grey discs image as a bright-field H&E-like RGB one: purple cells on light."""
    dark = 1.0 - image.astype(np.float64) / max(float(image.max()), 1.0)
    return (np.stack([dark * 0.9, dark * 0.6, dark * 0.95]) * 255).astype(np.uint8)


def test_auto_reads_the_stain_of_bright_field_colour_and_keeps_an_active_models_input():
    grey, _ = discs(0)
    colour = he_like(grey)
    active = SimpleNamespace(meta={"input_mapping": None})         # a loaded counting model
    assert counting.choose_input({}, None, [colour, colour]) == "nucleus-contrast-v1"
    assert counting.choose_input({"input_mapping": AUTO}, None, [colour]) == \
        "nucleus-contrast-v1"
    assert counting.choose_input({}, None, [colour, grey]) is None         # not all colour
    assert counting.choose_input({}, None, [grey]) is None
    assert counting.choose_input({}, active, [colour]) is None             # kept
    assert counting.choose_input({"input_mapping": None}, None, [colour]) is None
    assert counting.choose_input({"input_mapping": "nucleus-contrast-v1"}, active,
                                 [grey]) == "nucleus-contrast-v1"          # as chosen


TINY = {"batch": 4, "patch": 64, "width": 8, "depth": 2}


def he_project(db, store, name: str) -> int:
    """A points project of four clicked 8-bit H&E-like PNGs."""
    with db.session_scope() as s:
        owner = users.find_user(s, "boss") or users.create_user(s, SYSTEM, "boss",
                                                                  "boss-password")
        pid = projects.create_project(s, SYSTEM, name, owner_id=owner.id,
                                      starting_model="none").id
        projects.set_annotation_mode(s, SYSTEM, pid, "points")
        items = []
        for k in range(4):
            img, centres = discs(k)
            rgb = np.moveaxis(he_like(img), 0, -1)                        # (Y, X, 3) PNG
            items.append(imports.ImportFile(f"he{k}.png", read=lambda rgb=rgb: png(rgb),
                                            points=tuple(tuple(c) for c in centres)))
        imports.import_files(s, SYSTEM, store, pid, items, 1 << 28)
    return pid


def test_a_new_bright_field_colour_points_project_trains_on_the_nuclear_stain(db, config):
    store = LocalBlobStore(config.blob_dir)
    pid = he_project(db, store, "Smears")
    model, settings = train_with(db, store, pid, TINY)
    assert model["input_mapping"] == STAIN and settings["input_mapping"] == STAIN


def test_auto_keeps_what_the_active_counting_model_reads(db, config):
    """A project whose active counting model reads the channels (trained before "auto", or
    chosen) keeps reading them, fine-tuned from it, on images auto would read as stain."""
    store = LocalBlobStore(config.blob_dir)
    pid = he_project(db, store, "Old smears")
    _model, first = train_with(db, store, pid, {**TINY, "input_mapping": None})
    assert first["input_mapping"] is None
    with db.session_scope() as s:
        first_id = model_versions.active_version(s, pid).id
    model, settings = train_with(db, store, pid, TINY)            # auto
    assert model.get("input_mapping") is None and settings["fine_tuned_from"] == first_id

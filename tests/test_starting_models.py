"""Every new project starts from a starting model (issue 20): the built-in nuclei model (the
default), none, or the active model of another project the user can see."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.errors import NotFound, ValidationError
from app.permissions import SYSTEM
from app.services import imports, model_versions, prediction, projects, starting_models
from app.tables import Image, ModelVersion, Project
from tests.conftest import actor
from tests.images_data import nuclei, tiff
from tests.starting_model_data import write_standin

SHIPPED_DIR = starting_models.BUILTIN_DIR      # models/pretrained/ of the checkout


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """The built-in model folder replaced by a stand-in (a hand-set threshold U-Net)."""
    folder = tmp_path / "pretrained"
    card = write_standin(folder)
    monkeypatch.setattr(starting_models, "BUILTIN_DIR", folder)
    return folder, card


def _new(session, username, name, **kwargs):
    return projects.create_project(session, actor(session, username), name, **kwargs)


def _import_disc_image(session, store, project_id, seed=0):
    pixels, labels = nuclei((96, 96), n=6, seed=seed)
    imports.import_files(session, SYSTEM, store, project_id,
                         [imports.ImportFile(f"disc{seed}.tif", read=lambda: tiff(pixels))],
                         1 << 28)
    session.flush()
    image = session.scalar(select(Image).where(Image.project_id == project_id)
                           .order_by(Image.id.desc()))
    return image.id, labels


def _active(session, project_id):
    return model_versions.active_version(session, project_id)


# ------------------------------------------------------------------ choices
def test_choices_follow_what_the_actor_can_see(session, world, store, standin):
    other = _new(session, "outsider", "Elsewhere", store=store)       # built-in by default
    owner_choices = [c.value for c in starting_models.choices(session, actor(session, "owner"))]
    assert owner_choices == ["builtin:nuclei-v1", "none"]     # Lab has no model; Elsewhere hidden
    mine = starting_models.choices(session, actor(session, "outsider"))
    assert [c.value for c in mine] == ["builtin:nuclei-v1", "none", f"project:{other.id}"]
    assert mine[0].label == "Built-in nuclei model (nuclei-v1) — macro F1 0.50 on its test images"
    mv = _active(session, other.id)
    assert mine[2].label == f"Elsewhere: active model #{mv.id} (F1 0.50)"
    admin = [c.value for c in starting_models.choices(session, actor(session, "admin"))]
    assert f"project:{other.id}" in admin                  # site admins see every project
    # a viewer of a project with a model may start from it
    starting_models.apply(session, actor(session, "owner"), store, world["project_id"], "builtin")
    viewer = [c.value for c in starting_models.choices(session, actor(session, "viewer"))]
    assert f"project:{world['project_id']}" in viewer and f"project:{other.id}" not in viewer


def test_without_the_built_in_files_the_default_is_none(session, world, store, tmp_path,
                                                        monkeypatch):
    monkeypatch.setattr(starting_models, "BUILTIN_DIR", tmp_path / "empty")
    assert [c.value for c in starting_models.choices(session, actor(session, "owner"))] == ["none"]
    p = _new(session, "owner", "Plain", store=store)
    assert p.settings["starting_model"] == "none" and _active(session, p.id) is None
    with pytest.raises(ValidationError, match="not installed"):
        _new(session, "owner", "Wants it", store=store, starting_model="builtin")


# ------------------------------------------------------------------ applying a choice
def test_the_built_in_choice_gives_an_active_version_of_its_weights(session, world, store,
                                                                    config, standin):
    folder, card = standin
    owner = actor(session, "owner")
    p = projects.create_project(session, owner, "Fresh", store=store)      # the default
    assert p.settings["starting_model"] == "builtin:nuclei-v1"
    mv = _active(session, p.id)
    assert store.get_bytes(mv.weights_blob_key) == (folder / "nuclei-v1.cellloop").read_bytes()
    assert mv.weights_blob_key == card["weights"]["sha256"]
    assert mv.is_active and mv.parent_id is None and mv.training_data == []
    assert mv.created_by_id == owner.id
    assert mv.settings["starting_model"] == "builtin:nuclei-v1"
    assert mv.settings["input_mapping"] == "nuclei-v1"
    assert mv.architecture == {k: card["architecture"][k] for k in
                               starting_models.ARCHITECTURE_KEYS}   # no card-only keys
    assert mv.metrics["macro_f1"] == 0.5 and "fluorescence-small" in mv.metrics["groups"]
    assert "f1" not in mv.metrics        # "f1" is a project's own validation F1
    assert mv.metrics["measured_on"] == "the nuclei-v1 test images"
    # a second project shares the one blob; the version is listed like a trained one
    again = projects.create_project(session, owner, "Fresh too", store=store)
    assert _active(session, again.id).weights_blob_key == mv.weights_blob_key
    assert [v.id for v in model_versions.list_versions(session, owner, p.id)] == [mv.id]
    # the model loads from the blob store and suggests cells on an imported image
    image_id, labels = _import_disc_image(session, store, p.id)
    session.commit()
    result = prediction.suggest(session, owner, store, config, image_id)
    assert result.model_version_id == mv.id and result.n_cells > 0


def test_none_gives_no_version(session, world, store, standin):
    p = _new(session, "owner", "By hand", store=store, starting_model="none")
    assert _active(session, p.id) is None and p.settings["starting_model"] == "none"
    assert model_versions.list_versions(session, actor(session, "owner"), p.id) == []


def test_the_queue_follows_the_start(session, world, store, standin):
    """From a model (built-in or copied) the queue serves regions ranked by stratified random;
    from none, whole images with stratified-cheap (the best measured for each start)."""
    from app.services import learning_loop
    from app.services.learning_loop import loop_settings
    from app.services.region_queue import region_side
    built = _new(session, "owner", "From the built-in", store=store)
    copied = _new(session, "owner", "Copied", store=store,
                  starting_model=f"project:{built.id}")
    plain = _new(session, "owner", "From none", store=store, starting_model="none")
    for p in (built, copied):
        project = session.get(Project, p.id)
        loop = loop_settings(project)
        assert (loop.unit, loop.strategy, loop.region) == ("region", "stratified", 256)
        assert region_side(project) == 256
        assert project.settings["active_learning"] == {"unit": "region",
                                                       "strategy": "stratified"}
    project = session.get(Project, plain.id)
    assert "active_learning" not in project.settings
    assert (loop_settings(project).unit, loop_settings(project).strategy) == (
        "image", "stratified-cheap")
    assert region_side(project) is None
    # a project switched to counting goes back to the defaults (measured on outlines only)
    projects.set_annotation_mode(session, actor(session, "owner"), built.id, "points")
    project = session.get(Project, built.id)
    assert project.settings["active_learning"] == {} and region_side(project) is None
    assert loop_settings(project).strategy == "stratified-cheap"
    # what its owners chose stays
    learning_loop.set_settings(session, actor(session, "owner"), copied.id,
                               {"strategy": "bald", "region": 128})
    projects.set_annotation_mode(session, actor(session, "owner"), copied.id, "points")
    kept = session.get(Project, copied.id).settings["active_learning"]
    assert kept["strategy"] == "bald" and kept["region"] == 128 and "unit" not in kept


@pytest.mark.parametrize("choice", ["builtin:nuclei-v9", "project:abc", "scratch", "project:"])
def test_a_bad_choice_is_refused_with_a_clear_message(session, world, store, standin, choice):
    with pytest.raises(ValidationError, match="Unknown starting model"):
        _new(session, "owner", "Bad", store=store, starting_model=choice)


def test_copying_another_projects_active_model(session, world, store, standin):
    source = _new(session, "outsider", "Source lab", store=store)
    src_mv = _active(session, source.id)
    src_mv.settings = {**src_mv.settings, "postprocess": {"fg_threshold": 0.6}}
    src_mv.metrics = {"f1": 0.8, "n_images": 3}          # as if trained there
    session.commit()
    # the owner of Lab cannot see it: NotFound, and nothing is offered
    with pytest.raises(NotFound):
        _new(session, "owner", "Copy", store=store, starting_model=f"project:{source.id}")
    session.rollback()
    source_id = session.scalar(select(Project.id).where(Project.name == "Source lab"))
    assert session.scalar(select(Project.id).where(Project.name == "Copy")) is None
    projects.set_member(session, SYSTEM, source_id, "owner", "viewer")     # now they can
    copy = _new(session, "owner", "Copy", store=store, starting_model=f"project:{source_id}")
    mv, src_mv = _active(session, copy.id), _active(session, source_id)
    assert mv.id != src_mv.id and mv.project_id == copy.id and mv.is_active
    assert mv.weights_blob_key == src_mv.weights_blob_key and mv.parent_id is None
    assert mv.settings["copied_from"] == {"project_id": source_id, "project_name": "Source lab",
                                          "model_version_id": src_mv.id}
    assert mv.settings["postprocess"] == {"fg_threshold": 0.6}
    assert mv.settings["input_mapping"] == "nuclei-v1" and mv.training_data == []
    assert copy.settings["starting_model"] == f"project:{source_id}"
    assert mv.metrics == {"source": {"f1": 0.8, "n_images": 3}, "source_f1": 0.8,
                          "n_images": 3, "measured_on": "in 'Source lab'"}
    assert starting_models.describe(mv.settings) == f"copy of Source lab #{src_mv.id}"
    # a project without an active model has nothing to copy
    with pytest.raises(ValidationError, match="no active model"):
        _new(session, "owner", "Copy 2", store=store,
             starting_model=f"project:{world['project_id']}")


def test_a_copied_model_must_read_the_projects_channels(session, world, store, standin):
    """A model trained on one channel (no input mapping) cannot start a two-channel
    project."""
    pid = world["project_id"]
    session.add(ModelVersion(project_id=pid, weights_blob_key=store.put_bytes(b"w"),
                             architecture={"in_channels": 1}, settings={}, is_active=True))
    session.flush()
    with pytest.raises(ValidationError, match="reads 1 channel"):
        _new(session, "owner", "Two", store=store, starting_model=f"project:{pid}",
             channels=[{"name": "DAPI"}, {"name": "GFP"}])
    assert _new(session, "owner", "One", store=store, starting_model=f"project:{pid}")


def test_fine_tuning_starts_from_the_starting_model(db, config, world, lab, standin):
    """The first training of a project that started from the built-in model fine-tunes it."""
    from tests.training_runs import train
    with db.session_scope() as s:
        start = starting_models.apply(s, SYSTEM, lab, world["project_id"], "builtin")
    state, result, error = train(db, config, world, epochs=1)
    assert state == "done", error
    with db.session_scope() as s:
        mv = s.get(ModelVersion, result["model_version_id"])
        assert mv.parent_id == start and mv.settings["fine_tuned_from"] == start


def test_an_rgb_project_fine_tunes_the_one_channel_built_in_model(db, config, world, store,
                                                                 standin):
    """The built-in model reads one (mapped) channel; a three-channel project's training still
    starts from it instead of dropping it for the channel count."""
    from app.jobs.runner import run_job
    from app.services import training
    from tests.conftest import TINY_TRAINING
    from tests.images_data import png
    with db.session_scope() as s:
        pid = projects.create_project(
            s, SYSTEM, "Stained", owner_id=world["owner"], store=store,
            channels=[{"name": "R"}, {"name": "G"}, {"name": "B"}]).id
        start = _active(s, pid).id
        items = []
        for k in range(4):
            grey, labels = nuclei((96, 96), n=8, seed=k, dtype=np.uint8)
            rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
            items.append(imports.ImportFile(
                f"s{k}.png", read=lambda rgb=rgb: png(rgb),
                read_labels=lambda labels=labels: tiff(labels)))
        imports.import_files(s, SYSTEM, store, pid, items, 1 << 28)
        projects.set_training_settings(s, SYSTEM, pid, TINY_TRAINING)
        job = training.start_training(s, SYSTEM, pid, {"epochs": 1}, lambda _id: None)
    assert run_job(db, config, job.id) == "done"
    with db.session_scope() as s:
        mv = _active(s, pid)
        assert mv.id != start and mv.parent_id == start
        assert mv.settings["fine_tuned_from"] == start


# ------------------------------------------------------------------ the shipped model
def test_the_shipped_built_in_model_starts_a_project_and_suggests_cells(session, world, store,
                                                                        config):
    if not (SHIPPED_DIR / "nuclei-v1.json").is_file():
        pytest.skip(f"the built-in model is not in this checkout ({SHIPPED_DIR}/nuclei-v1.json "
                    "is absent)")
    owner = actor(session, "owner")
    p = projects.create_project(session, owner, "Shipped", store=store)   # the default
    mv = _active(session, p.id)
    card = starting_models.builtin_card()
    weights = SHIPPED_DIR / card["weights"]["file"]
    assert store.get_bytes(mv.weights_blob_key) == weights.read_bytes()
    model = model_versions.load(store, mv)
    assert model.meta.get("input_mapping") == "nuclei-v1"
    image_id, labels = _import_disc_image(session, store, p.id, seed=3)
    session.commit()
    t0 = time.perf_counter()
    result = prediction.suggest(session, owner, store, config, image_id)
    print(f"suggest with the shipped model (loaded): {time.perf_counter() - t0:.2f} s, "
          f"{result.n_cells} cells of {labels.max()}", file=sys.stderr)
    assert result.n_cells > 0


def test_the_service_imports_no_torch():
    import subprocess
    code = ("import sys; import app.services.starting_models, app.services.projects; "
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_cli_create_project_with_a_starting_model(tmp_path, monkeypatch, capsys):
    import io

    from app import cli
    from app.db import Database
    folder = tmp_path / "pretrained"
    write_standin(folder)
    monkeypatch.setattr(starting_models, "BUILTIN_DIR", folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    monkeypatch.setattr(sys, "stdin", io.StringIO("boss-password\n"))
    assert cli.main(["init-db"]) == 0
    assert cli.main(["create-user", "boss"]) == 0
    assert cli.main(["create-project", "A", "--owner", "boss"]) == 0
    assert cli.main(["create-project", "B", "--owner", "boss", "--starting-model", "none"]) == 0
    assert cli.main(["create-project", "C", "--owner", "boss",
                     "--starting-model", "project:A"]) == 0
    assert cli.main(["create-project", "D", "--owner", "boss",
                     "--starting-model", "project:Nope"]) == 2
    assert cli.main(["create-project", "E", "--owner", "boss",
                     "--starting-model", "pretrained"]) == 2
    captured = capsys.readouterr()
    assert ("created project 'A' (id 1), owner boss, starting model builtin:nuclei-v1, the "
            "queue serves regions (stratified)") in captured.out
    assert "starting model none, the queue serves whole images (stratified-cheap)" in \
        captured.out and "starting model project:1, the queue serves regions" in captured.out
    assert "No project called 'Nope'" in captured.err
    assert "Unknown starting model 'pretrained'" in captured.err
    db = Database(f"sqlite:///{(tmp_path / 'data').resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        keys = {pid: mv.weights_blob_key for pid, mv in (
            (pid, model_versions.active_version(s, pid)) for pid in (1, 2, 3)) if mv}
        assert set(keys) == {1, 3} and keys[1] == keys[3]
    db.dispose()


# ------------------------------------------------------------------ pages
def test_the_project_form_offers_and_applies_the_choice(as_user, world, standin):
    import dash

    from app.context import get_session
    from pages import projects as page
    from tests.conftest import component_text as text
    with as_user("owner"):
        shown = text(page.layout())
        assert "projects-new-starting-model" in shown and "Built-in nuclei model" in shown
        assert '"value": "builtin:nuclei-v1"' in shown        # chosen by default
        message, href = page.create_project(1, "Picked none", "", "", "", "none")
        assert message is None
        pid = int(href.rsplit("/", 1)[1])
        assert model_versions.active_version(get_session(), pid) is None
        message, href = page.create_project(1, "Picked built-in", "", "", "", "builtin:nuclei-v1")
        pid = int(href.rsplit("/", 1)[1])
        assert model_versions.active_version(get_session(), pid).settings["starting_model"] \
            == "builtin:nuclei-v1"
        message, href = page.create_project(1, "Forged", "", "", "", "project:999")
        assert href is dash.no_update and "No project with id 999" in text(message)


def test_the_models_page_names_a_starting_version(as_user, world, standin):
    from pages import models as page
    from tests.conftest import component_text as text
    with as_user("owner"):
        from app.context import get_session, state
        starting_models.apply(get_session(), actor(get_session(), "owner"), state().store,
                              world["project_id"], "builtin")
        get_session().commit()
        shown = text(page.layout(project_id=str(world["project_id"])))
    assert "built-in nuclei-v1" in shown and "the nuclei-v1 test images" in shown
    assert "0.500" in shown                      # the card's macro F1, said where it is from


def test_the_automatic_suggestion_never_covers_cells_drawn_meanwhile(session, world, store,
                                                                     config, standin):
    """pages._annotate_flow.suggest_untouched: applied on an untouched draft; set aside (Redo
    brings it) when the user drew while the model predicted."""
    from app.services import annotations, drafts
    from pages._annotate_flow import suggest_untouched
    from tests.images_data import rect
    owner = actor(session, "owner")
    p = projects.create_project(session, owner, "Race", store=store)
    first, _ = _import_disc_image(session, store, p.id, seed=1)
    second, _ = _import_disc_image(session, store, p.id, seed=2)
    session.commit()
    annotations.open_workspace(session, owner, config, first)
    result, applied = suggest_untouched(session, owner, config, store, first)
    assert applied and result.n_cells > 0 and result.can_undo
    annotations.open_workspace(session, owner, config, second)
    drafts.record_edit(session, owner, config, store, second,       # drawn meanwhile
                       {"op": "add", "shape": rect(2, 2, 12, 12)})
    result, applied = suggest_untouched(session, owner, config, store, second)
    assert not applied and result.n_cells == 1 and result.can_redo


def test_an_automatic_suggestion_leaves_the_image_new_and_follows_newer_versions(
        session, world, store, config, standin):
    """Opening an image (the workspace suggests on its own) is not work: the image stays
    "new", and when someone else saves a version the opener's draft shows that version."""
    from app.services import annotations, drafts, leases
    from app.tables import Image
    from tests.images_data import rect
    owner = actor(session, "owner")
    p = projects.create_project(session, owner, "Browsed", store=store)
    projects.set_member(session, owner, p.id, "reviewer", "reviewer")
    image_id, _ = _import_disc_image(session, store, p.id, seed=3)
    session.commit()
    annotations.open_workspace(session, owner, config, image_id)
    suggested = drafts.use_suggestion(session, owner, config, store, image_id, auto=True)
    assert suggested.n_cells > 0
    assert session.get(Image, image_id).status == "new"
    leases.release(session, owner, image_id)                 # the owner moved on
    rita = actor(session, "reviewer")
    annotations.open_workspace(session, rita, config, image_id)
    drafts.record_edit(session, rita, config, store, image_id,
                       {"op": "add", "shape": rect(2, 2, 12, 12)})
    saved = annotations.save(session, rita, config, store, image_id)
    leases.release(session, rita, image_id)
    session.commit()
    workspace = annotations.open_workspace(session, owner, config, image_id)
    draft = drafts.find_draft(session, owner, image_id)
    assert workspace.latest.version == saved.version
    assert workspace.draft_base_version == saved.version and draft.edits == []
    assert drafts.counts(session, owner, config, store, image_id) == (1, 0)


# ------------------------------------------------------------------ prefilled suggestions
def test_an_import_prefills_suggestions_and_a_cached_one_loads_no_model(
        db, session, world, store, config, standin, monkeypatch):
    """After an import into a project with a model, a predict job of the new images is
    queued; once it ran, the workspace's suggestion comes from the cache without a model."""
    from app.jobs.runner import run_job
    from app.tables import Job
    owner = actor(session, "owner")
    p = projects.create_project(session, owner, "Prefilled", store=store)
    ids = [_import_disc_image(session, store, p.id, seed=k)[0] for k in range(3)]
    session.commit()
    sent = []
    job_id = prediction.prefill_suggestions(session, owner.id, p.id, ids, sent.append)
    assert sent == [job_id]
    job = session.get(Job, job_id)
    assert (job.kind, job.params) == ("predict", {"image_ids": sorted(ids)})
    # a viewer's import would not queue one (they may not predict); nor a project without model
    projects.set_member(session, owner, p.id, "viewer", "viewer")
    assert prediction.prefill_suggestions(session, actor(session, "viewer").id, p.id, ids,
                                          sent.append) is None
    bare = projects.create_project(session, owner, "Bare", starting_model="none")
    assert prediction.prefill_suggestions(session, owner.id, bare.id, ids, sent.append) is None
    session.commit()
    assert run_job(db, config, job_id) == "done"

    def no_model(*_args, **_kwargs):
        raise AssertionError("the cached suggestion loaded a model")
    monkeypatch.setattr(model_versions, "load", no_model)
    with db.session_scope() as s:
        result = prediction.suggest(s, actor(s, "owner"), store, config, ids[0])
    assert result.n_cells > 0

"""Issue 19 items 3, 7 and 8 on the Models page and the shared job display: the budget field
takes any positive number of minutes and shows what it refuses; the plot and the table show
the same validation score, with the number of validation images; job cards show steps, the
time left, what a queued job waits behind and a finished job's outcome."""
import datetime as dt

import dash

from app.services import jobs, model_versions
from app.tables import Job
from tests.conftest import component_text as text


def version(metrics, curve, vid=7):
    return model_versions.VersionInfo(vid, 1, None, True, dt.datetime(2026, 1, 1), "owner",
                                      metrics, curve, 12, {}, {})


def job_info(state, progress=0.0, message="", started=None, result=None, kind="train"):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return jobs.JobInfo(5, kind, 1, "owner", state, progress, message, "", result or {}, False,
                        now, started, now if state in ("done", "failed") else None)


def test_budget_field_accepts_whole_numbers_and_marks_what_it_refuses(as_user, world):
    from pages import models
    pid = world["project_id"]
    with as_user("owner"):
        for typed in ("5", "1", "0.25", "10", ""):
            ep_bad, _ep_msg, bad, msg, help_text, disabled = models.check_form("40", typed, pid)
            assert (ep_bad, bad, msg, disabled) == (False, False, None, False), typed
        assert models.check_form("40", "5", pid)[4] == (
            "Stops after about 5 min or 40 epochs, whichever comes first "
            "(at least one epoch).")
        assert models.check_form("40", "", pid)[4] == "No time limit: trains up to 40 epochs."
        for typed in ("0", "-2", "abc", "2,5", "1441"):
            _e, _m, bad, msg, _h, disabled = models.check_form("40", typed, pid)
            assert bad and disabled and "time budget" in msg, typed
        ep_bad, ep_msg, bad, _msg, _h, disabled = models.check_form("2.5", "5", pid)
        assert ep_bad and not bad and disabled and "whole number" in ep_msg
    with as_user("annotator"):                  # may not train: nothing to enable
        *_, help_text, disabled = models.check_form("40", "5", pid)
        assert disabled and "this needs reviewer" in help_text


def test_train_with_a_typed_whole_number_budget(as_user, world, db, config):
    from app.permissions import SYSTEM
    from app.services import imports
    from pages import models
    from storage.blobstore import LocalBlobStore
    from tests.images_data import nuclei, tiff
    img, lab = nuclei(shape=(64, 64), n=4, seed=1)
    with db.session_scope() as s:   # one annotated image, so training may start
        imports.import_files(s, SYSTEM, LocalBlobStore(config.blob_dir), world["project_id"],
                            [imports.ImportFile("a.tif", read=lambda: tiff(img),
                                               read_labels=lambda: tiff(lab))], 1 << 28)
    with as_user("owner"):
        job_id, poll_off, message = models.start_training(1, world["project_id"], "3", "5",
                                                          True)
    assert message is None and poll_off is False
    with db.session_scope() as s:
        assert s.get(Job, job_id).params == {"fine_tune": True, "rescore": False, "epochs": 3,
                                             "max_minutes": 5.0}
    with as_user("owner"):
        _j, _p, message = models.start_training(1, world["project_id"], "3", "abc", True)
    assert "time budget" in text(message)


def test_plot_shows_the_score_the_table_shows(dash_app):
    from pages import models
    v = version({"f1": 0.766, "dice": 0.8, "n_images": 3, "best_epoch": 2},
                [{"epoch": 1, "val_f1": 0.0}, {"epoch": 2, "val_f1": 0.0},
                 {"epoch": 3, "val_f1": 0.0}])
    fig = models.curves_figure([v])
    final = [t for t in fig.data if t.name == "#7 final"]
    assert len(final) == 1 and list(final[0].y) == [0.766] and list(final[0].x) == [2]
    assert "on 3 validation images" in final[0].hovertemplate
    per_epoch = [t for t in fig.data if t.name == "#7 per epoch"][0]
    assert list(per_epoch.y) == [0.0, 0.0, 0.0]
    table = text(models.versions_table([v]))
    assert "0.766" in table and " on 3 validation images" in table and "models-f1" in table
    old = version({"f1": 0.5}, [], vid=2)           # versions from before: no count, no curve
    assert [t.name for t in models.curves_figure([old]).data] == ["#2 final"]
    assert "validation image" not in text(models.versions_table([old]))


def test_job_display_shows_steps_time_left_waiting_and_outcome(dash_app):
    from pages._jobs import job_progress
    started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=60)
    running = text(job_progress(job_info("running", 0.25, "Training: step 120/1600 · epoch 3/40",
                                         started)))
    assert "Training: step 120/1600" in running and "about 3 min 00 s left" in running
    assert "job-eta" in running
    early = text(job_progress(job_info("running", 0.0005, "Loading annotated images: 3/12",
                                       started)))
    assert "estimating the time left" in early
    queued = text(job_progress(job_info("queued", 0.0, "Waiting behind job #4 (train, running).")))
    assert "Waiting behind job #4" in queued and "queued for" in queued
    done = text(job_progress(job_info("done", 1.0, "Model #7: validation F1 0.766 on 3 "
                                      "validation images; activated.", started)))
    assert "Model #7: validation F1 0.766" in done and "took 1 min" in done and "100%" in done


def test_poll_shows_the_outcome_of_a_finished_training(as_user, world, db):
    from pages import models
    with db.session_scope() as s:
        job = Job(kind="train", project_id=world["project_id"], user_id=world["owner"],
                  state="done", progress=1.0, message="Done.", params={},
                  result={"outcome": "Model #9: validation F1 0.700 on 2 validation images; "
                                     "activated (the first model of the project)."})
        s.add(job)
        s.flush()
        job_id = job.id
    with as_user("owner"):
        view, poll_off, refresh, cancel_style = models.poll(1, job_id, 0)
    assert poll_off is True and refresh == 1
    assert cancel_style == {"display": "none"}        # no Cancel once the job has ended
    assert "Model #9: validation F1 0.700 on 2 validation images" in text(view)
    assert "Done." not in text(view)
    with as_user("owner"):
        assert models.poll(1, None, 0)[2] is dash.no_update
    with db.session_scope() as s:
        s.get(Job, job_id).state = "running"
    with as_user("owner"):
        assert models.poll(1, job_id, 0)[3] == {}     # Cancel while it runs
    with as_user("reviewer"):                         # may follow it, may not cancel it
        assert models.poll(1, job_id, 0)[3] == {"display": "none"}


def test_learning_page_gives_the_validation_images_next_to_f1(dash_app):
    from pages import learning
    points = learning.with_validation_counts(
        [{"version": 7, "n_images": 12, "f1": 0.766, "dice": 0.8, "active": True,
          "previous_active": None}],
        [version({"f1": 0.766, "n_images": 3}, [])])
    assert "0.766" in text(learning.rounds_table(points))
    assert " on 3 validation images" in text(learning.rounds_table(points))
    assert "on 3 validation images" in learning.progress_figure(points).data[0].text[0]


def test_a_finished_job_puts_the_new_version_in_the_plot(as_user, world, db):
    from app.tables import ModelVersion
    from pages import models
    with db.session_scope() as s:
        ids = []
        for f1 in (0.5, 0.6, 0.7, 0.766):
            mv = ModelVersion(project_id=world["project_id"], weights_blob_key="a" * 64,
                              metrics={"f1": f1, "n_images": 3}, training_data=[1])
            s.add(mv)
            s.flush()
            ids.append(mv.id)
    with as_user("owner"):
        table, options, shown = models.refresh_versions(1, world["project_id"])
        assert shown == ids[::-1][:3] and len(options) == 4
        figure = models.compare(shown, world["project_id"])
    assert [t.y[0] for t in figure.data] == [0.766, 0.7, 0.6]


def test_a_counting_version_shows_its_count_error_and_offers_every_export():
    """Issue 23: a counting model's table row gives its validation count error, its curve
    (per step, not per epoch) does not break the plot, and it offers .cellloop, TorchScript
    and ONNX downloads (the exports output its density)."""
    from pages import models
    v = model_versions.VersionInfo(9, 1, None, True, dt.datetime(2026, 1, 1), "owner",
                                   {"mae": 0.5, "n_images": 2}, [{"step": 1, "loss": 0.1}], 8,
                                   {"kind": "counting"}, {})
    row = text(models.versions_table([v]))
    assert "count error 0.50" in row and " cells/image on 2 validation images" in row
    links = _links(models.versions_table([v]))
    assert [a.children for a in links] == ["cellloop", "pt", "onnx"]
    assert [a.href for a in links] == [f"/api/models/9/export.{e}" for e in
                                       ("cellloop", "pt", "onnx")]
    assert "cell density" in links[1].title and "cell density" in links[2].title
    empty = models.curves_figure([v])
    assert empty.data == ()
    assert "compared by their count error" in empty.layout.annotations[0].text
    assert "count error 0.50" in models.rollback_options([v])[0]["label"]
    # the interval calibrated on the validation images, and what it rests on
    v.metrics["interval"] = {"level": 0.9, "low": -0.12, "high": 0.18, "units": 8,
                             "unit_side": 256, "guaranteed": False}
    row = text(models.versions_table([v]))
    assert ("90% interval: count -12% to +18% (calibrated on 8 tiles of 256 px, too few for "
            "the level to hold)") in row
    v.metrics["interval"].update(units=20, unit_side=None, guaranteed=True)
    assert "(calibrated on 20 images)" in text(models.versions_table([v]))
    # what it outputs and reads (a version from before the target was recorded: a density)
    assert models._cells_text(v.settings) == "density · reads the image's channels"
    assert "reads the image's channels" in row
    v.settings.update(target="centres", input_mapping="nucleus-contrast-v1")
    assert models._cells_text(v.settings) == "heat-map peaks · reads the nuclear stain"
    assert "reads the nuclear stain" in text(models.versions_table([v]))


def _links(component):
    found = []

    def walk(c):
        if isinstance(c, dash.html.A):
            found.append(c)
        for child in (getattr(c, "children", None) or []) if not isinstance(
                getattr(c, "children", None), (str, int, float)) else []:
            walk(child)
    walk(component)
    return found


def test_learning_rounds_show_a_counting_models_count_error():
    """A counting model's score (count error) has its own column and labels the active
    model's score before it; it is never shown as an F1."""
    from pages import learning
    points = [{"version": 4, "n_images": 5, "f1": None, "dice": None, "mae": 1.25,
               "previous_active": 2.5, "active": True, "n_val": 1}]
    table = text(learning.rounds_table(points))
    assert "Count error" in table and "1.25" in table and "count error 2.50" in table
    assert "Count error" not in text(learning.rounds_table([
        {"version": 3, "n_images": 5, "f1": 0.7, "dice": None, "previous_active": None,
         "active": True}]))


def test_the_compare_chart_says_why_a_starting_model_has_no_curve():
    """The built-in model a project starts from has no validation curve of this project: the
    chart says so instead of showing empty axes."""
    from pages import models
    builtin = model_versions.VersionInfo(1, 1, None, True, dt.datetime(2026, 1, 1), "system",
                                         {}, [], 0, {"starting_model": "builtin:nuclei-v1"}, {})
    fig = models.curves_figure([builtin])
    assert fig.data == () and "starting model" in fig.layout.annotations[0].text
    assert "Choose versions" in models.curves_figure([]).layout.annotations[0].text


def test_a_fine_tuned_version_shows_its_parent_and_the_pull_back_to_it(dash_app):
    from pages import models

    def version(vid, parent, settings):
        return model_versions.VersionInfo(vid, 1, parent, False, dt.datetime(2026, 1, 1),
                                          "owner", {"f1": 0.5}, [], 3, settings, {})
    pulled, not_pulled = version(5, 4, {"pull": 50.0}), version(6, 4, {"pull": 0.0})
    assert models._origin(pulled) == "#4 · pull 50" and models._origin(not_pulled) == "#4"
    assert "pull 50" in text(models.versions_table([pulled]))
    assert "pull" not in text(models.versions_table([not_pulled]))


def test_the_learning_page_names_every_strategy_and_the_heat_map_title_too(dash_app):
    from app.services.display import STRATEGY_TITLES
    from models.strategies import CLASSES
    from pages import learning
    assert set(learning.STRATEGY_LABELS) == set(CLASSES)
    assert set(STRATEGY_TITLES) == set(CLASSES)
    assert learning.STRATEGY_LABELS["stratified-cheap"].startswith("Stratified random, fewer")

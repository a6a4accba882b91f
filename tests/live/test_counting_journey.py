"""Issue 23, walked in headless Chromium against CellLoop started as run.sh starts it: a
points project made and filled from the command line (create-project --mode points, import
--points), trained by a reviewer from the Learning page (a counting model, on the job
worker), its calibrated interval shown and its ONNX export downloaded and predicted from
the Models page; the project page then counts every image per
group, with a CSV download; an annotator's "Use model suggestion" puts the model's points on
screen; a viewer cannot train; the owner chooses what the counting model reads on the project
page. Journey tier (`-m journey`)."""
import csv
import json
import io
import time

import pytest
import tifffile

from tests.images_data import discs

pytestmark = [pytest.mark.journey, pytest.mark.slow]

SMALL = {"steps": 120, "batch": 4, "patch": 64, "width": 8, "depth": 2, "sigma": 2.0}


def job_of(live, kind: str, pid: int, timeout: float = 30) -> int:
    """The id of the project's job of `kind` (once the click has queued it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = live.query("SELECT id FROM job WHERE kind = ? AND project_id = ?", kind, pid)
        if rows:
            return rows[0][0]
        time.sleep(0.3)
    raise AssertionError(f"no {kind} job was queued")


def make_project(live) -> int:
    images, clicks = live.folder / "smears", live.folder / "clicks"
    images.mkdir()
    clicks.mkdir()
    for k, group in enumerate(["ctrl", "ctrl", "ctrl", "drug", "drug"]):
        img, centres = discs(k, 6 if group == "ctrl" else 9)
        tifffile.imwrite(images / f"{group}_{k}.tif", img)
        (clicks / f"{group}_{k}.csv").write_text(
            "x,y\n" + "".join(f"{x},{y}\n" for x, y in centres))
    for k in (5, 6):
        tifffile.imwrite(images / f"drug_{k}.tif", discs(k, 9)[0])        # not clicked
    live.cli("create-project", "Marrow", "--owner", "admin", "--mode", "points",
             "--starting-model", "none", "--classes", "cell:#ff0000")
    for user, role in (("anna", "annotator"), ("rita", "reviewer"), ("victor", "viewer")):
        live.cli("add-member", "Marrow", user, role)
    out = live.cli("import", "Marrow", str(images), "--points", str(clicks), "--quiet").stdout
    assert "imported 7, duplicates 0, rejected 0" in out, out
    pid = live.project_id("Marrow")
    live.python(
        "from app.config import Config; from app.db import Database; from app.tables import Project\n"
        "db = Database(Config.from_env().sqlalchemy_url)\n"
        "with db.session_scope() as s:\n"
        f"    p = s.get(Project, {pid}); p.settings = {{**p.settings, 'counting': {SMALL!r}}}\n")
    return pid


def test_a_points_project_is_trained_predicted_and_counted_in_the_browser(live, person):
    pid = make_project(live)
    person.login("rita")
    person.go(f"/projects/{pid}/learning", ready="#learning-train")
    person.click("#learning-train")
    person.wait_text("#learning-message", "Training job #")
    job = live.wait_job(job_of(live, "train", pid), timeout=600)
    assert job["state"] == "done", job
    (settings,) = [json.loads(r[0]) for r in live.query(
        "SELECT settings FROM model_version WHERE project_id = ?", pid)]
    assert settings["kind"] == "counting" and settings["input_mapping"] is None
    assert settings["target"] == "centres"             # the default: a centre heat-map

    person.go(f"/projects/{pid}/models", ready="#models-predict-all")
    # the version's row says its calibrated interval, and its ONNX export downloads: the
    # network outputs the centre heat-map, and the card inside says how to count with it
    row = person.wait_text("#models-table", "count error")
    assert "90% interval: count " in row and "(calibrated on " in row, row
    assert "reads the image's channels" in row, row       # grey images: auto keeps them
    href = person.driver.find_element(
        "css selector", "#models-table a[href$='export.onnx']").get_attribute("href")
    answer = live.login("rita").get(href, timeout=120)
    assert answer.status_code == 200, answer.text[:300]
    import onnx
    proto = onnx.load_from_string(answer.content)
    card = {p.key: p.value for p in proto.metadata_props}["model_card"]
    assert '"kind": "counting"' in card and '"interval"' in card
    assert '"target": "centres"' in card and '"select": "threshold"' in card
    assert "count = the number of points" in card     # the peaks are the count
    assert [o.name for o in proto.graph.output] == ["density"]
    person.click("#models-predict-all")
    predict_id = job_of(live, "predict", pid)
    assert live.wait_job(predict_id, timeout=300)["state"] == "done"

    person.go(f"/projects/{pid}", ready="#project-counts-groups")
    groups = person.wait_text("#project-counts-groups", "drug")
    assert "ctrl" in groups
    person.shot("project-counts")
    href = person.driver.find_element("css selector", "#project-counts-download") \
        .get_attribute("href")
    rows = list(csv.DictReader(io.StringIO(live.login("rita").get(href, timeout=60).text)))
    by_name = {r["image"]: r for r in rows}
    assert by_name["ctrl_0.tif"]["source"] == "annotation" and by_name["ctrl_0.tif"]["count"] == "6"
    fresh = by_name["drug_5.tif"]
    assert fresh["source"] == "model" and abs(float(fresh["count"]) - 9) < 2, fresh

    person.login("anna")
    (image_id,) = [r[0] for r in live.query(
        "SELECT id FROM image WHERE name = 'drug_6.tif' AND project_id = ?", pid)]
    person.go(f"/annotate/{image_id}", ready="#annotate-suggest")
    person.click("#annotate-suggest")
    person.wait_text("#annotate-message", "Model suggestion loaded: ", timeout=120)
    assert " points. Click a point to remove it" in person.text("#annotate-message")
    counted = person.wait_text("#annotate-counts", "points", timeout=60)
    n = int(counted.split("points")[0].split()[-1])
    assert abs(n - 9) <= 2, counted
    # as many points as the model counted for this image (rounded half up)
    counted_by_model = by_name["drug_6.tif"]
    assert n == int(float(counted_by_model["count"]) + 0.5), (counted, counted_by_model)
    assert "orange-and-white ring" in person.text("#annotate-points-legend")
    person.shot("counting-suggestion")

    person.login("victor")
    person.go(f"/projects/{pid}/learning", ready="#learning-train")
    assert person.disabled("#learning-train")


def test_the_built_in_models_suggestion_in_a_points_project_is_points_that_count(live, person):
    """A new user's walk: in a points project started from the built-in nuclei model (the
    default), Use model suggestion loaded outlines, saved as "1258 cells" and counted as 0.
    Now it is a point per cell, saved and counted as points."""
    images = live.folder / "fresh-smears"
    images.mkdir()
    tifffile.imwrite(images / "ctrl_9.tif", discs(9, 9, (160, 160))[0])
    live.cli("create-project", "Smears", "--owner", "admin", "--mode", "points",
             "--starting-model", "builtin", "--classes", "cell:#ff0000")
    live.cli("add-member", "Smears", "anna", "annotator")
    assert "imported 1" in live.cli("import", "Smears", str(images), "--quiet").stdout
    pid = live.project_id("Smears")
    (image_id,) = [r[0] for r in live.query("SELECT id FROM image WHERE project_id = ?", pid)]

    person.login("anna")
    person.go(f"/annotate/{image_id}", ready="#annotate-suggest")
    person.click("#annotate-suggest")
    message = person.wait_text("#annotate-message", "Model suggestion loaded: ", timeout=180)
    assert " points. Click a point to remove it" in message, message
    n = int(message.split("Model suggestion loaded: ")[1].split()[0])
    assert n >= 1
    person.wait_text("#annotate-counts", f"{n} points", timeout=60)
    person.shot("points-from-the-built-in-model")
    person.click("#annotate-save")
    saved = person.wait_text("#annotate-message", "Saved version 1", timeout=60)
    assert f"({n} point" in saved, saved
    assert live.query("SELECT n_cells FROM annotation WHERE image_id = ?", image_id)[0][0] == 0

    person.go(f"/projects/{pid}", ready="#project-counts-groups")
    href = person.driver.find_element("css selector", "#project-counts-download") \
        .get_attribute("href")
    rows = list(csv.DictReader(io.StringIO(live.login("anna").get(href, timeout=60).text)))
    assert [(r["image"], r["count"], r["source"]) for r in rows] == [
        ("ctrl_9.tif", str(n), "annotation")]

    person.go(f"/projects/{pid}", ready="#project-counts-groups")
    assert person.gone("#project-count-input")       # annotators do not choose the model

    # the owner reviews it: the review list and the viewer say its points, not "0 cells"
    person.login("admin")
    person.go(f"/projects/{pid}/review", ready="#review-submitted")
    waiting = person.wait_text("#review-submitted", f"{n} point")
    assert "Marked" in waiting and "0 cells" not in waiting, waiting
    person.go(f"/images/{image_id}", ready="#viewer-history")
    assert f"version 1, {n} point" in person.driver.page_source

    # and chooses what the project's counting model reads: the nuclear stain
    person.go(f"/projects/{pid}", ready="#project-count-input")
    person.click("#project-count-input label[for$='_input_nucleus-contrast-v1']")
    person.wait_text("#project-counting-status", "reads the nuclear stain")
    person.shot("counting-model-choice")
    (stored,) = [json.loads(r[0]) for r in live.query(
        "SELECT settings FROM project WHERE id = ?", pid)]
    assert stored["counting"] == {"input_mapping": "nucleus-contrast-v1"}
    assert "input_mapping    nucleus-contrast-v1" in live.cli("counting-settings",
                                                                "Smears").stdout

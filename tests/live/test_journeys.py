"""The journey tier: a lab's first week, walked per role in headless Chromium against CellLoop
started as `run.sh` starts it (fresh relative data directory, gunicorn with two workers, a
worker per queue, the demo accounts). The steps run in order and share one site:

owner: create a project with two classes (it starts from the built-in model, so its queue
serves regions), upload a zip of images and masks (the upload ranks the regions), add
members, train with a budget typed as "1" and watch it move · annotator: opens a region,
draws in it with a class key,
re-classify it and back, Undo and Redo pressed back to back, save,
take a model suggestion, undo and redo it, save · reviewer: accept one, send one back with a
comment · annotator: gets the returned image first, with the comment · owner: downloads the
project zip and the model's .onnx, which open · viewer: finds nothing editable.

With CELLLOOP_SCREENSHOTS=docs/screenshots the pages are saved there at 1600x1000 and
1280x720."""
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.live.harness import ROOT, LiveApp
from tests.live.walker import Walker

pytestmark = [pytest.mark.journey, pytest.mark.slow]
PROJECT = "Journey nuclei"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    app = LiveApp(tmp_path_factory.mktemp("journey") / "site")
    try:
        yield app.start()
    finally:
        app.stop()


@pytest.fixture(scope="module")
def person(site, tmp_path_factory):
    walker = Walker(site, tmp_path_factory.mktemp("downloads"))
    try:
        yield walker
    finally:
        walker.quit()


@pytest.fixture(scope="module")
def story():
    return {}


def demo_zip(folder: Path) -> Path:
    """The demo's 12 images and its 4 label images, as a lab would zip them."""
    path = folder / "plates.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((ROOT / "demo" / "images").iterdir()):
            zf.write(p, f"plates/images/{p.name}")
        for p in sorted((ROOT / "demo" / "labels").iterdir()):
            zf.write(p, f"plates/labels/{p.name}")
    return path


def test_owner_creates_a_project_uploads_a_zip_and_adds_members(site, person, story,
                                                                tmp_path):
    person.login("admin")
    person.go("/projects", "#projects-new-toggle")
    person.shot("projects")
    person.click("#projects-new-toggle")
    person.type("#projects-new-name", PROJECT)
    person.type("#projects-new-classes", "nucleus:#ff3b30, mitotic:#00c8ff")
    person.click("#projects-create")
    person.wait_text("#project-name", PROJECT)
    story["pid"] = pid = int(person.path.split("/")[2])

    person.go(f"/projects/{pid}/images", "#images-upload")
    person.wait("#images-upload input[type=file]").send_keys(str(demo_zip(tmp_path)))
    person.wait_text(".images-job-outcome", "12 imported", timeout=240)
    person.shot("images")
    # the upload ranked the 8 unannotated images by region (stratified random needs no model)
    deadline = time.time() + 240
    while site.query("SELECT state FROM job WHERE kind='score' AND project_id=?",
                     pid) != [("done",)]:
        assert time.time() < deadline, site.query("SELECT kind, state, error FROM job")
        time.sleep(1)
    regions = site.query("SELECT s.region FROM score s JOIN image i ON i.id = s.image_id "
                         "WHERE s.strategy='stratified' AND i.project_id=?", pid)
    assert len(regions) == 8 and all(json.loads(r)[2] - json.loads(r)[0] == 256
                                     for (r,) in regions), regions

    person.go(f"/projects/{pid}", "#project-add-username")
    for name, role in (("anna", "annotator"), ("rita", "reviewer"), ("victor", "viewer")):
        person.type("#project-add-username", name)
        person.choose("#project-add-role", role)
        person.click("#project-add-member")
        person.wait_text("#project-message", f"{name} is now {role}")
        assert person.wait("#project-add-username").get_attribute("value") == ""
    person.wait_text("#project-members-table", "victor")
    person.shot("project")


def test_owner_trains_with_a_budget_typed_as_1_and_watches_it_move(site, person, story):
    pid = story["pid"]
    person.go(f"/projects/{pid}/models", "#models-max-minutes")
    person.type("#models-max-minutes", "1")
    person.click("#models-train")
    seen, deadline = [], time.time() + 600
    while time.time() < deadline:
        text = person.text("#models-job-view")
        if not seen or seen[-1] != text:
            seen.append(text)
        # ended in the database and on screen (a run stopped by its budget still names its
        # steps when done, so the page's words alone cannot tell)
        ended = site.query("SELECT state FROM job WHERE kind='train' ORDER BY id DESC")
        if ended and ended[0][0] in ("done", "failed", "cancelled") and ended[0][0] in text:
            break
        time.sleep(1)
    steps = [t for t in seen if "step" in t]
    assert len(set(steps)) >= 3, seen          # progress moved while it trained
    assert "done" in seen[-1], seen[-1]
    job = site.query("SELECT params, state FROM job WHERE kind='train' ORDER BY id DESC")[0]
    assert '"max_minutes": 1' in job[0] and job[1] == "done"
    person.wait("#models-table")
    # the new version fine-tuned the project's built-in starting model, pulled back to it at
    # the default 50, and its row says so
    parent, settings = site.query("SELECT parent_id, settings FROM model_version "
                                  "ORDER BY id DESC")[0]
    row = person.text("#models-table tbody tr")
    assert parent and json.loads(settings)["pull"] == 50, (parent, settings)
    assert f"#{parent} · pull 50" in row, row
    person.shot("models")
    # the new model's queue is ranked again at once (scores belong to the active model;
    # stratified random needs none)
    deadline = time.time() + 240
    while [s for (s,) in site.query("SELECT state FROM job WHERE kind='score' AND "
                                    "project_id=? ORDER BY id", pid)] != ["done", "done"]:
        assert time.time() < deadline, site.query("SELECT kind, state, error FROM job")
        time.sleep(1)


def annotate_page(person):
    person.wait("#annotate-graph .nsewdrag", timeout=60)
    return int(person.path.split("/")[2])


def region_origin(person) -> tuple[int, int]:
    """Where the region the queue served starts (x, y): the project starts from the built-in
    model, so its queue serves regions and the workspace opens on one."""
    text = person.wait_text("#annotate-focus", " px at x ")
    x, rest = text.split(" px at x ")[1].split(", y ", 1)
    return int(x), int(rest.split()[0])


def cells(person) -> int:
    text = person.text("#annotate-counts")
    return int(text.split()[0]) if text and text.split()[0].isdigit() else 0


def auto_suggestion(person, timeout: float = 120) -> int | None:
    """The number of cells the workspace suggested on its own when it opened an untouched
    image of a project with a model (None when it did not: the image has a saved version)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if person.driver.find_elements("css selector", "#annotate-auto-suggested"):
            text = person.text("#annotate-auto-suggested")
            return int(text.split("These ")[1].split()[0])
        if person.text("#annotate-version").startswith("version "):
            return None
        time.sleep(0.3)
    raise AssertionError("the workspace neither suggested cells nor showed a saved version")


def test_annotator_annotates_two_images(site, person, story):
    pid = story["pid"]
    person.login("anna")
    person.go(f"/projects/{pid}", "#project-annotate-link")
    person.click("#project-annotate-link")
    first = annotate_page(person)
    ox, oy = region_origin(person)
    suggested = auto_suggestion(person)      # the project starts from the built-in model
    if suggested is not None:
        person.wait_text("#annotate-counts", f"{suggested} cells")
    before = cells(person)
    person.keys("2")                                      # class 2 for the next cell
    person.keys("r")
    person.wait_dragmode("drawrect")
    person.drag((ox + 30, oy + 30), (ox + 70, oy + 60))
    # the new cell is selected; over suggested cells it may cover one, so the count can stay
    person.wait_text("#annotate-counts", "selected (mitotic)")
    drawn = cells(person)
    assert drawn in (before, before + 1)
    # re-classify the selected cell and back (Shift+digit), then Undo and Redo pressed back
    # to back: the Redo key waits for its button instead of being dropped
    ActionChains(person.driver).key_down(Keys.SHIFT).send_keys("1").key_up(Keys.SHIFT).perform()
    person.wait_text("#annotate-counts", "selected (nucleus)")
    ActionChains(person.driver).key_down(Keys.SHIFT).send_keys("2").key_up(Keys.SHIFT).perform()
    person.wait_text("#annotate-counts", "selected (mitotic)")
    ActionChains(person.driver).key_down(Keys.CONTROL).send_keys("z").send_keys("y") \
        .key_up(Keys.CONTROL).perform()
    WebDriverWait(person.driver, 30).until(
        lambda d: "saving" not in person.text("#annotate-counts") and not d.execute_script(
            "return window.CellLoopEdits.busy();"))
    assert cells(person) == drawn, person.text("#annotate-counts")
    person.shot("annotate")
    person.click("#annotate-save")
    saved = person.wait_text("#annotate-message", "Saved version")
    person.wait_text("#annotate-status", "annotated")
    ann = site.query("SELECT cell_classes FROM annotation a JOIN image i ON i.id=a.image_id "
                     "WHERE i.id=? ORDER BY a.version DESC", first)[0][0]
    assert '1' in ann                                     # one cell of the second class
    # the page keeps its overlay after a save: a cell drawn next still lands, is drawn and
    # counted, and the next save is the next version
    version = int(saved.split("Saved version")[1].split()[0])
    person.keys("r")
    person.wait_dragmode("drawrect")
    person.drag((ox + 80, oy + 30), (ox + 110, oy + 55))
    WebDriverWait(person.driver, 30).until(
        lambda d: "saving" not in person.text("#annotate-counts") and not d.execute_script(
            "return window.CellLoopEdits.busy();"))
    shown = cells(person)
    person.click("#annotate-save")
    person.wait_text("#annotate-message", f"Saved version {version + 1} ({shown} cell")
    assert site.query("SELECT n_cells FROM annotation WHERE image_id=? ORDER BY version DESC",
                      first)[0][0] == shown

    person.click("#annotate-save-next")
    WebDriverWait(person.driver, 60).until(lambda d: f"/annotate/{first}" not in d.current_url)
    second = annotate_page(person)
    assert second != first          # the image's other regions wait for a rescoring
    region_origin(person)
    suggested = auto_suggestion(person)
    if suggested is None:                    # a saved version is shown: ask for the model's
        person.click("#annotate-suggest")
        if person.driver.find_elements("css selector", "#annotate-suggest-confirm"):
            if person.wait("#annotate-suggest-confirm").is_displayed():
                person.click("#annotate-suggest-confirm")
        loaded = person.wait_text("#annotate-message", "Model suggestion loaded", timeout=180)
        suggested = int(loaded.split("loaded:")[1].split()[0])
    assert suggested > 0
    person.wait_text("#annotate-counts", f"{suggested} cells")
    person.click("#annotate-undo")
    person.wait_text("#annotate-counts", "0 cells")
    person.click("#annotate-redo")
    person.wait_text("#annotate-counts", f"{suggested} cells")
    person.click("#annotate-save")
    person.wait_text("#annotate-message", "Saved version")
    story["images"] = (first, second)


def test_reviewer_accepts_one_and_sends_one_back(site, person, story):
    pid, (first, second) = story["pid"], story["images"]
    person.login("rita")
    person.go(f"/projects/{pid}/review", "#review-submitted")
    person.wait_text("#review-submitted", "Review")
    person.shot("review")
    person.click("#review-next")                        # "Review the oldest"
    assert annotate_page(person) == first
    person.click("#annotate-accept")
    person.wait_text("#annotate-message", "Accepted.")
    # Next goes on through the review list (it used to lease a fresh image from the queue)
    person.click("#annotate-next")
    WebDriverWait(person.driver, 30).until(
        lambda d: d.current_url.endswith(f"/annotate/{second}?from=review"))
    annotate_page(person)
    person.type("#annotate-comment", "Two nuclei at the top edge are merged; split them.")
    person.click("#annotate-send-back")
    person.wait_text("#annotate-message", "Sent back to the annotator.")
    states = dict(site.query("SELECT image_id, review_state FROM annotation WHERE image_id IN "
                             "(?, ?) ORDER BY version", first, second))
    assert states == {first: "accepted", second: "returned"}


def test_annotator_gets_the_returned_image_first_with_the_comment(site, person, story):
    pid, (_first, second) = story["pid"], story["images"]
    person.login("anna")
    person.go(f"/projects/{pid}", "#project-annotate-link")
    person.wait_text("#review-returned-to-me", "split them")
    person.click("#project-annotate-link")
    assert annotate_page(person) == second
    person.wait_text("#annotate-returned", "split them")


def test_owner_downloads_the_project_zip_and_the_model(site, person, story):
    pid = story["pid"]
    person.login("admin")
    person.go(f"/projects/{pid}/images", "#images-export-link")
    person.click("#images-export-link")
    archive = zipfile.ZipFile(person.wait_download(".zip"))
    masks = [n for n in archive.namelist() if n.endswith("_masks.tif")]
    assert masks, archive.namelist()
    labels = tifffile.imread(io.BytesIO(archive.read(masks[0])))
    assert labels.ndim == 2 and labels.max() > 0
    person.go(f"/projects/{pid}/learning", "h2")
    time.sleep(2)
    person.shot("learning")
    person.go(f"/projects/{pid}/models", "#models-table")
    link = person.wait("#models-table a[href$='export.onnx']")
    person.driver.execute_script("arguments[0].click()", link)
    import onnxruntime
    session = onnxruntime.InferenceSession(str(person.wait_download(".onnx")),
                                           providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 64 for d in session.get_inputs()[0].shape]
    out = session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
    assert out[0].shape[-2:] == tuple(shape[-2:])


def test_a_viewer_finds_nothing_editable(site, person, story):
    pid, (first, _second) = story["pid"], story["images"]
    person.login("victor")
    person.go(f"/annotate/{first}")
    annotate_page(person)
    person.wait_text("#annotate-read-only", "viewer")
    for control in ("save", "save-next", "delete", "suggest", "empty", "exclude", "revert",
                    "undo", "redo", "clear"):
        assert person.disabled(f"#annotate-{control}"), control
    for key in ("d", "r", "b", "e", "l"):
        person.keys(key)
    time.sleep(1)
    assert person.dragmode() == "pan"
    assert not person.driver.execute_script(
        "return (document.querySelector('#annotate-graph .js-plotly-plot').layout.shapes||[])"
        ".length")
    person.go(f"/images/{first}", "#viewer-name")
    time.sleep(2)
    person.shot("viewer", sizes=((1600, 1000),))
    assert person.disabled("#viewer-exclude")
    person.go(f"/projects/{pid}/images", "#images-gallery")
    assert person.gone("#images-upload input[type=file]")
    assert person.gone("a[href^='/annotate/']")
    person.go(f"/projects/{pid}", "#project-name")
    assert person.gone("#project-add-member")

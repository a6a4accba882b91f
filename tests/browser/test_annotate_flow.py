"""Real Chromium: an annotator opens the queue, draws a cell, saves, reloads and finds it in
the stored mask; clicking the cell selects it; class keys, the model suggestion (asked,
undoable), Previous, the header after saving, the ellipse drag, undo after saving; a viewer
finds nothing editable (issue 19, items 4, 5, 9, 10, 11)."""
import time

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select

from app.services import annotations, drafts, imports
from app.tables import Annotation, Image, Project
from storage.blobstore import LocalBlobStore, get_array
from tests.conftest import actor
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


DRAW = """
var gd = document.querySelector('#annotate-graph .js-plotly-plot');
Plotly.relayout(gd, {shapes: [{type: 'path', path: 'M20,20L60,20L60,50L20,50Z'}]});
"""


def wait_for_dragmode(browser, mode, timeout=30):
    """Wait until the server's answer to a tool change has reached the figure: a user cannot
    draw a closed path before the plot is in that drag mode, so neither does the test."""
    WebDriverWait(browser.driver, timeout).until(lambda d: d.execute_script(
        "return document.querySelector('#annotate-graph .js-plotly-plot').layout.dragmode")
        == mode)


def click_image_at(browser, x, y):
    """Click the figure at image coordinates (x, y)."""
    offset = browser.driver.execute_script("""
        document.querySelector('#annotate-graph').scrollIntoView({block: 'start'});
        var gd = document.querySelector('#annotate-graph .js-plotly-plot');
        var fl = gd._fullLayout;
        return [Math.round(fl.xaxis.d2p(arguments[0])), Math.round(fl.yaxis.d2p(arguments[1]))];
        """, x, y)   # selenium 4.2 measures the offset from the element's top-left corner
    area = browser.find_element("#annotate-graph .nsewdrag")
    ActionChains(browser.driver).move_to_element_with_offset(area, *offset).click().perform()


def test_draw_save_reload_and_select(browser, world, db, config, image_id):
    browser.driver.set_window_size(1400, 1100)
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}/annotate")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    assert browser.driver.current_url.endswith(f"/annotate/{image_id}?from=queue")
    browser.find_element("body").send_keys("d")          # keyboard shortcut: Draw tool
    browser.wait_for_element("#annotate-tool input[value=draw]:checked")
    wait_for_dragmode(browser, "drawclosedpath")
    browser.driver.execute_script(DRAW)
    # the first callback of a freshly started server can be slow
    try:
        browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=30)
    except Exception as err:     # say what the page said, so a failure can be diagnosed
        raise AssertionError("the drawn cell was not counted; page message: "
                             f"{browser.find_element('#annotate-message').text!r}") from err
    # the overlay image now points at the new draft revision
    assert "draft.png?rev=" in browser.find_elements("#annotate-graph image")[1].get_attribute("href")
    ActionChains(browser.driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL) \
        .perform()                                          # Ctrl+S saves
    browser.wait_for_contains_text("#annotate-message", "Saved version 1", timeout=10)
    browser.driver.refresh()
    browser.wait_for_contains_text("#annotate-version", "version 1 by annotator", timeout=15)
    with db.session_scope() as s:
        ann = s.scalar(select(Annotation).where(Annotation.image_id == image_id))
        mask = get_array(LocalBlobStore(config.blob_dir), ann.label_blob_key)
        assert ann.author_id == actor(s, "annotator").id and ann.n_cells == 1
    assert mask[35, 40] == 1 and mask[10, 10] == 0 and (mask > 0).sum() == 40 * 30
    # clicking the cell (Select tool) selects it and turns its outline into an editable shape
    browser.wait_for_element("#annotate-tool input[value=select]:checked")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)   # the plot is drawn
    click_image_at(browser, 40, 35)
    browser.wait_for_contains_text("#annotate-counts", "cell 1 selected", timeout=10)
    n_shapes = browser.driver.execute_script(
        "return document.querySelector('#annotate-graph .js-plotly-plot').layout.shapes.length")
    assert n_shapes == 1


def test_polygon_corners_clicked_quickly_all_count(browser, world, db, config, image_id):
    """Polygon corners clicked one after another without waiting are all kept (they are
    collected in the browser), and a click on the first corner closes them into a cell."""
    browser.driver.set_window_size(1400, 1100)
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/annotate/{image_id}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    browser.find_element("body").send_keys("l")          # keyboard shortcut: Polygon tool
    browser.wait_for_element("#annotate-tool input[value=polygon]:checked")
    for x, y in [(20, 20), (60, 20), (60, 50), (20, 50), (20, 20)]:   # no waiting between
        click_image_at(browser, x, y)
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=30)
    ActionChains(browser.driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL) \
        .perform()
    browser.wait_for_contains_text("#annotate-message", "Saved version 1", timeout=10)
    with db.session_scope() as s:
        ann = s.scalar(select(Annotation).where(Annotation.image_id == image_id))
        mask = get_array(LocalBlobStore(config.blob_dir), ann.label_blob_key)
    # a 40 x 30 rectangle, give or take the pixel the clicks land on
    assert ann.n_cells == 1 and mask[35, 40] == 1 and 1100 <= (mask > 0).sum() <= 1300


def test_suggest_runs_as_a_background_callback(browser, world, image_id):
    """The suggestion runs in the background-callback process as the signed-in user; with
    no trained model yet it says so (the message comes back from that process)."""
    browser.driver.set_window_size(1400, 1100)
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/annotate/{image_id}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    browser.driver.execute_script("document.getElementById('annotate-suggest').click()")
    browser.wait_for_contains_text("#annotate-message", "no trained model yet", timeout=30)
    assert browser.find_element("#annotate-suggest").get_attribute("disabled") is None


# ------------------------------------------------------------------ issue 19
def open_workspace(browser, username, image_id):
    browser.driver.set_window_size(1400, 1100)
    browser.login(username)
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/annotate/{image_id}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)


def press(browser, *keys, modifier=None):
    chain = ActionChains(browser.driver)
    if modifier:
        chain = chain.key_down(modifier)
    chain = chain.send_keys(*keys)
    if modifier:
        chain = chain.key_up(modifier)
    chain.perform()


def draw_cell(browser):
    browser.find_element("body").send_keys("d")
    wait_for_dragmode(browser, "drawclosedpath")
    browser.driver.execute_script(DRAW)


def cell_class(db, config, image_id, x=40, y=35):
    with db.session_scope() as s:
        return drafts.cell_at(s, actor(s, "annotator"), config, LocalBlobStore(config.blob_dir),
                              image_id, x, y)[2]


def test_class_keys_choose_the_next_class_and_shift_digit_reclassifies(browser, world, db,
                                                                        config, image_id):
    """Item 4: "press 2, draw, press 1" keeps the cell's class 2; Shift+1 changes it."""
    with db.session_scope() as s:
        s.get(Project, world["project_id"]).classes = [{"name": "nucleus", "color": "#ff0000"},
                                                       {"name": "mitosis", "color": "#00ff00"}]
    open_workspace(browser, "annotator", image_id)
    browser.find_element("body").send_keys("2")
    browser.wait_for_element("#annotate-class input[value='1']:checked")
    draw_cell(browser)
    browser.wait_for_contains_text("#annotate-counts", "cell 1 selected (mitosis)", timeout=30)
    browser.find_element("body").send_keys("1")      # the class of the next cell only
    browser.wait_for_element("#annotate-class input[value='0']:checked")
    time.sleep(2)                                       # what a re-classifying request needs
    assert cell_class(db, config, image_id) == 1
    assert "(mitosis)" in browser.find_element("#annotate-counts").text
    press(browser, "1", modifier=Keys.SHIFT)            # explicit: set the selected cell's class
    browser.wait_for_contains_text("#annotate-counts", "cell 1 selected (nucleus)", timeout=15)
    assert cell_class(db, config, image_id) == 0
    press(browser, "2", modifier=Keys.SHIFT)
    browser.wait_for_contains_text("#annotate-counts", "(mitosis)", timeout=15)
    browser.find_element("#annotate-class input[value='0']").find_element(
        "xpath", "..").click()                          # the picker too: next cell only
    browser.find_element("#annotate-set-class").click()  # the button is the explicit action
    browser.wait_for_contains_text("#annotate-counts", "(nucleus)", timeout=15)
    assert cell_class(db, config, image_id) == 0


@pytest.fixture
def fake_model(patch_jobs):
    """A suggestion without a trained model (patched in the background callbacks' processes
    too): two square cells."""
    from app.services import prediction

    def suggest(session, actor, store, config, image_id, model_version_id=None):
        labels = np.zeros((60, 80), np.int32)
        labels[5:15, 5:15], labels[40:50, 60:70] = 1, 2
        return prediction.Prediction(image_id, 1, 2, labels)
    patch_jobs(prediction, "suggest", suggest)


def test_suggestion_asks_before_replacing_cells_and_undo_brings_them_back(
        browser, world, db, config, image_id, fake_model):
    """Item 5: with a cell on screen the suggestion asks first; Keep changes nothing; after
    Replace, Undo brings the drawn cell back; Revert to last saved is an undoable edit."""
    open_workspace(browser, "annotator", image_id)
    draw_cell(browser)
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=30)
    browser.find_element("#annotate-suggest").click()
    browser.wait_for_contains_text("#annotate-suggest-text", "replaces the 1 cell on screen")
    browser.wait_for_element("#annotate-suggest-keep").click()
    browser.wait_for_no_elements("#annotate-suggest-keep", timeout=10)
    assert browser.find_element("#annotate-counts").text.split(" · ")[0] == "1 cell"
    browser.find_element("#annotate-suggest").click()
    browser.wait_for_element("#annotate-suggest-confirm").click()
    browser.wait_for_contains_text("#annotate-message", "Model suggestion loaded: 2 cells",
                                   timeout=60)
    browser.wait_for_contains_text("#annotate-counts", "2 cells", timeout=10)
    assert browser.find_element("#annotate-undo").get_attribute("disabled") is None
    press(browser, "z", modifier=Keys.CONTROL)
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=15)
    assert cell_class(db, config, image_id) == 0              # the drawn cell is back
    press(browser, "s", modifier=Keys.CONTROL)
    browser.wait_for_contains_text("#annotate-message", "Saved version 1", timeout=15)
    press(browser, "y", modifier=Keys.CONTROL)                # redo the suggestion
    browser.wait_for_contains_text("#annotate-counts", "2 cells", timeout=15)
    browser.find_element("#annotate-revert").click()
    browser.wait_for_contains_text("#annotate-message", "Back to saved version 1", timeout=15)
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=10)
    press(browser, "z", modifier=Keys.CONTROL)
    browser.wait_for_contains_text("#annotate-counts", "2 cells", timeout=15)


def test_suggestion_clicked_while_a_drawn_cell_is_on_its_way_still_asks(
        browser, world, db, config, image_id, fake_model, monkeypatch):
    """The cell count is painted before the server answers; a click on "Use model suggestion"
    then waits for the answer and Dash's state, so it asks before replacing the cell (it once
    read the state from before the cell, and replaced it without asking)."""
    record_edit = drafts.record_edit

    def slow_record_edit(*args, **kwargs):
        time.sleep(0.8)
        return record_edit(*args, **kwargs)
    monkeypatch.setattr(drafts, "record_edit", slow_record_edit)
    open_workspace(browser, "annotator", image_id)
    draw_cell(browser)
    browser.find_element("#annotate-suggest").click()   # at once: the edit is on its way
    browser.wait_for_contains_text("#annotate-suggest-text", "replaces the 1 cell on screen",
                                   timeout=15)
    browser.wait_for_element("#annotate-suggest-keep").click()
    browser.wait_for_no_elements("#annotate-suggest-keep", timeout=10)
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=10)
    time.sleep(1)                                       # no suggestion arrives behind it
    assert browser.find_element("#annotate-counts").text.split(" · ")[0] == "1 cell"


def import_more(db, config, world, names):
    store = LocalBlobStore(config.blob_dir)
    with db.session_scope() as s:
        for seed, name in enumerate(names, start=1):
            pixels, _ = nuclei((60, 80), seed=seed)
            imports.import_files(s, actor(s, "owner"), store, world["project_id"],
                                [imports.ImportFile(name, read=lambda p=pixels: tiff(p))],
                                1 << 28)
    with db.session_scope() as s:
        return [s.scalar(select(Image.id).where(Image.name == n)) for n in names]


def test_previous_walks_back_and_the_header_follows_a_save(browser, world, db, config,
                                                          image_id):
    """Item 9: Previous walks back a, b, c -> b -> a (it bounced between b and c); after Save
    the header says "annotated" and names the version without a reload. Item 10: Undo
    still works after the save."""
    b, c = import_more(db, config, world, ["b.tif", "c.tif"])
    open_workspace(browser, "annotator", image_id)
    def prev_is(disabled):          # read in one script: the page re-renders under selenium
        WebDriverWait(browser.driver, 15).until(lambda d: d.execute_script(
            "var b = document.querySelector('#annotate-prev'); return b && b.disabled;")
            is disabled)

    def on_screen(expected):        # the page of `expected` has recorded its visit
        WebDriverWait(browser.driver, 15).until(lambda d: d.execute_script(
            "var h = JSON.parse(sessionStorage.getItem('annotate-visited') || 'null');"
            "return !!h && h.stack[h.pos] === arguments[0] && !h.back;", expected))
        browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)

    on_screen(image_id)
    prev_is(True)
    for target in (b, c):
        browser.driver.get(f"{browser.server_url}/annotate/{target}")
        on_screen(target)
        prev_is(False)
    for expected in (b, image_id):
        browser.driver.execute_script("document.querySelector('#annotate-prev').click()")
        on_screen(expected)
        assert browser.driver.current_url.endswith(f"/annotate/{expected}")
    prev_is(True)
    assert browser.find_element("#annotate-status").text == "new"
    assert "not annotated yet" in browser.find_element("#annotate-version").text
    draw_cell(browser)
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=30)
    press(browser, "s", modifier=Keys.CONTROL)
    browser.wait_for_contains_text("#annotate-message", "Saved version 1", timeout=15)
    browser.wait_for_text_to_equal("#annotate-status", "annotated", timeout=5)
    assert browser.find_element("#annotate-version").text.startswith("version 1 by annotator")
    assert browser.find_element("#annotate-undo").get_attribute("disabled") is None
    press(browser, "z", modifier=Keys.CONTROL)                # undo behind the save
    browser.wait_for_contains_text("#annotate-counts", "0 cells", timeout=15)


def drag_image(browser, start, end, while_held=None):
    """Press at image point `start`, move in steps to `end`, call `while_held()`, release
    (a real drag)."""
    to_px = """
        var fl = document.querySelector('#annotate-graph .js-plotly-plot')._fullLayout;
        return [Math.round(fl.xaxis.d2p(arguments[0])), Math.round(fl.yaxis.d2p(arguments[1]))];
    """
    (x0, y0), (x1, y1) = (browser.driver.execute_script(to_px, *p) for p in (start, end))
    area = browser.find_element("#annotate-graph .nsewdrag")
    chain = ActionChains(browser.driver).move_to_element_with_offset(area, x0, y0)
    chain = chain.click_and_hold()
    for i in range(1, 6):
        chain = chain.move_to_element_with_offset(area, x0 + (x1 - x0) * i // 5,
                                                  y0 + (y1 - y0) * i // 5)
    chain.perform()
    if while_held:
        while_held()
    ActionChains(browser.driver).release().perform()


def test_ellipse_is_dragged_corner_to_corner_like_the_rectangle(browser, world, db, config,
                                                                image_id):
    """Item 10: the ellipse fills the box dragged from one corner to the other (plotly's
    circle tool drew it around the press point)."""
    open_workspace(browser, "annotator", image_id)
    browser.driver.execute_script(
        "document.querySelector('#annotate-graph').scrollIntoView({block: 'start'});")
    browser.find_element("body").send_keys("o")
    wait_for_dragmode(browser, "drawrect")
    preview = []

    def look():                  # while dragging, the ellipse inside the box is drawn
        time.sleep(0.3)
        preview.append(browser.driver.execute_script(
            "var e = document.querySelector('ellipse.annotate-ellipse-preview');"
            "return e && [+e.getAttribute('rx'), +e.getAttribute('ry')];"))
    drag_image(browser, (20, 15), (60, 45), look)
    assert preview[0] and preview[0][0] > 10 and preview[0][1] > 5, preview
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=30)
    with db.session_scope() as s:
        canvas = drafts.current_canvas(s, actor(s, "annotator"), config,
                                       LocalBlobStore(config.blob_dir), s.get(Image, image_id))
    rows, cols = np.nonzero(canvas.labels)
    assert abs(rows.min() - 15) <= 2 and abs(rows.max() - 44) <= 2
    assert abs(cols.min() - 20) <= 2 and abs(cols.max() - 59) <= 2
    assert canvas.labels[15, 20] == 0                          # a corner: outside the ellipse


def test_viewer_finds_nothing_editable(browser, world, db, config, image_id):
    """Item 11: a viewer's edit controls are disabled, tool and class keys do nothing (the
    figure never enters a drawing mode), Exclude is disabled here and in the viewer page.
    Item 9: the saved annotation's cell count shows (a viewer has no draft)."""
    store = LocalBlobStore(config.blob_dir)
    with db.session_scope() as s:
        drafts.record_edit(s, actor(s, "annotator"), config, store, image_id,
                           {"op": "add", "shape": {"type": "rect", "x0": 20, "y0": 20,
                                                   "x1": 60, "y1": 50}})
        annotations.save(s, actor(s, "annotator"), config, store, image_id)
    open_workspace(browser, "viewer", image_id)
    assert "viewer" in browser.find_element("#annotate-read-only").text
    browser.wait_for_contains_text("#annotate-counts", "1 cell", timeout=10)
    for control in ("#annotate-save", "#annotate-save-next", "#annotate-delete",
                    "#annotate-suggest", "#annotate-empty", "#annotate-exclude",
                    "#annotate-revert", "#annotate-set-class", "#annotate-undo",
                    "#annotate-clear", "#annotate-note"):
        assert browser.find_element(control).get_attribute("disabled") is not None, control
    assert browser.find_element("#annotate-tool input[value=draw]").get_attribute("disabled")
    assert browser.find_element("#annotate-class input[value='0']").get_attribute("disabled")
    for key in "dlrobegp2":
        browser.find_element("body").send_keys(key)
    time.sleep(1)
    browser.wait_for_element("#annotate-tool input[value=select]:checked")
    assert browser.driver.execute_script(
        "return document.querySelector('#annotate-graph .js-plotly-plot').layout.dragmode") \
        == "pan"
    assert browser.driver.execute_script(
        "return (document.querySelector('#annotate-graph .js-plotly-plot').layout.shapes"
        " || []).length") == 0
    browser.driver.get(f"{browser.server_url}/images/{image_id}")
    browser.wait_for_element("#viewer-exclude", timeout=15)
    assert browser.find_element("#viewer-exclude").get_attribute("disabled") is not None
    assert browser.find_element("#viewer-note").get_attribute("disabled") is not None

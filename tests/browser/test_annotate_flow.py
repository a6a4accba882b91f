"""Real Chromium: an annotator opens the queue, draws a cell, saves, reloads and finds it in
the stored mask; clicking the cell selects it; a viewer sees every edit control disabled."""
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select

from app.tables import Annotation
from storage.blobstore import LocalBlobStore, get_array
from tests.conftest import actor

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
    assert browser.driver.current_url.endswith(f"/annotate/{image_id}")
    browser.find_element("body").send_keys("d")          # keyboard shortcut: Draw tool
    browser.wait_for_element("#annotate-tool input[value=draw]:checked")
    wait_for_dragmode(browser, "drawclosedpath")
    browser.driver.execute_script(DRAW)
    # the first callback of a freshly started server can be slow
    try:
        browser.wait_for_contains_text("#annotate-counts", "1 cells", timeout=30)
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
    browser.wait_for_contains_text("#annotate-counts", "1 cells", timeout=30)
    ActionChains(browser.driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL) \
        .perform()
    browser.wait_for_contains_text("#annotate-message", "Saved version 1", timeout=10)
    with db.session_scope() as s:
        ann = s.scalar(select(Annotation).where(Annotation.image_id == image_id))
        mask = get_array(LocalBlobStore(config.blob_dir), ann.label_blob_key)
    # a 40 x 30 rectangle, give or take the pixel the clicks land on
    assert ann.n_cells == 1 and mask[35, 40] == 1 and 1100 <= (mask > 0).sum() <= 1300


def test_viewer_sees_disabled_edit_controls(browser, world, image_id):
    browser.login("viewer")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/annotate/{image_id}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    assert "viewer" in browser.find_element(".alert").text
    for control in ("#annotate-save", "#annotate-save-next", "#annotate-delete",
                    "#annotate-suggest", "#annotate-empty"):
        assert browser.find_element(control).get_attribute("disabled") is not None
    assert browser.find_element("#annotate-tool input[value=draw]").get_attribute("disabled")


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

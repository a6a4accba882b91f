"""Real Chromium, issue 21 item 1: a suggestion with per-cell uncertainty shows its cells in
the legend's colours, U selects and frames the most uncertain cell, K keeps it, and "Accept
confident cells" accepts the blue ones in one step (they turn to the class colour)."""
import pytest
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.test_annotate_flow import open_workspace
from tests.test_cell_review import suggestion_labels, uncertainty

pytestmark = pytest.mark.browser

PIXEL = """
var done = arguments[arguments.length - 1];
var href = document.querySelectorAll('#annotate-graph image')[1].getAttribute('href');
fetch(href, {credentials: 'same-origin'}).then(r => r.blob()).then(createImageBitmap)
  .then(function (bitmap) {
    var c = new OffscreenCanvas(bitmap.width, bitmap.height), g = c.getContext('2d');
    g.drawImage(bitmap, 0, 0);
    done([[60, 45], [5, 10]].map(
      p => Array.from(g.getImageData(p[0], p[1], 1, 1).data.slice(0, 3))));
  }).catch(e => done(String(e)));
"""


@pytest.fixture
def scored_suggestion(patch_jobs):
    """A suggestion with scores, without a trained model (patched in the background
    callbacks' processes too): cell 1 confident, 2 and 3 uncertain."""
    from app.services import prediction

    def suggest(session, actor, store, config, image_id, model_version_id=None,
                score_cells=True):
        return prediction.Prediction(image_id, 1, 3, suggestion_labels(), uncertainty())
    patch_jobs(prediction, "suggest", suggest)


def outline_colours(browser):
    """RGB of the overlay on cell 3's outline (60, 45) and cell 1's (5, 10)."""
    return browser.driver.execute_async_script(PIXEL)


def x_range(browser):
    return browser.driver.execute_script(
        "return document.querySelector('#annotate-graph .js-plotly-plot')._fullLayout"
        ".xaxis.range")


def test_uncertain_cells_coloured_walked_and_confident_ones_accepted(browser, world, image_id,
                                                                     scored_suggestion):
    open_workspace(browser, "annotator", image_id)
    browser.driver.execute_script("document.getElementById('annotate-suggest').click()")
    browser.wait_for_contains_text("#annotate-message", "Model suggestion loaded: 3 cells",
                                   timeout=60)
    browser.wait_for_contains_text("#annotate-review-uncertain", "uncertain: 2 to check",
                                   timeout=15)
    assert "confident: 1" in browser.find_element("#annotate-review-confident").text
    WebDriverWait(browser.driver, 15).until(
        lambda d: outline_colours(browser) == [[0xD5, 0x5E, 0x00], [0x56, 0xB4, 0xE9]])
    # U: the most uncertain cell is selected (its outline editable) and framed
    assert x_range(browser)[1] - x_range(browser)[0] >= 79
    browser.find_element("body").send_keys("u")
    browser.wait_for_contains_text("#annotate-counts", "cell 3 selected", timeout=15)
    assert "Uncertain cell 3" in browser.find_element("#annotate-message").text
    WebDriverWait(browser.driver, 10).until(
        lambda d: x_range(browser)[1] - x_range(browser)[0] < 79)          # zoomed onto it
    assert browser.driver.execute_script(                                   # and editable
        "return document.querySelector('#annotate-graph .js-plotly-plot').layout.shapes"
        ".length") == 1
    # K keeps it as drawn; U goes on to the other uncertain cell
    browser.find_element("body").send_keys("k")
    browser.wait_for_contains_text("#annotate-review-uncertain", "uncertain: 1 to check",
                                   timeout=15)
    browser.find_element("body").send_keys("u")
    browser.wait_for_contains_text("#annotate-counts", "cell 2 selected", timeout=15)
    # Accept confident cells: the blue cell is accepted, drawn in its class colour
    browser.find_element("#annotate-keep-confident").click()
    browser.wait_for_contains_text("#annotate-accepted", "Accepted 1 confident cell", timeout=15)
    browser.wait_for_contains_text("#annotate-review-confident", "confident: 0", timeout=15)
    assert browser.find_element("#annotate-keep-confident").get_attribute("disabled")
    WebDriverWait(browser.driver, 15).until(
        lambda d: outline_colours(browser)[1] not in ([0x56, 0xB4, 0xE9], [255, 255, 255]))
    assert browser.find_element("#annotate-counts").text.startswith("3 cells")


def test_a_suggestion_shown_without_scores_is_scored_afterwards(browser, world, db, image_id,
                                                                patch_jobs):
    """The suggestion on opening does not wait for scores; the page then asks for them once
    (a background callback) and the legend and colours follow."""
    from app.services import prediction
    from app.tables import ModelVersion
    with db.session_scope() as s:
        mv = ModelVersion(project_id=world["project_id"], weights_blob_key="f" * 64)
        s.add(mv)
        s.flush()
        mv_id = mv.id
    patch_jobs(prediction, "suggest", lambda *a, **k: prediction.Prediction(
        image_id, mv_id, 3, suggestion_labels(), None))
    patch_jobs(prediction, "score_labels",
               lambda config, store, image, mv, labels: uncertainty())
    open_workspace(browser, "annotator", image_id)
    browser.driver.execute_script("document.getElementById('annotate-suggest').click()")
    browser.wait_for_contains_text("#annotate-message", "Model suggestion loaded: 3 cells",
                                   timeout=60)
    browser.wait_for_contains_text("#annotate-review-uncertain", "uncertain: 2 to check",
                                   timeout=60)
    WebDriverWait(browser.driver, 15).until(
        lambda d: outline_colours(browser) == [[0xD5, 0x5E, 0x00], [0x56, 0xB4, 0xE9]])

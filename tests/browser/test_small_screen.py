"""Real Chromium (issue 19 item 13): at 1280x720 (and 1600x1000) the annotation workspace fits
the window: Save, Save & next, Next and the brush width are on screen without scrolling and
not covered, the image is not cut off, plotly's "double-click to zoom back out" note never
appears, and progress bars are tall enough for their labels."""
import json

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.wait import WebDriverWait

from app.services import imports
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser

ON_SCREEN = """
var el = document.getElementById(arguments[0]);
if (!el) { return 'missing'; }
var r = el.getBoundingClientRect();
if (r.width === 0 || r.height === 0) { return 'not shown'; }
if (r.top < 0 || r.left < 0 || r.bottom > window.innerHeight || r.right > window.innerWidth) {
    return 'outside the window: ' + JSON.stringify(r);
}
var hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
return (hit && (el === hit || el.contains(hit) || hit.contains(el))) ? 'ok'
    : 'covered by ' + (hit ? hit.outerHTML.slice(0, 120) : 'nothing');
"""


@pytest.fixture
def big_image(db, config, world):
    img, lab = nuclei(shape=(512, 640), n=40)
    with db.session_scope() as s:
        results = imports.import_files(
            s, actor(s, "owner"), LocalBlobStore(config.blob_dir), world["project_id"],
            [imports.ImportFile("big.tif", read=lambda: tiff(img), read_labels=lambda: tiff(lab))],
            1 << 28)
    return results[0].image_id


@pytest.mark.parametrize("size", [(1280, 720), (1600, 1000)])
def test_workspace_fits_the_window(browser, big_image, size):
    browser.driver.set_window_size(*size)
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    # project cards' progress bars are tall enough to read their labels
    bar = browser.driver.execute_script(
        "return document.querySelector('.project-card .progress').getBoundingClientRect().height")
    assert bar >= 18, f"progress bar only {bar}px high"
    browser.driver.get(f"{browser.server_url}/annotate/{big_image}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    browser.wait_for_contains_text("#annotate-counts", "40 cells", timeout=15)
    driver = browser.driver
    scroll = driver.execute_script("var s = document.scrollingElement;"
                                   "return [s.scrollHeight, window.innerHeight];")
    assert scroll[0] <= scroll[1] + 1, f"the page scrolls: {scroll}"
    for element in ("annotate-save", "annotate-save-next", "annotate-next", "annotate-skip",
                    "annotate-brush", "annotate-brush-up", "annotate-counts", "annotate-tool"):
        assert driver.execute_script(ON_SCREEN, element) == "ok", element
    # the whole image is in the plot and the window, at a useful size
    image, plot, height = driver.execute_script("""
        var gd = document.querySelector('#annotate-graph .js-plotly-plot');
        var img = gd.querySelector('.imagelayer image').getBoundingClientRect();
        var area = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [[img.left, img.top, img.right, img.bottom],
                [area.left, area.top, area.right, area.bottom], window.innerHeight];""")
    assert image[0] >= plot[0] - 1 and image[1] >= plot[1] - 1
    assert image[2] <= plot[2] + 1 and image[3] <= plot[3] + 1 and image[3] <= height
    assert image[3] - image[1] >= 0.6 * (height - 150), f"image only {image} in {plot}"
    # a zoom box drag (plotly then used to show "Double-click to zoom back out" over the
    # header's Next button), then a double-click back out
    browser.find_element("body").send_keys("z")
    WebDriverWait(driver, 15).until(lambda d: d.execute_script(
        "return document.querySelector('#annotate-graph .js-plotly-plot').layout.dragmode")
        == "zoom")
    area = browser.find_element("#annotate-graph .nsewdrag")
    ActionChains(driver).move_to_element_with_offset(area, 250, 150).click_and_hold() \
        .move_by_offset(40, 40).move_by_offset(40, 40).release().perform()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return document.querySelector('#annotate-graph .js-plotly-plot')"
        "._fullLayout.xaxis.range[1]") < 600)
    notes = driver.execute_script(
        "return document.querySelectorAll('.plotly-notifier .notifier-note').length")
    assert notes == 0
    assert driver.execute_script(ON_SCREEN, "annotate-next") == "ok"
    ActionChains(driver).move_to_element(area).double_click().perform()
    assert driver.execute_script(ON_SCREEN, "annotate-next") == "ok"


def test_channel_boxes_fit_the_side_panel(browser, big_image):
    """The contrast boxes show the whole number (no "1911.005" cut off)."""
    browser.driver.set_window_size(1280, 720)
    browser.login("viewer")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/images/{big_image}")
    browser.wait_for_element("#viewer-graph .nsewdrag", timeout=15)
    for kind in ("low", "high"):
        box_id = json.dumps({"channel": 0, "type": f"viewer-channel-{kind}"},
                            separators=(",", ":"))
        fits = browser.driver.execute_script(
            "var el = document.getElementById(arguments[0]);"
            "return [el.scrollWidth <= el.clientWidth, el.value];", box_id)
        assert fits[0] and fits[1].isdigit(), fits

"""Real Chromium (issue 19 item 12): the 16-bit contrast slider spans the image's data, a typed
limit applies on Enter (and widens the slider when beyond it), a histogram per channel, the
raw value under the cursor, square pixels when zoomed in, settings remembered for the
project's next image (also in the workspace), and the uncertainty map's colour scale."""
import json
from urllib.parse import unquote

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from app.services import imports
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


def box(kind: str, page: str = "viewer") -> str:
    """The DOM id Dash gives a channel control's pattern id (channel 0)."""
    return json.dumps({"channel": 0, "type": f"{page}-channel-{kind}"}, separators=(",", ":"))


def dim(seed: int) -> np.ndarray:
    pixels, _ = nuclei((120, 160), n=10, seed=seed)
    return (pixels // 2 + 100).astype(np.uint16)         # values about 100 .. 1,800


@pytest.fixture
def two_images(db, config, world):
    with db.session_scope() as s:
        results = imports.import_files(
            s, actor(s, "owner"), LocalBlobStore(config.blob_dir), world["project_id"],
            [imports.ImportFile(f"dim{k}.tif", read=lambda k=k: tiff(dim(k))) for k in (0, 1)],
            1 << 28)
    return [r.image_id for r in results]


def by_id(driver, element_id):
    """An element by a DOM id that a CSS selector cannot name (pattern ids are JSON)."""
    return driver.execute_script("return document.getElementById(arguments[0])", element_id)


def thumbs(driver, slider_id):
    """[(value, max, fraction of the track)] of a range slider's two handles."""
    return driver.execute_script("""
        var root = document.getElementById(arguments[0]);
        var track = root.querySelector('.dash-slider-track').getBoundingClientRect();
        return Array.from(root.querySelectorAll('[role=slider]')).map(function (t) {
            var r = t.getBoundingClientRect();
            return [Number(t.getAttribute('aria-valuenow')), Number(t.getAttribute('aria-valuemax')),
                    (r.left + r.width / 2 - track.left) / track.width];
        });""", slider_id)


def render_src(driver, graph="viewer-graph"):
    """The rendering's address, decoded (its `views` carry the limits)."""
    return unquote(driver.execute_script(
        f"return document.querySelector('#{graph} .js-plotly-plot').layout.images[0].source"))


def test_contrast_histogram_readout_and_remembered_settings(browser, two_images):
    first, second = two_images
    driver = browser.driver
    driver.set_window_size(1400, 1000)
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    driver.get(f"{browser.server_url}/images/{first}")
    browser.wait_for_element("#viewer-graph .nsewdrag", timeout=15)
    # the slider spans the data: the handles are not squeezed into the left 3%
    (low, top, at_low), (high, _top, at_high) = thumbs(driver, box("range"))
    assert top < 4000 and low == int(low) and high == int(high)
    assert at_high - at_low > 0.3, (at_low, at_high)
    assert by_id(driver, box("low")).get_attribute("value") == str(int(low))
    # a histogram per channel, with bars
    assert driver.execute_script(
        "return document.getElementById(arguments[0]).querySelectorAll('.bars path').length",
        box("hist")) > 5
    # typing a limit and pressing Enter applies it to the picture and the slider
    high_box = by_id(driver, box("high"))
    high_box.send_keys(Keys.CONTROL, "a")
    high_box.send_keys("1500", Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: '"high":1500' in render_src(d))
    WebDriverWait(driver, 10).until(lambda d: thumbs(d, box("range"))[1][0] == 1500)
    browser.wait_for_contains_text("#viewer-display-saved", "remembered", timeout=10)
    # a limit beyond the slider widens it
    high_box.send_keys(Keys.CONTROL, "a")
    high_box.send_keys("9000", Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: thumbs(d, box("range"))[1][:2] == [9000, 9000])
    high_box.send_keys(Keys.CONTROL, "a")
    high_box.send_keys("1500", Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: thumbs(d, box("range"))[1][0] == 1500)
    # the raw value under the cursor, in full-resolution pixels
    driver.execute_script("""var gd = document.querySelector('#viewer-graph .js-plotly-plot');
        Plotly.relayout(gd, {'xaxis.range': [40, 60], 'yaxis.range': [60, 40]});""")
    gd = driver.execute_script("return document.querySelector('#viewer-graph .js-plotly-plot')")
    WebDriverWait(driver, 10).until(lambda d: "pixelated" in gd.get_attribute("class"))
    assert driver.execute_script(
        "return getComputedStyle(arguments[0].querySelector('.imagelayer image'))"
        ".imageRendering", gd) == "pixelated"
    x, y = driver.execute_script("""var fl = arguments[0]._fullLayout;
        return [Math.round(fl.xaxis.d2p(50.5)), Math.round(fl.yaxis.d2p(45.5))];""", gd)
    area = browser.find_element("#viewer-graph .nsewdrag")
    ActionChains(driver).move_to_element_with_offset(area, x, y).perform()
    expected = f"x 50 y 45 · nuclei {int(dim(0)[45, 50])}"
    browser.wait_for_text_to_equal("#viewer-pixel", expected, timeout=10)
    # zoomed out until an image pixel is smaller than a screen pixel: smooth again
    driver.execute_script("""var gd = document.querySelector('#viewer-graph .js-plotly-plot');
        Plotly.relayout(gd, {'xaxis.range': [-2000, 2000], 'yaxis.range': [2000, -2000]});""")
    WebDriverWait(driver, 10).until(lambda d: "pixelated" not in gd.get_attribute("class"))
    # the next image of the project opens with the same limits, in the viewer and workspace
    driver.get(f"{browser.server_url}/images/{second}")
    browser.wait_for_element("#viewer-graph .nsewdrag", timeout=15)
    assert by_id(driver, box("high")).get_attribute("value") == "1500"
    assert '"high":1500' in render_src(driver)
    driver.get(f"{browser.server_url}/annotate/{second}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    assert '"high":1500' in render_src(driver, "annotate-graph")
    assert driver.execute_script("return document.getElementById(arguments[0]).value",
                                 box("high", "annotate")) == "1500"


def test_uncertainty_colour_scale(browser, two_images, monkeypatch, db, world):
    """The heat map switch shows the scale's colours and range (a scored map and an active
    model are stood in for: no training in a browser test)."""
    from types import SimpleNamespace

    from app.permissions import SYSTEM
    from app.services import learning_loop, model_versions, scoring
    with db.session_scope() as s:       # (new projects: stratified, fewer cells first)
        learning_loop.set_settings(s, SYSTEM, world["project_id"], {"strategy": "entropy"})
    values = np.linspace(0, 0.5, 120 * 160, dtype=np.float32).reshape(120, 160)
    monkeypatch.setattr(scoring, "heatmap", lambda s, a, c, image_id: values)
    monkeypatch.setattr(model_versions, "active_version", lambda s, pid: SimpleNamespace(id=3))
    browser.driver.set_window_size(1400, 1000)
    browser.login("viewer")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/images/{two_images[0]}")
    browser.wait_for_element("#viewer-graph .nsewdrag", timeout=15)
    browser.find_element("#viewer-uncertainty").click()
    browser.wait_for_contains_text("#viewer-heat-legend", "predictive entropy, model #3",
                                   timeout=10)
    assert "0.495" in browser.find_element("#viewer-heat-legend").text
    gradient = browser.driver.execute_script(
        "return getComputedStyle(document.querySelector('#viewer-heat-legend .heat-scale-bar'))"
        ".backgroundImage")
    assert gradient.startswith("linear-gradient") and "rgba(255, 240, 60" in gradient


def test_auto_contrast_is_remembered_as_automatic(browser, two_images, db, world):
    """After Auto contrast, the project's images each open with their own automatic limits."""
    from sqlalchemy import select

    from app.tables import DisplaySetting
    driver = browser.driver
    driver.set_window_size(1400, 1000)
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    driver.get(f"{browser.server_url}/annotate/{two_images[0]}")
    browser.wait_for_element("#annotate-graph .nsewdrag", timeout=15)
    browser.find_element("#annotate-display summary").click()
    high_box = by_id(driver, box("high", "annotate"))
    auto_high = high_box.get_attribute("value")
    high_box.send_keys(Keys.CONTROL, "a")
    high_box.send_keys("1234", Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: '"high":1234' in render_src(d, "annotate-graph"))
    browser.wait_for_contains_text("#annotate-display-saved", "remembered", timeout=10)
    with db.session_scope() as s:
        assert s.scalar(select(DisplaySetting.channels))[0]["high"] == 1234
    browser.find_element("#annotate-auto").click()
    WebDriverWait(driver, 10).until(lambda d: high_box.get_attribute("value") == auto_high)
    WebDriverWait(driver, 10).until(
        lambda d: f'"high":{auto_high}' in render_src(d, "annotate-graph"))

    def saved_high():
        with db.session_scope() as s:
            return s.scalar(select(DisplaySetting.channels))[0]["high"]
    WebDriverWait(driver, 10).until(lambda d: saved_high() is None)

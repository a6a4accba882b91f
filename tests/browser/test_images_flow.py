"""Real Chromium: an annotator uploads a TIFF, sees it in the gallery, opens the viewer."""
import pytest

from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


def test_upload_tiff_then_gallery_and_viewer(browser, world, tmp_path):
    img, _ = nuclei(shape=(96, 128))
    path = tmp_path / "plate_A1.tif"
    path.write_bytes(tiff(img))
    browser.login("annotator")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}/images")
    browser.wait_for_element("#images-empty")
    browser.find_element("#images-upload input[type=file]").send_keys(str(path))
    browser.wait_for_contains_text("#images-upload-summary", "1 imported", timeout=20)
    browser.wait_for_contains_text("#images-grid", "plate_A1.tif", timeout=10)
    assert "128x96" in browser.find_element("#images-grid").text
    browser.driver.find_element(browser.By.LINK_TEXT, "plate_A1.tif").click()
    browser.wait_for_text_to_equal("#viewer-name", "plate_A1.tif", timeout=10)
    # the figure's background image is the rendering route, fetched by the browser
    browser.wait_for_element("#viewer-graph image")
    href = browser.find_element("#viewer-graph image").get_attribute("href")
    assert "/render.jpg" in href
    assert browser.driver.execute_script(
        "return fetch(arguments[0]).then(r => r.status)", href) == 200
    browser.find_element("#viewer-exclude").click()
    browser.wait_for_text_to_equal("#viewer-status", "excluded")


def test_viewer_sees_no_upload_zone(browser, world):
    browser.login("viewer")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}/images")
    browser.wait_for_element("#images-empty")
    assert browser.driver.find_elements(browser.By.ID, "images-upload") == []

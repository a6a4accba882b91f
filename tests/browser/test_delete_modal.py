"""Real Chromium (issue 19, item 15): deleting images asks first, says how many, and Cancel
keeps them."""
import pytest

from app.services import gallery, imports
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


def click(browser, selector):
    element = browser.wait_for_element(selector)
    browser.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


@pytest.fixture
def two_images(db, world, config):
    with db.session_scope() as s:
        items = []
        for seed in range(2):
            pixels, _ = nuclei((60, 80), seed=seed)
            items.append(imports.ImportFile(f"del{seed}.tif", read=lambda p=pixels: tiff(p)))
        imports.import_files(s, actor(s, "owner"), LocalBlobStore(config.blob_dir),
                            world["project_id"], items, 1 << 28)


def live_images(db, world):
    with db.session_scope() as s:
        page = gallery.list_images(s, actor(s, "owner"), world["project_id"], 1, 50)
        return sorted(i.name for i in page.items)


def test_delete_asks_with_the_count_and_cancel_keeps_the_images(browser, world, db,
                                                                two_images):
    browser.login("owner")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}/images")
    browser.wait_for_contains_text("#images-gallery", "del1.tif")
    click(browser, "#images-delete")                        # nothing selected: no modal
    browser.wait_for_contains_text("#images-delete-message", "Select images first")
    for box in browser.driver.find_elements(browser.By.CSS_SELECTOR,
                                            "input[id*='images-select']"):
        browser.driver.execute_script("arguments[0].click();", box)
    click(browser, "#images-delete")
    browser.wait_for_text_to_equal("#images-delete-text",
                                   "Delete 2 selected images? Their annotation history stays "
                                   "in exports until purged.")
    click(browser, "#images-delete-cancel")
    browser.wait_for_no_elements("#images-delete-text")
    assert live_images(db, world) == ["del0.tif", "del1.tif"]
    click(browser, "#images-delete")
    browser.wait_for_contains_text("#images-delete-text", "Delete 2 selected images?")
    click(browser, "#images-delete-confirm")
    browser.wait_for_contains_text("#images-delete-message", "Deleted 2 image(s)")
    assert live_images(db, world) == []

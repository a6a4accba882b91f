"""Real Chromium (issue 19, items 1 and 15): the Review page opens at /projects/<id>/review,
a reviewer sends an image back from the queue with a comment, the annotator finds it in
"Returned to me" (project and review pages) and Annotate serves it first with the comment;
the viewer links into the workspace; removing a member asks first and Cancel keeps them."""
import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from app.services import annotations, drafts, imports, leases, projects
from storage.blobstore import LocalBlobStore
from tests.conftest import actor
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


def click(browser, selector):
    """Scroll the element to the middle of the window first, at once (Bootstrap scrolls
    smoothly, and a click during the animation lands on whatever passes under it)."""
    element = browser.wait_for_element(selector)
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


def switch_user(browser, username):
    browser.find_element("#nav-logout").click()
    browser.wait_for_element("#login-form")
    browser.login(username)
    browser.wait_for_text_to_equal("h2", "Projects")


@pytest.fixture
def saved_images(db, world, config):
    """Three images in 'Lab'; the annotator saved the first two (waiting for review) and
    holds a lease on the third (opened, not saved)."""
    store = LocalBlobStore(config.blob_dir)
    pid = world["project_id"]
    with db.session_scope() as s:
        items = []
        for seed in range(3):
            pixels, _ = nuclei((60, 80), seed=seed)
            items.append(imports.ImportFile(f"img{seed}.tif", read=lambda p=pixels: tiff(p)))
        imports.import_files(s, actor(s, "owner"), store, pid, items, 1 << 28)
    ids = []
    with db.session_scope() as s:
        anna = actor(s, "annotator")
        for _ in range(2):
            image_id = leases.next_image(s, anna, config, pid)
            drafts.record_edit(s, anna, config, store, image_id,
                               {"op": "add", "shape": {"type": "rect", "x0": 5, "y0": 5,
                                                       "x1": 20, "y1": 20}})
            annotations.save(s, anna, config, store, image_id)
            ids.append(image_id)
        ids.append(leases.next_image(s, anna, config, pid))     # held, not saved
    return ids


def test_reviewer_sends_back_and_the_annotator_gets_it_first(browser, world, saved_images):
    pid, (first, second, held) = world["project_id"], saved_images
    browser.login("reviewer")
    browser.wait_for_text_to_equal("h2", "Projects")
    browser.driver.get(f"{browser.server_url}/projects/{pid}")
    browser.wait_for_contains_text("#project-review-link", "Review (2 waiting)")
    browser.find_element("#project-review-link").click()
    browser.wait_for_contains_text("h2", "Review · Lab")           # not "No such project"
    browser.wait_for_contains_text("#review-submitted", "img0.tif")
    assert "img1.tif" in browser.find_element("#review-submitted").text
    review_link = browser.find_element(
        f'#review-submitted a[href="/annotate/{second}?from=review"]')
    assert review_link.text == "Review"
    review_link.click()
    browser.wait_for_element("#annotate-comment").send_keys("the top cell is missing")
    browser.find_element("#annotate-send-back").click()
    browser.wait_for_contains_text("#annotate-message", "Sent back to the annotator")
    # Next goes on through the review list (it used to lease a fresh unannotated image)
    browser.find_element("#annotate-next").click()
    WebDriverWait(browser.driver, 15).until(
        lambda d: d.current_url.endswith(f"/annotate/{first}?from=review"))

    browser.driver.get(f"{browser.server_url}/projects/{pid}/review")
    browser.wait_for_contains_text("#review-returned", "the top cell is missing")
    assert "img1.tif" not in browser.find_element("#review-submitted").text

    switch_user(browser, "annotator")
    browser.driver.get(f"{browser.server_url}/projects/{pid}")
    browser.wait_for_contains_text("#review-returned-to-me", "the top cell is missing")
    assert "reviewer" in browser.find_element("#review-returned-to-me").text
    browser.driver.get(f"{browser.server_url}/projects/{pid}/review")
    browser.wait_for_contains_text("#review-returned-to-me", "img1.tif")
    # Annotate serves the returned image first, not the one the annotator still holds
    browser.find_element("#review-annotate-returned").click()
    browser.wait_for_contains_text("#annotate-returned", "the top cell is missing")
    assert browser.driver.current_url.endswith(f"/annotate/{second}?from=queue")
    assert held != second


def test_viewer_page_links_into_the_workspace(browser, world, saved_images):
    first = saved_images[0]
    browser.login("annotator")
    browser.wait_for_text_to_equal("h2", "Projects")
    browser.driver.get(f"{browser.server_url}/images/{first}")
    browser.wait_for_element("#viewer-annotate").click()
    browser.wait_for_element("#annotate-graph")
    assert browser.driver.current_url.endswith(f"/annotate/{first}")
    switch_user(browser, "viewer")
    browser.driver.get(f"{browser.server_url}/images/{first}")
    browser.wait_for_element("#viewer-name")
    assert browser.driver.find_elements(browser.By.ID, "viewer-annotate") == []


def test_owner_adds_with_autocomplete_and_removal_asks_first(browser, world, db):
    pid = world["project_id"]
    browser.login("owner")
    browser.wait_for_text_to_equal("h2", "Projects")
    browser.driver.get(f"{browser.server_url}/projects/{pid}")
    field = browser.wait_for_element("#project-add-username")
    field.send_keys("outs")
    browser.wait_for_element('#project-add-suggestions option[value="outsider"]')
    field.send_keys("ider", Keys.TAB)
    browser.find_element("#project-add-member").click()
    browser.wait_for_contains_text("#project-message", "outsider is now annotator")
    browser.wait_for_text_to_equal("#project-add-username", "")
    assert browser.find_element("#project-add-username").get_attribute("value") == ""

    remove = ('#project-members-table button[id=\'{"type":"project-member-remove","user":'
              f'{world["viewer"]}}}\']')
    click(browser, remove)
    browser.wait_for_contains_text("#project-remove-text", "Remove viewer (viewer) from Lab?")
    click(browser, "#project-remove-cancel")
    browser.wait_for_no_elements("#project-remove-text")
    with db.session_scope() as s:
        names = [m.username for m in projects.list_members(s, actor(s, "owner"), pid)]
    assert "viewer" in names
    click(browser, remove)
    browser.wait_for_contains_text("#project-remove-text", "Remove viewer")
    click(browser, "#project-remove-confirm")
    browser.wait_for_contains_text("#project-message", "viewer was removed from the project")
    with db.session_scope() as s:
        names = [m.username for m in projects.list_members(s, actor(s, "owner"), pid)]
    assert "viewer" not in names and "outsider" in names

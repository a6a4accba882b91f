"""Real Chromium on the Images page: an annotator uploads a TIFF, sees it in the gallery,
opens the viewer and the annotation workspace; a zip of images/ and labels/ goes through the
import job (run here in a thread, as the worker would) to its results; a failing job says why
on the page; label images uploaded on their own attach to the images they are named after."""
import threading
import time
import zipfile

import pytest
from selenium.common.exceptions import ElementClickInterceptedException

from app.deps import Deps
from app.jobs.runner import run_job
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


@pytest.fixture
def worker(monkeypatch):
    """Jobs sent by the page run in a thread of the test process (no Celery worker here)."""
    def enqueue(self, job_id):
        threading.Thread(target=run_job, args=(self.db, self.config, job_id),
                         daemon=True).start()
    monkeypatch.setattr(Deps, "enqueue", enqueue)


def open_images(browser, world, who):
    browser.login(who)
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}/images")


def plate_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(2):
            img, lab = nuclei(shape=(96, 128), seed=k)
            zf.writestr(f"images/well_{k}.tif", tiff(img))
            zf.writestr(f"labels/well_{k}_masks.tif", tiff(lab))
    return path


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


def test_gallery_links_into_the_annotation_workspace(browser, world, image_id):
    open_images(browser, world, "annotator")
    browser.wait_for_element("#images-grid")
    link = browser.driver.find_element(browser.By.LINK_TEXT, "Annotate")
    assert link.get_attribute("href").endswith(f"/annotate/{image_id}")
    for attempt in range(3):    # the thumbnail may still move the card while it loads
        browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
        try:
            link.click()
            break
        except ElementClickInterceptedException:
            time.sleep(0.5)
    browser.wait_for_element("#annotate-graph", timeout=20)
    assert browser.driver.current_url.endswith(f"/annotate/{image_id}")


def test_zip_upload_runs_the_import_job_to_its_results(browser, world, worker, tmp_path,
                                                       config):
    open_images(browser, world, "owner")
    browser.wait_for_element("#images-empty")
    browser.find_element("#images-upload input[type=file]").send_keys(
        str(plate_zip(tmp_path / "plate.zip")))
    browser.wait_for_contains_text("#images-job-status", "Import #1 finished: 2 imported",
                                   timeout=30)
    assert "0 rejected" in browser.find_element(".images-job-outcome").text
    browser.wait_for_contains_text("#images-grid", "images/well_1.tif", timeout=10)
    assert browser.find_element("#images-grid").text.count("cells") == 2
    assert not (config.data_dir / "staging").exists() or \
        not any((config.data_dir / "staging").iterdir())


def test_a_failed_import_says_why_on_the_page(browser, world, worker, tmp_path, config,
                                              monkeypatch):
    from app.services import imports

    def full_disk(*_args, **_kwargs):
        raise OSError("No space left on device")
    monkeypatch.setattr(imports, "import_files", full_disk)
    open_images(browser, world, "owner")
    browser.wait_for_element("#images-empty")
    browser.find_element("#images-upload input[type=file]").send_keys(
        str(plate_zip(tmp_path / "plate.zip")))
    browser.wait_for_contains_text("#images-job-status",
                                   "Import #1 failed: OSError: No space left on device",
                                   timeout=30)
    assert not any((config.data_dir / "staging").iterdir())


def test_label_images_upload_on_their_own(browser, world, image_id, tmp_path):
    _img, lab = nuclei((60, 80))
    (tmp_path / "a_masks.tif").write_bytes(tiff(lab))
    (tmp_path / "b_masks.tif").write_bytes(tiff(lab))
    open_images(browser, world, "annotator")
    browser.wait_for_element("#images-grid")
    browser.find_element("#images-mask-upload input[type=file]").send_keys(
        f"{tmp_path / 'a_masks.tif'}\n{tmp_path / 'b_masks.tif'}")
    browser.wait_for_contains_text("#images-mask-summary",
                                   "1 label images attached, 0 skipped, 1 rejected", timeout=20)
    assert "no image named 'b'" in browser.find_element("#images-mask-result").text
    browser.wait_for_contains_text("#images-grid", "cells", timeout=10)


def test_viewer_sees_no_upload_zone(browser, world):
    browser.login("viewer")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}/images")
    browser.wait_for_element("#images-empty")
    assert browser.driver.find_elements(browser.By.ID, "images-upload") == []
    assert browser.driver.find_elements(browser.By.ID, "images-mask-upload") == []


def test_viewer_gets_no_annotate_link(browser, world, image_id):
    open_images(browser, world, "viewer")
    browser.wait_for_element("#images-grid")
    assert browser.driver.find_elements(browser.By.LINK_TEXT, "Annotate") == []


def test_a_waiting_import_can_be_cancelled_from_the_page(browser, world, tmp_path, config,
                                                         monkeypatch):
    monkeypatch.setattr(Deps, "enqueue", lambda self, job_id: None)   # no worker
    open_images(browser, world, "annotator")
    browser.wait_for_element("#images-empty")
    browser.find_element("#images-upload input[type=file]").send_keys(
        str(plate_zip(tmp_path / "plate.zip")))
    browser.wait_for_contains_text("#images-job-status", "queued", timeout=20)
    browser.driver.refresh()       # a reload follows the import still waiting
    browser.wait_for_contains_text("#images-job-status", "import #1", timeout=20)
    browser.find_element("#images-job-status button").click()
    browser.wait_for_contains_text("#images-job-status", "Import #1 was cancelled", timeout=20)
    assert not any((config.data_dir / "staging").iterdir())

"""Real Chromium, issue 19 items 3 and 8 on the Models page: a whole number of minutes is a
valid budget (a number input with step 0.5 from 0.1 made "5" invalid, and the browser sent
nothing); a refused budget is shown and blocks Train; a started training that waits says
what it waits behind."""
import pytest
from selenium.webdriver.common.keys import Keys

from app.permissions import SYSTEM
from app.services import imports
from app.tables import Job, utcnow
from storage.blobstore import LocalBlobStore
from tests.images_data import nuclei, tiff

pytestmark = pytest.mark.browser


def type_into(browser, selector: str, text: str) -> None:
    field = browser.find_element(selector)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)


def test_budget_field_and_waiting_training(browser, world, db, config):
    pid = world["project_id"]
    img, lab = nuclei(shape=(64, 64), n=4, seed=1)
    with db.session_scope() as s:
        imports.import_files(s, SYSTEM, LocalBlobStore(config.blob_dir), pid,
                            [imports.ImportFile("a.tif", read=lambda: tiff(img),
                                               read_labels=lambda: tiff(lab))], 1 << 28)
        now = utcnow()
        ahead = Job(kind="score", project_id=pid, user_id=world["owner"], state="running",
                    params={}, started_at=now, heartbeat_at=now, message="Scoring 1/9")
        s.add(ahead)
        s.flush()
        ahead_id = ahead.id
    browser.login("owner")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{pid}/models")
    train = browser.wait_for_element("#models-train")

    type_into(browser, "#models-max-minutes", "abc")
    browser.wait_for_class_to_equal("#models-max-minutes", "is-invalid form-control")
    browser.wait_for_contains_text("#models-max-minutes-feedback", "time budget")
    assert browser.find_element("#models-max-minutes-feedback").is_displayed()
    assert not train.is_enabled()

    type_into(browser, "#models-max-minutes", "5")
    browser.wait_for_text_to_equal("#models-max-minutes-help",
                                   "Stops after about 5 min or 40 epochs, whichever comes first "
                                   "(at least one epoch).")
    assert "is-invalid" not in browser.find_element("#models-max-minutes").get_attribute("class")
    assert not browser.find_element("#models-max-minutes-feedback").is_displayed()
    assert train.is_enabled()

    train.click()
    browser.wait_for_contains_text("#models-job-view .job-message",
                                   f"Waiting behind job #{ahead_id} (score, running).",
                                   timeout=15)
    with db.session_scope() as s:
        job = s.query(Job).filter(Job.kind == "train").one()
        assert job.params["max_minutes"] == 5.0 and job.state == "queued"

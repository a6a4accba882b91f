"""Real Chromium: log in, create a project, add a member, log out; wrong passwords."""
import pytest
from selenium.webdriver.common.keys import Keys

from app.services import projects
from tests.conftest import actor

pytestmark = pytest.mark.browser


def test_wrong_password_shows_an_error(browser):
    browser.login("owner", "not-the-password")
    browser.wait_for_contains_text("#login-error", "Wrong username or password")
    assert browser.driver.current_url.endswith("/login")


def test_owner_creates_project_adds_member_and_logs_out(browser, db):
    browser.login("owner")
    browser.wait_for_text_to_equal("h2", "Projects")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.find_element("#projects-new-toggle").click()
    browser.visible("#projects-new-name").send_keys("Mitochondria")
    browser.find_element("#projects-new-description").send_keys("EM membranes")
    # a nuclei model is no start for membranes: the owner picks "None" (issue 20)
    browser.find_element("#projects-new-starting-model").click()
    browser.wait_for_element("[role=option]")
    next(o for o in browser.find_elements("[role=option]")
         if o.text.startswith("None")).click()
    browser.wait_for_contains_text("#projects-new-starting-model", "None: draw")
    browser.find_element("#projects-create").click()
    browser.wait_for_text_to_equal("#project-name", "Mitochondria", timeout=10)
    assert browser.find_element("#project-role").text == "owner"

    browser.find_element("#project-add-username").send_keys("annotator")
    browser.find_element("#project-add-member").click()
    browser.wait_for_contains_text("#project-members", "annotator", timeout=10)
    browser.wait_for_contains_text("#project-message", "annotator is now annotator")
    with db.session_scope() as s:
        owner = actor(s, "owner")
        p = next(p for p in projects.list_projects(s, owner) if p.name == "Mitochondria")
        assert p.settings["starting_model"] == "none"
        assert {m.username: m.role for m in projects.list_members(s, owner, p.id)} == {
            "owner": "owner", "annotator": "annotator"}

    browser.find_element("#nav-logout").click()
    browser.wait_for_element("#login-form")
    browser.driver.get(browser.server_url + "/projects")
    browser.wait_for_element("#login-form")  # logged out: sent back to the login page


def test_viewer_sees_members_read_only(browser, world):
    browser.login("viewer")
    browser.wait_for_contains_text("#projects-list", "Lab")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}")
    browser.wait_for_text_to_equal("#project-role", "viewer")
    browser.wait_for_contains_text("#project-members", "owner")
    assert browser.driver.find_elements(browser.By.ID, "project-add-member") == []
    assert browser.driver.find_elements(browser.By.CSS_SELECTOR, "#project-members button") == []


def test_outsider_cannot_open_the_project(browser, world):
    browser.login("outsider")
    browser.wait_for_element("#projects-empty")
    browser.driver.get(f"{browser.server_url}/projects/{world['project_id']}")
    browser.wait_for_contains_text("#_pages_content", "not a member")


def test_admin_creates_a_user_and_password_change(browser):
    browser.login("admin")
    browser.wait_for_element("#nav-admin").click()
    browser.wait_for_element("#admin-new-username").send_keys("newbie")
    browser.find_element("#admin-new-password").send_keys("newbie-password")
    browser.find_element("#admin-create-user").click()
    browser.wait_for_contains_text("#admin-message", "Created newbie")
    browser.wait_for_contains_text("#admin-users-table", "newbie")

    browser.find_element("#nav-account").click()
    browser.wait_for_element("#account-old-password").send_keys("correct-horse-1")
    browser.find_element("#account-new-password").send_keys("a-brand-new-one")
    browser.find_element("#account-new-password2").send_keys("a-brand-new-one", Keys.TAB)
    browser.find_element("#account-change-password").click()
    browser.wait_for_contains_text("#account-message", "Password changed")
    browser.login("admin", "a-brand-new-one")
    browser.wait_for_text_to_equal("h2", "Projects")


def test_unknown_page_shows_404(browser):
    browser.login("viewer")
    browser.wait_for_text_to_equal("h2", "Projects")
    browser.driver.get(browser.server_url + "/no/such/page")
    browser.wait_for_element("#not-found")

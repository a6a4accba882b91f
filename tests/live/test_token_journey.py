"""An image analyst's first API token, walked in a real headless Chromium against CellLoop
started as run.sh starts it: create a read token on the Account page (shown once), use it
from a script (it lists the member's project and refuses a write), revoke it in the browser
(the next request is 401). Journey tier (`-m journey`)."""
import pytest
import requests

from tests.live.harness import DEMO_PROJECT

pytestmark = [pytest.mark.journey, pytest.mark.slow]


def test_create_use_and_revoke_a_token_in_the_browser(live, person):
    person.login("anna")
    person.go("/account", ready="#account-token-name")
    person.type("#account-token-name", "plate reader")
    person.click("#account-token-create")
    token = person.wait_text("#account-token-new-value", "cl_").strip()
    assert token.startswith("cl_")
    person.wait_text("#account-token-table", "plate reader")

    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    projects = api.get(live.url("/api/v1/projects"), timeout=30)
    assert projects.status_code == 200, projects.text
    assert DEMO_PROJECT in [p["name"] for p in projects.json()["items"]]
    pid = live.project_id()
    refused = api.post(live.url(f"/api/v1/projects/{pid}/jobs"), json={"kind": "train"},
                       timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "read_only_token"

    # the token is shown once: a fresh visit lists it, without its value
    person.go("/account", ready="#account-token-table")
    person.wait_text("#account-token-table", "plate reader")
    assert token not in person.driver.page_source
    person.click("button[id*='account-token-revoke']")
    person.wait_text("#account-token-table", "revoked")
    gone = api.get(live.url("/api/v1/projects"), timeout=30)
    assert gone.status_code == 401, gone.text

"""Browser-test helpers: start the app under dash_duo on a free port and log in."""
import socket

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(dash_duo, dash_app, world):
    """dash_duo with the app started; `browser.login(name)` logs in through the form."""
    # navigate=False: the first page is our login form, not a Dash page to wait for
    dash_duo.start_server(dash_app, navigate=False, port=free_port())
    dash_duo._url = dash_duo.server.url.rstrip("/")

    def login(username: str, password: str = PASSWORD):
        dash_duo.driver.get(dash_duo.server_url + "/login")
        dash_duo.wait_for_element("#username").send_keys(username)
        dash_duo.find_element("#password").send_keys(password)
        dash_duo.find_element("#login-submit").click()

    def visible(css: str, timeout: float = 10):
        """The element once it is shown (fields in a collapse exist before they can take keys)."""
        element = dash_duo.wait_for_element(css, timeout=timeout)
        WebDriverWait(dash_duo.driver, timeout).until(lambda _d: element.is_displayed())
        return element

    dash_duo.login = login
    dash_duo.visible = visible
    dash_duo.By = By
    return dash_duo

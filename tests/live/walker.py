"""A person in headless Chromium, for the journey tier: log in and out, go to pages, wait for
text, click, type, draw on the annotation figure, take screenshots."""
from __future__ import annotations

import os
import time
from pathlib import Path

from selenium.common.exceptions import (ElementClickInterceptedException,
                                        ElementNotInteractableException,
                                        StaleElementReferenceException, WebDriverException)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.live.harness import DEMO, LiveApp, chrome

TO_PIXELS = """
    var fl = document.querySelector('#annotate-graph .js-plotly-plot')._fullLayout;
    return [Math.round(fl.xaxis.d2p(arguments[0])), Math.round(fl.yaxis.d2p(arguments[1]))];
"""


class Walker:
    def __init__(self, app: LiveApp, downloads: Path, size=(1600, 1000)):
        self.app = app
        self.downloads = Path(downloads)
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.driver = chrome(*size, downloads=self.downloads)
        self.driver.execute_cdp_cmd("Page.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": str(self.downloads)})
        self.shots = Path(os.environ.get("CELLLOOP_SCREENSHOTS") or self.downloads / "shots")
        self.shots.mkdir(parents=True, exist_ok=True)
        self.user = None

    def quit(self):
        self.driver.quit()

    # ------------------------------------------------------------------ session
    def login(self, username: str, password: str | None = None) -> None:
        if self.user is not None:
            self.logout()
        self.driver.get(self.app.url("/login"))
        self.wait("#username").send_keys(username)
        self.driver.find_element(By.ID, "password").send_keys(password or DEMO[username])
        self.driver.find_element(By.ID, "login-submit").click()
        WebDriverWait(self.driver, 30).until(lambda d: "/login" not in d.current_url)
        self.user = username

    def logout(self) -> None:
        self.go("/projects")
        self.click("#nav-logout")
        WebDriverWait(self.driver, 30).until(lambda d: "/login" in d.current_url)
        self.user = None

    # ------------------------------------------------------------------ pages
    def go(self, path: str, ready: str | None = None) -> None:
        self.driver.get(self.app.url(path))
        if ready:
            self.wait(ready)

    @property
    def path(self) -> str:
        """The page's path, without a query string."""
        return "/" + self.driver.current_url.split("/", 3)[3].split("?")[0]

    def wait(self, css: str, timeout: float = 30):
        return WebDriverWait(self.driver, timeout).until(
            lambda d: d.find_element(By.CSS_SELECTOR, css))

    def gone(self, css: str) -> bool:
        return not self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.wait(css).text

    def wait_text(self, css: str, text: str, timeout: float = 30) -> str:
        def seen(d):
            try:
                found = d.find_element(By.CSS_SELECTOR, css).text
            except (WebDriverException, StaleElementReferenceException):
                return False
            return found if text in found else False
        try:
            return WebDriverWait(self.driver, timeout).until(seen)
        except Exception:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            raise AssertionError(f"{css!r} never showed {text!r}; it shows "
                                 f"{found[0].text if found else '(nothing)'!r}") from None

    def click(self, css: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while True:
            try:
                element = self.wait(css, timeout)
                WebDriverWait(self.driver, timeout).until(lambda d: element.is_enabled())
                self.driver.execute_script(
                    "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})",
                    element)
                element.click()
                return
            except (ElementClickInterceptedException, StaleElementReferenceException):
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

    def type(self, css: str, text: str, enter: bool = False, timeout: float = 30) -> None:
        """Type into a field once a person could: it is shown (a form that opens in a collapse
        is in the page before it is visible) and takes keys."""
        deadline = time.time() + timeout
        while True:
            try:
                element = self.wait(css, timeout)
                WebDriverWait(self.driver, timeout).until(
                    lambda d: element.is_displayed() and element.is_enabled())
                element.send_keys(Keys.CONTROL, "a")
                element.send_keys(Keys.DELETE)
                element.send_keys(text + (Keys.ENTER if enter else ""))
                return
            except (ElementNotInteractableException, StaleElementReferenceException):
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

    def choose(self, dropdown_css: str, option: str) -> None:
        """Pick `option` in a dcc.Dropdown (Dash 4: a button that opens a list of options)."""
        self.click(dropdown_css)
        xpath = f"//*[@role='option' and normalize-space()='{option}']"
        item = WebDriverWait(self.driver, 30).until(lambda d: d.find_element(By.XPATH, xpath))
        item.click()
        WebDriverWait(self.driver, 30).until(
            lambda d: option in d.find_element(By.CSS_SELECTOR, dropdown_css).text)

    def keys(self, *keys) -> None:
        ActionChains(self.driver).send_keys(*keys).perform()

    def disabled(self, css: str) -> bool:
        return self.wait(css).get_attribute("disabled") is not None

    # ------------------------------------------------------------------ the annotation figure
    def dragmode(self) -> str:
        return self.driver.execute_script(
            "return document.querySelector('#annotate-graph .js-plotly-plot').layout.dragmode")

    def wait_dragmode(self, mode: str, timeout: float = 30) -> None:
        WebDriverWait(self.driver, timeout).until(lambda d: self.dragmode() == mode)

    def drag(self, start, end) -> None:
        """A real mouse drag on the figure between two image points."""
        self.driver.execute_script(
            "document.querySelector('#annotate-graph').scrollIntoView({block: 'start', "
            "behavior: 'instant'})")
        (x0, y0), (x1, y1) = (self.driver.execute_script(TO_PIXELS, *p) for p in (start, end))
        area = self.wait("#annotate-graph .nsewdrag")
        chain = ActionChains(self.driver).move_to_element_with_offset(area, x0, y0)
        chain = chain.click_and_hold()
        for i in range(1, 6):
            chain = chain.move_to_element_with_offset(area, x0 + (x1 - x0) * i // 5,
                                                      y0 + (y1 - y0) * i // 5)
        chain.release().perform()

    # ------------------------------------------------------------------ files
    def wait_download(self, suffix: str, timeout: float = 300) -> Path:
        deadline = time.time() + timeout
        while time.time() < deadline:
            done = [p for p in self.downloads.glob(f"*{suffix}") if p.stat().st_size > 0]
            partial = list(self.downloads.glob("*.crdownload"))
            if done and not partial:
                return done[0]
            time.sleep(0.5)
        raise AssertionError(f"no {suffix} downloaded: {list(self.downloads.iterdir())}")

    def shot(self, name: str, sizes=((1600, 1000), (1280, 720))) -> None:
        """Screenshots of the current page at each size (docs/screenshots when
        CELLLOOP_SCREENSHOTS names that folder)."""
        original = self.driver.get_window_size()
        for width, height in sizes:
            self.driver.set_window_size(width, height)
            time.sleep(0.8)
            suffix = "" if (width, height) == (1600, 1000) else f"-{width}x{height}"
            self.driver.save_screenshot(str(self.shots / f"{name}{suffix}.png"))
        self.driver.set_window_size(original["width"], original["height"])

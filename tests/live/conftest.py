"""Fixtures for the tiers that run CellLoop as `run.sh` starts it (see harness.py)."""
import pytest

from tests.live.harness import LiveApp
from tests.live.walker import Walker


@pytest.fixture
def live(tmp_path):
    app = LiveApp(tmp_path / "site")
    try:
        yield app.start()
    finally:
        app.stop()


@pytest.fixture
def person(live, tmp_path):
    """A headless Chromium walking `live` (test_journeys.py walks its own shared site)."""
    walker = Walker(live, tmp_path / "downloads")
    try:
        yield walker
    finally:
        walker.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a browser step fails, say where the browser was and what it showed."""
    outcome = yield
    report = outcome.get_result()
    person = item.funcargs.get("person") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and person is not None:
        try:
            shot = person.shots / f"FAILED-{item.name}.png"
            person.driver.save_screenshot(str(shot))
            body = person.driver.find_element("css selector", "body").text[:2000]
            report.sections.append(("browser", f"at {person.driver.current_url}\n"
                                               f"screenshot {shot}\n{body}"))
        except Exception as exc:  # noqa: BLE001 - the report must not fail on top
            report.sections.append(("browser", f"(no screenshot: {exc})"))

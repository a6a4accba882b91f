"""Fixtures for the tiers that run CellLoop as `run.sh` starts it (see harness.py)."""
import pytest

from tests.live.harness import LiveApp


@pytest.fixture
def live(tmp_path):
    app = LiveApp(tmp_path / "site")
    try:
        yield app.start()
    finally:
        app.stop()

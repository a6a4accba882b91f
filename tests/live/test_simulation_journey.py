"""A reviewer starts a simulation in effort from the Learning page, walked in a real headless
Chromium against CellLoop started as run.sh starts it: regions, from the built-in model,
paying corrections; the job is queued with those settings, and a viewer cannot start one.
Journey tier (`-m journey`)."""
import pytest


pytestmark = [pytest.mark.journey, pytest.mark.slow]


def _fill(person, **numbers):
    for key, value in numbers.items():
        person.type(f"#learning-sim-{key}", str(value))


def test_reviewer_starts_a_region_simulation_from_the_builtin_model(live, person):
    pid = live.project_id()
    person.login("rita")
    person.go(f"/projects/{pid}/learning", ready="#learning-sim-start")
    _fill(person, initial=1, batch=1, rounds=1, seeds=1)
    person.choose("#learning-sim-unit", "regions (256 px)")
    person.choose("#learning-sim-from", "built-in model")
    person.choose("#learning-sim-cost", "corrections")
    person.click("#learning-sim-start")
    person.wait_text("#learning-message", "Simulation job #")
    (params,) = [row[0] for row in live.query(
        "SELECT params FROM job WHERE kind = 'simulate' AND project_id = ?", pid)]
    assert '"unit": "region"' in params and '"start": "builtin"' in params
    assert '"cost": "corrections"' in params

    person.login("victor")                    # a viewer sees the form, disabled
    person.go(f"/projects/{pid}/learning", ready="#learning-sim-start")
    assert person.disabled("#learning-sim-start")

"""Issue 19 item 3: a training's time budget is any positive number of minutes, typed as
text or given as a number; what would be refused is refused with a message, never dropped."""
import math

import pytest

from app.errors import ValidationError
from app.services.training_params import clean_params, field_errors


@pytest.mark.parametrize("typed,minutes", [("5", 5.0), (5, 5.0), ("1", 1.0), ("0.25", 0.25),
                                           (" 10 ", 10.0), ("1.1", 1.1), ("0.05", 0.05),
                                           ("1440", 1440.0), ("2e1", 20.0)])
def test_any_positive_budget_is_kept(typed, minutes):
    assert clean_params({"max_minutes": typed})["max_minutes"] == pytest.approx(minutes)


@pytest.mark.parametrize("typed", ["0", "-1", "abc", "2,5", "1441", "nan", "inf", True,
                                   math.nan, "5 min"])
def test_bad_budgets_are_refused_with_a_message(typed):
    with pytest.raises(ValidationError, match="time budget"):
        clean_params({"max_minutes": typed})
    assert "time budget" in field_errors({"max_minutes": typed})["max_minutes"]


def test_a_comma_is_explained():
    with pytest.raises(ValidationError, match="'2.5' with a point"):
        clean_params({"max_minutes": "2,5"})


@pytest.mark.parametrize("typed,epochs", [("40", 40), (3, 3), ("7.0", 7), (12.0, 12)])
def test_epochs_are_whole_numbers(typed, epochs):
    assert clean_params({"epochs": typed})["epochs"] == epochs


@pytest.mark.parametrize("typed", ["2.5", "0", "1001", "x", False])
def test_bad_epochs_are_refused(typed):
    with pytest.raises(ValidationError, match="epochs must be between 1 and 1000"):
        clean_params({"epochs": typed})


def test_empty_fields_mean_not_given():
    assert clean_params({"epochs": "", "max_minutes": None, "seed": "  "}) == {
        "fine_tune": True, "rescore": False}
    assert field_errors({"epochs": "", "max_minutes": ""}) == {}


def test_field_errors_name_every_bad_field():
    errors = field_errors({"epochs": "2.5", "max_minutes": "0", "seed": "3"})
    assert set(errors) == {"epochs", "max_minutes"}

"""The settings a person gives one training run (epochs, time budget in minutes, seed),
checked the same way for the Models page, the CLI and the service.

Values come as typed ("5", "2.5", " 10 ") or as numbers. A whole number of minutes is a
budget like any other (the page once sent nothing for "5", and the run ignored its budget).
Anything that is not a number, or not a whole number where one is needed, or out of range,
is refused with a message naming the field: nothing is silently dropped. An empty field
means "not given" (no time limit; the project's number of epochs).
"""
from __future__ import annotations

import math

from sqlalchemy.orm import Session

from app.errors import ValidationError
from app.permissions import Actor, require

MAX_MINUTES = 24 * 60
# key: (whole number, lowest, highest, message when out of range or not that kind of number)
FIELDS = {
    "epochs": (True, 1, 1000, "epochs must be between 1 and 1000 (a whole number)."),
    "max_minutes": (False, 0, MAX_MINUTES, "The time budget must be a number of minutes "
                                           f"above 0 and at most {MAX_MINUTES}."),
    "seed": (True, 0, 2 ** 31, f"seed must be between 0 and {2 ** 31} (a whole number)."),
}


def parse_field(key: str, value) -> int | float | None:
    """The value of field `key`, or None when it is empty; ValidationError otherwise."""
    whole, lo, hi, message = FIELDS[key]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValidationError(message)
    if isinstance(value, str):
        text = value.strip()
        if "," in text:
            raise ValidationError(f"Write {text.replace(',', '.')!r} with a point, not a comma: "
                                  + message)
        try:
            value = float(text)
        except ValueError:
            raise ValidationError(f"{text!r} is not a number: " + message) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(message)
    if whole:
        if not float(value).is_integer() or not lo <= value <= hi:
            raise ValidationError(message)
        return int(value)
    if not lo < value <= hi:      # the budget: any positive number of minutes
        raise ValidationError(message)
    return float(value)


def clean_params(params: dict) -> dict:
    """The parameters of a training job, checked; raises ValidationError on the first bad
    field."""
    out = {"fine_tune": bool(params.get("fine_tune", True)),
           "rescore": bool(params.get("rescore", False))}
    for key in FIELDS:
        value = parse_field(key, params.get(key))
        if value is not None:
            out[key] = value
    return out


def field_errors(params: dict) -> dict[str, str]:
    """{field: message} for every field of `params` that would be refused."""
    errors = {}
    for key in FIELDS:
        try:
            parse_field(key, params.get(key))
        except ValidationError as exc:
            errors[key] = str(exc)
    return errors


def check_training_form(session: Session, actor: Actor, project_id: int,
                        params: dict) -> dict[str, str]:
    """What the training form would be refused for, field by field (reviewers and owners),
    so the page can mark a field invalid and block the start before anything is sent."""
    require(session, actor, project_id, "train")
    return field_errors(params)

"""Job kinds: a job kind is a function `handler(ctx, **params)` registered by name.

Handlers live next to the services they drive; they receive a `JobContext` to report
progress and to learn whether the user asked to cancel.
"""
from __future__ import annotations

from typing import Callable

HANDLERS: dict[str, Callable] = {}


def job_kind(name: str):
    """Decorator: register `fn` as the handler of job kind `name`."""
    def register(fn: Callable) -> Callable:
        if name in HANDLERS and HANDLERS[name] is not fn:
            raise ValueError(f"job kind {name!r} registered twice")
        HANDLERS[name] = fn
        return fn
    return register


def load_handlers() -> None:
    """Import the modules that register job kinds."""
    import app.jobs.builtin  # noqa: F401
    import app.services.prediction  # noqa: F401
    import app.services.scoring  # noqa: F401
    import app.services.simulation  # noqa: F401
    import app.services.training  # noqa: F401

"""The one way long work stops early: `Cancelled`, raised wherever a `should_stop()` callable
says so (training steps, simulation rounds) or a progress report finds the cancel flag.

It lives here, below everything, so models/ can raise it without knowing of the app, and the
job runner catches the same class to record a job as "cancelled"."""
from __future__ import annotations


class Cancelled(Exception):
    """The user (or whoever owns the work) asked it to stop; nothing went wrong."""

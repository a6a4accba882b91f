"""Logging: one format for the web server, the worker and the CLI; a request log line with
the user and the duration of each request. Flask is imported only by the request log: a
worker on a GPU host configures its logging without the web tier's packages."""
from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
request_log = logging.getLogger("cellloop.request")
QUIET_PREFIXES = ("/assets/", "/_dash-component-suites/", "/vendor/", "/_favicon")


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_cellloop", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._cellloop = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def init_request_log(server) -> None:
    from flask import g, request

    from app.context import current_actor

    @server.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @server.after_request
    def _log_request(response):
        if request.path.startswith(QUIET_PREFIXES):
            return response
        started = g.get("request_started")
        ms = (time.perf_counter() - started) * 1000 if started else -1
        user = current_actor()
        request_log.info("%s %s %s %.1fms user=%s", request.method, request.path,
                         response.status_code, ms, user.username if user else "-")
        return response

"""The job server of `pages._background.JobServerManager`: `python -m pages._job_server`.

Reads from stdin the web worker's Config, builds the app from it (the same Dash callbacks, so
the same job functions under the same keys), then serves requests one at a time: for each it
forks a child and writes the child's pid (or a message) to the pipe that was its stdout. It
never starts a thread, so each fork copies a process with no lock held by anyone else. It exits
when stdin closes (the worker exited); its children end on their own (done or deadline)."""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading

import dill

from pages import _background
from pages._background import receive, receive_bytes, send

log = logging.getLogger("pages._job_server")


def run_child(server, manager, raw: bytes, built_with, deadline_s: int) -> None:
    """In the forked child: the deadline, the request (unpickled here, so whatever it imports
    stays out of the server), the stand-ins, the worker's current configuration, then Dash's
    job function (it stores the result, or the error, in the disk cache)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)     # the job may wait for its own children
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(deadline_s)))
    request = dill.loads(raw)
    for module, name, value in request.get("patches", ()):
        setattr(importlib.import_module(module), name, value)
    config = request["config"]
    if config != built_with:
        from app.server import configure
        from app.wsgi import web_deps
        configure(server, web_deps(config))
    job_fn = manager.func_registry[request["fn"]]
    job_fn(request["key"], request["progress_key"], request["args"], request["context"])


def thread_count() -> int:
    """Threads of this process, the ones C libraries started included (Linux), else Python's."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return threading.active_count()


def serve(requests_fd: int, answers_fd: int) -> None:
    start = receive(requests_fd)
    if start is None:
        return
    from app.wsgi import create_app
    _background.IN_JOB_SERVER = True
    config, deadline_s = start["config"], start["deadline_s"]
    server = create_app(config)
    manager = server.extensions["dash_app"]._background_manager
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # children are reaped by the kernel
    if thread_count() > 1:
        log.warning("the job server has %d threads: its forks may inherit held locks",
                    thread_count())
    while True:
        raw = receive_bytes(requests_fd)
        if raw is None:
            return
        try:
            pid = os.fork()
        except OSError as exc:
            send(answers_fd, f"fork failed: {exc}")
            continue
        if pid == 0:
            code = 0
            try:
                os.close(requests_fd)
                os.close(answers_fd)
                run_child(server, manager, raw, config, deadline_s)
            except BaseException:                      # noqa: BLE001 - logged, then exit 1
                log.exception("background job failed outside its callback")
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        send(answers_fd, pid)


def main() -> None:
    # Answers go to the pipe that was stdout; print() and stray output go to stderr instead.
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    requests_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    serve(requests_fd, answers_fd)


if __name__ == "__main__":
    main()

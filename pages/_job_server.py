"""The job server of `pages._background.JobServerManager`: `python -m pages._job_server`.

Reads from stdin the web worker's Config and the disk cache's folder, builds the app from them
(the same Dash callbacks, so the same job functions under the same keys), then serves requests
one at a time: for each it forks a child and writes the child's pid (or a message) to the pipe
that was its stdout. It starts no thread (BLAS pools are held to one by the worker:
OPENBLAS_NUM_THREADS), so each fork copies a process where no other thread holds a lock. It
reaps its children within a second of their end. When stdin closes (the worker exited) or on
SIGTERM it kills the children still running and exits; SIGINT (a Ctrl-C in the terminal of a
development server) is left to the worker."""
from __future__ import annotations

import importlib
import logging
import os
import select
import signal
import sys
import threading

import dill

from pages import _background
from pages._background import receive, receive_bytes, send

log = logging.getLogger("pages._job_server")
REAP_EVERY_S = 1.0


def thread_count() -> int:
    """Threads of this process, the ones C libraries started included (Linux), else Python's."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return threading.active_count()


def run_child(server, manager, raw: bytes, built_with) -> None:
    """In the forked child: the request (unpickled here, so whatever it imports stays out of
    the server), the deadline, the stand-ins, the worker's current configuration, then Dash's
    job function (it stores the result, or the error, in the disk cache)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    request = dill.loads(raw)
    config = request["config"]
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(config.background_deadline_s)))
    for module, name, value in request.get("patches", ()):
        setattr(importlib.import_module(module), name, value)
    if config != built_with:
        from app.server import configure
        from app.wsgi import web_deps
        configure(server, web_deps(config))
    job_fn = manager.func_registry[request["fn"]]
    job_fn(request["key"], request["progress_key"], request["args"], request["context"])


def use_cache(manager, folder: str) -> None:
    """Point the manager's job functions at the worker's disk cache (they hold the cache they
    were made with)."""
    import diskcache
    if str(manager.handle.directory) == folder:
        return
    manager.handle = diskcache.Cache(folder)
    manager.func_registry = {key: manager.make_job_fn(fn, progress, key)
                             for key, fn, progress in manager.functions}


class Children:
    """The running children: reaped as they end, killed when the server ends."""

    def __init__(self):
        self.pids: set[int] = set()

    def reap(self) -> None:
        for pid in list(self.pids):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.pids.discard(pid)

    def kill_all(self) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pids.clear()


def serve(requests_fd: int, answers_fd: int) -> None:
    start = receive(requests_fd)
    if start is None:
        return
    from app.wsgi import create_app
    _background.IN_JOB_SERVER = True
    config = start["config"]
    server = create_app(config)
    manager = server.extensions["dash_app"]._background_manager
    use_cache(manager, start["cache_dir"])
    if thread_count() > 1:
        log.warning("the job server has %d threads: its forks may inherit held locks",
                    thread_count())
    children = Children()

    def end(_signum, _frame):
        children.kill_all()
        os._exit(0)
    signal.signal(signal.SIGTERM, end)
    try:
        while True:
            children.reap()
            if not select.select([requests_fd], [], [], REAP_EVERY_S)[0]:
                continue
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
                    run_child(server, manager, raw, config)
                except BaseException:                   # noqa: BLE001 - logged, then exit 1
                    log.exception("background job failed outside its callback")
                    code = 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children.pids.add(pid)
            send(answers_fd, pid)
    finally:
        children.kill_all()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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

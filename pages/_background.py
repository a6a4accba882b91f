"""Where a Dash background callback runs on one machine (no Redis): in a child of a job server,
never in a child of the web worker.

Dash's DiskcacheManager forks the web worker for each call. A web worker has threads (gunicorn's
gthread workers, the test server's request threads), and fork copies only the calling thread: a
lock another thread held at that moment stays held for ever in the child. Two such hangs were
caught with py-spy in the child: a buffered log stream's lock (see `app.background`), then
SQLite's own mutexes (the child waited for ever in sqlite3.connect, because another request
thread of the worker was inside SQLite when it forked: about one background call in six in the
browser tests). A C library's lock cannot be released from Python.

`JobServerManager` forks nothing from the web worker. It starts a job server
(`pages._job_server`): a new interpreter (subprocess: fork and exec, safe from a threaded
process) that builds the same app from the worker's Config and then stays on one thread,
reading requests from a pipe. For each it forks a child, which is safe from a process with one
thread; the child points the app at the worker's configuration of the moment, runs Dash's job
function (which writes the result to the shared disk cache) and exits. The worker hands Dash
the child's pid, as DiskcacheManager does: Dash polls the cache and checks the pid.

Deadline: the kernel ends the child after `deadline_s` seconds (SIGALRM with its default
action, so it fires even inside C code that never returns to Python); Dash then sees a job that
ended without a result and stops the callback's "running" state.

The server is started when the manager is made and again if it died; it exits when the
worker's end of its pipe closes (the worker exited). Requests are one at a time (a lock): the
server answers with the child's pid as soon as it has forked.

`job_patches` (module name, attribute, value) are set in each child before it runs: the tests'
stand-ins for the model (a value is pickled with dill, so a lambda travels)."""
from __future__ import annotations

import logging
import os
import select
import struct
import subprocess
import sys
import threading

import dash
import dill

log = logging.getLogger(__name__)
IN_JOB_SERVER = False          # set by pages._job_server: its manager starts no server of its own
DEADLINE_S = 600
START_TIMEOUT_S = 120          # the server imports the app and builds it before it answers
_HEADER = struct.Struct("!Q")


def send(fd: int, obj) -> None:
    """Write `obj` to `fd` as one length-prefixed message (dill)."""
    data = dill.dumps(obj)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int, timeout_s: float | None) -> bytes | None:
    chunks, left = [], n
    while left:
        if timeout_s is not None and not select.select([fd], [], [], timeout_s)[0]:
            raise TimeoutError(f"no answer from the job server within {timeout_s:.0f} s")
        chunk = os.read(fd, left)
        if not chunk:
            return None                       # the other end closed
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive_bytes(fd: int, timeout_s: float | None = None) -> bytes | None:
    """The next message on `fd`, still pickled, or None when the other end has closed."""
    header = _read_exactly(fd, _HEADER.size, timeout_s)
    if header is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(header)[0], timeout_s)


def receive(fd: int, timeout_s: float | None = None):
    """The next message on `fd`, or None when the other end has closed."""
    data = receive_bytes(fd, timeout_s)
    return None if data is None else dill.loads(data)


class JobServer:
    """The client's side: starts `pages._job_server` and asks it to fork one job at a time."""

    def __init__(self, config, deadline_s: int):
        self.config = config              # what the server builds its app from
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        process = subprocess.Popen([sys.executable, "-m", "pages._job_server"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                   cwd=os.getcwd(), close_fds=True)
        send(process.stdin.fileno(), {"config": self.config, "deadline_s": self.deadline_s})
        log.info("background job server started (pid %s)", process.pid)
        return process

    def ensure_started(self) -> None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = self._start()

    def _ask(self, request: dict) -> int:
        process = self._process
        send(process.stdin.fileno(), request)
        answer = receive(process.stdout.fileno(), START_TIMEOUT_S)
        if answer is None:
            raise ConnectionError("the background job server exited")
        if isinstance(answer, str):
            raise RuntimeError(f"the background job server could not start the job: {answer}")
        return int(answer)

    def run(self, request: dict) -> int:
        """Fork one child in the server for `request`; its pid. A server that has died (or
        does not answer) is replaced once."""
        with self._lock:
            for attempt in (1, 2):
                if self._process is None or self._process.poll() is not None:
                    self._process = self._start()
                try:
                    return self._ask(request)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    log.warning("background job server (pid %s) failed: %s",
                                self._process.pid, exc)
                    self._stop()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        process.kill()
        process.wait()

    def stop(self) -> None:
        with self._lock:
            self._stop()


class JobServerManager(dash.DiskcacheManager):
    """DiskcacheManager whose jobs run in children of a job server (see the module docstring).
    `config` is the web worker's Config; `current_config()` its configuration at the moment of
    a call (the tests point one server at a new Config per test)."""

    def __init__(self, cache, config, current_config=None, deadline_s: int = DEADLINE_S,
                 start: bool = True, **kwargs):
        super().__init__(cache, **kwargs)
        self.deadline_s = deadline_s
        self.current_config = current_config or (lambda: config)
        self.job_patches: list[tuple[str, str, object]] = []
        self.server = JobServer(config, deadline_s)
        if start and not IN_JOB_SERVER:
            self.server.ensure_started()

    def _registry_key(self, job_fn) -> str:
        for name, fn in self.func_registry.items():
            if fn is job_fn:
                return name
        raise KeyError("background callback not registered with this manager")

    def call_job_fn(self, key, job_fn, args, context):
        return self.server.run({
            "fn": self._registry_key(job_fn), "key": key,
            "progress_key": self._make_progress_key(key), "args": args,
            "context": dict(context), "config": self.current_config(),
            "patches": list(self.job_patches)})

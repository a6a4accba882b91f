"""Where a Dash background callback runs on one machine (no Redis): in a child of a job server,
never in a fork of the web worker.

Dash's DiskcacheManager forks the web worker for each call. A web worker has threads (gunicorn's
gthread workers, the test server's request threads), and fork copies only the calling thread: a
lock another thread held at that moment stays held for ever in the child. Two such hangs were
caught with py-spy in the child: a buffered log stream's lock (see `app.background`), then
SQLite's own mutexes (the child waited for ever in sqlite3.connect, because another request
thread of the worker was inside SQLite when it forked: 2 background calls in 12 runs of a
browser test). A C library's lock cannot be released from Python.

`JobServerManager` forks nothing from the web worker. It starts a job server
(`pages._job_server`): a new interpreter (subprocess: fork and exec, safe from a threaded
process) that builds the same app from the worker's Config, keeps one thread, and reads requests
from a pipe. For each it forks a child, which is safe from a process with one thread; the child
takes the worker's configuration of the moment, runs Dash's job function (which writes the
result to the disk cache) and exits. The worker hands Dash the child's pid, as DiskcacheManager
does: Dash polls the cache and checks the pid.

- **Start:** on the worker's first request (`warm`), or at the first call; a server that died
  is replaced, but not more than once in `RESTART_EVERY_S` (one that cannot build the app would
  otherwise be rebuilt at every click).
- **Deadline:** the kernel ends a child after the configuration's `background_deadline_s`
  (SIGALRM with its default action, so it fires even inside C code that never returns to
  Python); Dash then sees a job that ended without a result.
- **End:** when the worker's end of the pipe closes (the worker exited) or on SIGTERM, the
  server kills its running children and exits.
- **A request is sent once:** the pid is awaited `ANSWER_TIMEOUT_S` and never asked for again
  after the request went out, so a slow answer cannot run a job twice.
- **Killing:** Dash kills a job's pid when it is cancelled or done; here only a pid whose parent
  is a job server is killed (the server reaps its children, so a pid can be reused).

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
import time

import dash
import dill
import psutil

log = logging.getLogger(__name__)
IN_JOB_SERVER = False          # set by pages._job_server: its manager starts no server of its own
SERVER_MODULE = "pages._job_server"
ANSWER_TIMEOUT_S = 120         # a new server imports and builds the app before it answers
RESTART_EVERY_S = 30
_HEADER = struct.Struct("!Q")


def _wait(fd: int, event: int, until: float | None) -> None:
    poller = select.poll()                   # poll, not select: any fd number
    poller.register(fd, event | select.POLLHUP | select.POLLERR)
    timeout_ms = None if until is None else max(0, int((until - time.monotonic()) * 1000))
    if not poller.poll(timeout_ms):
        raise TimeoutError("the job server did not answer in time")


def send(fd: int, obj, until: float | None = None) -> None:
    """Write `obj` to `fd` as one length-prefixed message (dill), by `until` (monotonic)
    when given (the fd is then non-blocking)."""
    data = dill.dumps(obj)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        if until is not None:
            _wait(fd, select.POLLOUT, until)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_exactly(fd: int, n: int, until: float | None) -> bytes | None:
    chunks, left = [], n
    while left:
        if until is not None:
            _wait(fd, select.POLLIN, until)
        try:
            chunk = os.read(fd, left)
        except BlockingIOError:
            continue
        if not chunk:
            return None                       # the other end closed
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive_bytes(fd: int, until: float | None = None) -> bytes | None:
    """The next message on `fd`, still pickled, or None when the other end has closed."""
    header = _read_exactly(fd, _HEADER.size, until)
    if header is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(header)[0], until)


def receive(fd: int, until: float | None = None):
    """The next message on `fd`, or None when the other end has closed."""
    data = receive_bytes(fd, until)
    return None if data is None else dill.loads(data)


class JobServer:
    """The worker's side: starts `pages._job_server` and asks it to fork one job at a time."""

    def __init__(self, config, cache_dir: str):
        self.config = config              # what the server builds its app from
        self.cache_dir = cache_dir        # where its jobs write their results
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._started_at = float("-inf")      # no server yet, or stopped: start at once
        self._exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        if self._process is not None:
            self._exit_code = self._process.poll()
            self._close()
        if time.monotonic() - self._started_at < RESTART_EVERY_S:
            raise RuntimeError(f"the background job server exited (code {self._exit_code}) "
                               "soon after it started; see the log above")
        if self._started_at > float("-inf"):
            log.warning("background job server exited (code %s); starting a new one",
                        self._exit_code)
        # One BLAS thread: numpy's and scipy's OpenBLAS start a pool at import, and the server
        # must have one thread when it forks (the children's heavy work is torch's, not BLAS).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                   OPENBLAS_NUM_THREADS="1")
        process = subprocess.Popen([sys.executable, "-m", SERVER_MODULE],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                   cwd=os.getcwd(), close_fds=True)
        os.set_blocking(process.stdin.fileno(), False)
        os.set_blocking(process.stdout.fileno(), False)
        self._process, self._started_at = process, time.monotonic()
        send(process.stdin.fileno(), {"config": self.config, "cache_dir": self.cache_dir},
             time.monotonic() + ANSWER_TIMEOUT_S)
        log.info("background job server started (pid %s)", process.pid)

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure_started(self) -> None:
        with self._lock:
            if not self._alive():
                self._start()

    def run(self, request: dict) -> int:
        """Fork one child in the server for `request`; its pid."""
        with self._lock:
            if not self._alive():
                self._start()
            process = self._process
            until = time.monotonic() + ANSWER_TIMEOUT_S
            try:
                send(process.stdin.fileno(), request, until)
            except (OSError, TimeoutError) as exc:
                # not sent (whole): no job was started; the next call starts a new server
                self._kill(f"could not take a job: {exc}")
                raise ConnectionError("the background job server could not take the job") \
                    from exc
            try:
                answer = receive(process.stdout.fileno(), until)
            except (OSError, TimeoutError) as exc:
                self._kill(f"no answer: {exc}")
                raise ConnectionError("the background job server did not answer") from exc
            if answer is None:
                self._kill("it closed its pipe")
                raise ConnectionError("the background job server exited")
            if isinstance(answer, str):
                raise RuntimeError(f"the background job server could not start the job: "
                                   f"{answer}")
            return int(answer)

    def _kill(self, why: str) -> None:
        if self._process is not None:
            log.warning("background job server (pid %s): %s", self._process.pid, why)
            self._process.kill()
            self._process.wait()

    def _close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def stop(self, timeout_s: float = 10) -> None:
        """Close the server's input (it kills its running jobs and exits); kill it if it
        has not exited within `timeout_s`."""
        with self._lock:
            process = self._process
            self._close()
            self._started_at = float("-inf")
            if process is None:
                return
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def is_job_of_a_job_server(pid: int) -> bool:
    """Whether `pid` is a child of a job server (any worker's: Dash may poll a job on another
    worker than the one that started it)."""
    try:
        parent = psutil.Process(int(pid)).parent()
        return parent is not None and SERVER_MODULE in " ".join(parent.cmdline())
    except (psutil.Error, ValueError):
        return False


class JobServerManager(dash.DiskcacheManager):
    """DiskcacheManager whose jobs run in children of a job server (see the module docstring).
    `config` is the web worker's Config; `current_config()` its configuration at the moment of
    a call (the tests point one server at a new Config per test)."""

    def __init__(self, cache, config, current_config=None, **kwargs):
        super().__init__(cache, **kwargs)
        self.current_config = current_config or (lambda: config)
        self.job_patches: list[tuple[str, str, object]] = []
        self.server = JobServer(config, str(self.handle.directory))

    def warm(self) -> None:
        """Start the job server now (it builds the app), so the first job does not wait."""
        if not IN_JOB_SERVER:
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

    def job_running(self, job):
        if job is None or not is_job_of_a_job_server(job):   # ended (a reaped pid is reused)
            return False
        try:
            return super().job_running(job)
        except psutil.NoSuchProcess:              # it ended (and was reaped) meanwhile
            return False

    def terminate_job(self, job):
        if job is None or not is_job_of_a_job_server(job):
            return
        try:
            super().terminate_job(job)
        except psutil.NoSuchProcess:
            pass

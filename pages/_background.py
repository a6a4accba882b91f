"""The process that runs a Dash background callback on one machine (no Redis).

Dash's DiskcacheManager forks one ordinary (non-daemonic) process per call. When such a
child hangs (a thread pool or lock that did not survive the fork), two things go wrong: the
user's page waits for ever, and the web worker that forked it cannot exit, because Python
joins every non-daemonic child at exit (a gunicorn worker restart, or a test run, then hangs
until something kills it).

`BoundedDiskcacheManager` forks the same job, but daemonic (the worker's exit ends it) and
with a deadline: the kernel ends the child after `deadline_s` seconds (SIGALRM with its
default action, so it fires even inside C code that never returns to Python). Dash then sees
a job that ended without a result and stops the callback's "running" state.

Not faulthandler's watchdog: a child forked while the parent's watchdog was armed (pytest's
faulthandler_timeout, for one) inherits its locks held and hangs for ever in
dump_traceback_later (seen with gdb)."""
from __future__ import annotations

import signal

import dash

DEADLINE_S = 600


def _bounded(job_fn, deadline_s: int):
    def run(*args):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)   # not the parent's handler (pytest's)
        signal.alarm(max(1, int(deadline_s)))
        return job_fn(*args)
    return run


class BoundedDiskcacheManager(dash.DiskcacheManager):
    def __init__(self, cache, deadline_s: int = DEADLINE_S, **kwargs):
        super().__init__(cache, **kwargs)
        self.deadline_s = deadline_s

    def call_job_fn(self, key, job_fn, args, context):
        from multiprocess import Process
        process = Process(target=_bounded(job_fn, self.deadline_s),
                          args=(key, self._make_progress_key(key), args, context), daemon=True)
        process.start()
        return process.pid

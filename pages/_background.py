"""The process that runs a Dash background callback on one machine (no Redis).

Dash's DiskcacheManager forks one ordinary (non-daemonic) process per call. When such a
child hangs (a thread pool or lock that did not survive the fork), two things go wrong: the
user's page waits for ever, and the web worker that forked it cannot exit, because Python
joins every non-daemonic child at exit (a gunicorn worker restart, or a test run, then hangs
until something kills it).

`BoundedDiskcacheManager` forks the same job, but daemonic (the worker's exit ends it) and
with a deadline: after `deadline_s` seconds faulthandler's watchdog (a C thread, so it fires
even while the child is stuck in C code that never returns to Python) writes the stacks of
all its threads to the log and ends it. Dash then sees a job that ended without a result
and stops the callback's "running" state."""
from __future__ import annotations

import faulthandler
import sys

import dash

DEADLINE_S = 600


def _bounded(job_fn, deadline_s: int):
    def run(*args):
        faulthandler.dump_traceback_later(max(1, int(deadline_s)), exit=True,
                                          file=sys.__stderr__)
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

"""Background callbacks run in children of a job server with one thread, never in a fork of
the threaded web process (pages._background): the child sees the current configuration and
the patches sent with the job; a dead server is replaced; results reach the manager's cache;
the deadline ends a hung job; the worker's exit ends its jobs; only a job is ever killed."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
from types import SimpleNamespace

import diskcache
import psutil
import pytest
from dash.background_callback.managers import BaseBackgroundCallbackManager

from pages import _annotate_review
from pages import _background as background
from pages._background import JobServerManager, is_job_of_a_job_server


def where_it_ran(server, token, cookies, fn, config, store, image_id):
    """Stands in for app.background.run_as in the child: says where the job ran."""
    return SimpleNamespace(rev={"pid": os.getpid(), "ppid": os.getppid(),
                                "data_dir": str(config.data_dir), "image": image_id}), None


def sleeps(server, token, cookies, fn, config, store, image_id):
    time.sleep(60)
    return SimpleNamespace(rev=0), None


def score_suggestion_key() -> str:
    return next(key for key, fn, _progress in BaseBackgroundCallbackManager.functions
                if fn.__name__ == "score_suggestion")


def run_job(manager, key: str, image_id: int = 7) -> int:
    return manager.call_job_fn(key, manager.func_registry[score_suggestion_key()],
                               [{"image": image_id}, {"id": image_id, "token": "t"}],
                               {"cookies": {}})


def wait_result(manager, key: str, pid: int, timeout_s: float = 60):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if manager.result_ready(key):
            return manager.get_result(key, pid)
        if not manager.job_running(pid):
            time.sleep(0.5)                     # the result is written just before the end
            return manager.get_result(key, pid) if manager.result_ready(key) else None
        time.sleep(0.1)
    raise AssertionError(f"job {pid} still running after {timeout_s} s")


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_a_job_is_forked_by_the_one_thread_job_server_with_the_current_config(
        server, dash_app, config, patch_jobs):
    manager = dash_app._background_manager
    assert isinstance(manager, JobServerManager)
    patch_jobs(_annotate_review, "run_as", where_it_ran)
    busy = threading.Event()
    worker = threading.Thread(target=busy.wait, daemon=True)   # this process has threads
    worker.start()
    try:
        key = f"test-job-{time.time_ns()}"
        pid = run_job(manager, key, image_id=11)
        result = wait_result(manager, key, pid)
    finally:
        busy.set()
    job_server = manager.server.pid
    assert result == {"rev": {"pid": pid, "ppid": job_server,
                              "data_dir": str(config.data_dir), "image": 11}}
    assert job_server != os.getpid()
    assert threads_of(job_server) == 1


def test_a_dead_job_server_is_replaced(server, dash_app, patch_jobs, monkeypatch):
    monkeypatch.setattr(background, "RESTART_EVERY_S", 0)
    manager = dash_app._background_manager
    patch_jobs(_annotate_review, "run_as", where_it_ran)
    manager.server.ensure_started()
    old = manager.server._process
    old.kill()
    old.wait()
    key = f"test-job-{time.time_ns()}"
    pid = run_job(manager, key)
    result = wait_result(manager, key, pid)
    assert result["rev"]["ppid"] == manager.server.pid != old.pid


def test_a_server_that_keeps_dying_is_not_restarted_at_every_call(server, dash_app,
                                                                  monkeypatch):
    monkeypatch.setattr(background, "RESTART_EVERY_S", 3600)
    manager = dash_app._background_manager
    manager.server.ensure_started()
    manager.server._started_at = time.monotonic()      # as if it had only just started
    old = manager.server._process
    old.kill()
    old.wait()
    for _ in range(2):                                   # refused each time, none started
        with pytest.raises(RuntimeError, match="soon after it started"):
            run_job(manager, f"test-job-{time.time_ns()}")
        assert manager.server.pid is None
    manager.server.stop()                                # a stop allows a start at once
    manager.server.ensure_started()
    assert manager.server.pid not in (None, old.pid)


@pytest.fixture
def own_manager(server, tmp_path):
    """A second manager (and job server) on its own cache, whose jobs get a 2 s deadline (the
    configuration's own floor is 10 s) and the stand-ins in `patches`."""
    config = server.extensions["cellloop"].config
    short = dataclasses.replace(config, background_deadline_s=2)
    manager = JobServerManager(diskcache.Cache(str(tmp_path / "cache")), config,
                               current_config=lambda: short)
    yield manager
    manager.server.stop()
    BaseBackgroundCallbackManager.managers.remove(manager)


@pytest.mark.timeout(180)
def test_results_reach_the_managers_cache_and_the_deadline_ends_a_hung_job(own_manager):
    own_manager.job_patches = [("pages._annotate_review", "run_as", where_it_ran)]
    key = f"test-job-{time.time_ns()}"
    pid = run_job(own_manager, key, image_id=5)
    assert wait_result(own_manager, key, pid)["rev"]["image"] == 5
    own_manager.job_patches = [("pages._annotate_review", "run_as", sleeps)]
    key = f"test-job-{time.time_ns()}"
    started = time.monotonic()
    pid = run_job(own_manager, key)
    assert own_manager.job_running(pid)
    assert wait_result(own_manager, key, pid, timeout_s=50) is None
    assert 2 <= time.monotonic() - started < 40


@pytest.mark.timeout(180)
def test_a_workers_exit_ends_its_running_jobs(own_manager):
    own_manager.job_patches = [("pages._annotate_review", "run_as", sleeps)]
    pid = run_job(own_manager, f"test-job-{time.time_ns()}")
    job = psutil.Process(pid)
    assert job.is_running() and is_job_of_a_job_server(pid)
    own_manager.server.stop()            # what the worker's exit does: its pipe closes
    job.wait(timeout=15)                 # psutil.TimeoutExpired: the job outlived the worker
    assert not own_manager.job_running(pid)


def test_only_a_job_servers_child_is_killed(dash_app):
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert not is_job_of_a_job_server(other.pid)
        dash_app._background_manager.terminate_job(other.pid)
        time.sleep(0.5)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()

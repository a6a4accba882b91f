"""A background callback's process (pages._background): daemonic, so a worker's exit never
waits on it, and ended by the kernel at its deadline even when it hangs in code that never
returns to Python."""
import time

import diskcache
import psutil

from pages._background import BoundedDiskcacheManager


def hang(*_args):
    while True:           # stands for a child stuck in a lock that did not survive the fork
        time.sleep(0.05)


def finish(result_key, _progress_key, args, _context):
    time.sleep(1)
    cache = diskcache.Cache(args[0])
    cache.set(result_key, "done")


def test_a_hung_job_is_ended_at_its_deadline(tmp_path):
    manager = BoundedDiskcacheManager(diskcache.Cache(str(tmp_path)), deadline_s=1)
    pid = manager.call_job_fn("key", hang, (), {})
    assert manager.job_running(pid)
    child = psutil.Process(pid)
    child.wait(timeout=15)                 # psutil.TimeoutExpired here means no deadline
    assert not manager.job_running(pid)


def test_a_job_is_daemonic_and_its_result_arrives(tmp_path):
    import multiprocess
    manager = BoundedDiskcacheManager(diskcache.Cache(str(tmp_path / "c")), deadline_s=30)
    pid = manager.call_job_fn("key2", finish, (str(tmp_path / "c"),), {})
    children = {p.pid: p for p in multiprocess.active_children()}
    assert children[pid].daemon
    psutil.Process(pid).wait(timeout=15)
    assert diskcache.Cache(str(tmp_path / "c")).get("key2") == "done"

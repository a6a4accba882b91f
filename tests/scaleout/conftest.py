"""Fixtures of the scaleout tier: real PostgreSQL, Redis and S3 (moto) servers on loopback in
a temporary folder (`servers.py`), and CellLoop started on them as run.sh starts it
(`tests/live/harness.py`): gunicorn with two web workers and a Celery worker per queue.

The tier skips, saying what is missing, only when the servers are not installed and we are
not root; as root (CI, `.ci/run`), test.sh installs postgresql and redis-server with apt-get
first, so a missing server there is a failure, not a skip."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.live.harness import LiveApp
from tests.scaleout import servers


class ScaleoutApp(LiveApp):
    """LiveApp whose database is PostgreSQL: `query` speaks psycopg (same `?` parameters)."""

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg
        url = self.env["DATABASE_URL"].replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """{"DATABASE_URL", "REDIS_URL", "STORAGE_URL", "AWS_..."}: the environment of an app on
    fresh PostgreSQL, Redis and S3 servers (stopped at the end of the session)."""
    absent = servers.missing()
    if absent:
        reason = ("the scaleout tier needs " + ", ".join(absent) + " (./test.sh installs "
                  "postgresql and redis-server with apt-get when run as root; "
                  "pip install -r requirements.txt gives the rest)")
        if os.geteuid() != 0:
            pytest.skip(reason)
        pytest.fail(reason)
    folder = tmp_path_factory.mktemp("servers")
    stack: dict = {"_redis_dir": folder / "redis"}
    try:
        stack["_pg"] = pg = servers.start_postgres()
        stack["_redis"] = redis = servers.start_redis(folder / "redis")
        stack["_s3"] = s3 = servers.start_s3(folder / "s3")
        stack.update({"DATABASE_URL": pg.url, "REDIS_URL": redis.url, "STORAGE_URL": s3.url,
                      **s3.extra["env"]})
        yield stack
    finally:
        for name in ("_s3", "_redis", "_pg"):      # a test may have restarted one
            if name in stack:
                stack[name].stop()


def restart_redis(stack: dict, down_s: float = 2.0) -> None:
    """kill -9 the Redis server, wait `down_s`, start a new one on the same port (empty: it
    keeps nothing on disk, as a cache server restarted without persistence)."""
    import signal
    import time
    old = stack["_redis"]
    os.killpg(old.extra["proc"].pid, signal.SIGKILL)
    old.extra["proc"].wait(timeout=10)
    time.sleep(down_s)
    stack["_redis"] = servers.start_redis(stack["_redis_dir"], port=old.extra["port"])


def new_database(stack: dict) -> str:
    """The URL of a new, empty database on the stack's PostgreSQL server."""
    import secrets

    import psycopg
    name = f"db_{secrets.token_hex(4)}"
    server = stack["DATABASE_URL"].replace("+psycopg", "").rsplit("/", 1)[0]
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return stack["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name


def make_site(stack: dict, folder, project: str) -> ScaleoutApp:
    """CellLoop on the stack as run.sh starts it: two gunicorn workers, a worker on each
    queue (gpu; cpu, with a data directory of its own, as on another host) and on the ui
    queue; accounts boss (admin, owner of `project`), anna and
    ben (annotators). Its own database on the server, its own prefix in the bucket."""
    app = ScaleoutApp(folder, web_workers=2,
                      extra_env={**app_env(stack), "SECRET_KEY": "scaleout-secret-key-0123456789",
                                 "LOGIN_MAX_FAILURES": "3", "DATABASE_URL": new_database(stack),
                                 "STORAGE_URL": f"{stack['STORAGE_URL']}-{Path(folder).parent.name}"})
    try:
        app.cli("init-db")
        for name in ("boss", "anna", "ben"):
            app.cli("create-user", name, *(["--admin"] if name == "boss" else []),
                    stdin=f"{name}-password-1\n")
        app.cli("create-project", project, "--owner", "boss", "--starting-model", "none")
        app.cli("add-member", project, "anna", "annotator")
        app.cli("add-member", project, "ben", "annotator")
        for queue in ("gpu", "ui"):
            app.start_worker(queue)
        # the file worker stands for another host: its own data directory, no shared disk
        # with the web workers (uploads reach it through the bucket)
        app._spawn("worker-cpu", [sys.executable, "-m", "app", "worker", "--queues", "cpu"],
                   env={"CELLLOOP_DATA_DIR": "data-cpu-host"})
        app.start_web()
    except BaseException:
        app.stop()
        raise
    return app


def app_env(stack: dict) -> dict:
    return {k: v for k, v in stack.items() if not k.startswith("_")}

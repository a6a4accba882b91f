"""Fixtures of the scaleout tier: real PostgreSQL, Redis and S3 (moto) servers on loopback in
a temporary folder (`servers.py`), and CellLoop started on them as run.sh starts it
(`tests/live/harness.py`): gunicorn with two web workers and a Celery worker per queue.

The tier skips, saying what is missing, only when the servers are not installed and we are
not root; as root (CI, `.ci/run`), test.sh installs postgresql and redis-server with apt-get
first, so a missing server there is a failure, not a skip."""
from __future__ import annotations

import os

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
    started = []
    try:
        pg = servers.start_postgres()
        started.append(pg)
        redis = servers.start_redis(folder / "redis")
        started.append(redis)
        s3 = servers.start_s3(folder / "s3")
        started.append(s3)
        yield {"DATABASE_URL": pg.url, "REDIS_URL": redis.url, "STORAGE_URL": s3.url,
               **s3.extra["env"], "_pg": pg, "_redis": redis, "_s3": s3}
    finally:
        for server in reversed(started):
            server.stop()


def app_env(stack: dict) -> dict:
    return {k: v for k, v in stack.items() if not k.startswith("_")}

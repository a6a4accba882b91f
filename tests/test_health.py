"""/healthz proves that a write could start now: while another process holds the SQLite write
lock (a stuck writer once blocked every write while /healthz said 200) it answers 503."""
import sqlite3
import time


def test_healthz_fails_fast_while_the_write_lock_is_held(server, config):
    client = server.test_client()
    assert client.get("/healthz").status_code == 200
    holder = sqlite3.connect(config.data_dir / "cellloop.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        start = time.monotonic()
        response = client.get("/healthz")
        waited = time.monotonic() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503 and "locked" in response.get_json()["database"]
    assert waited < 5
    assert client.get("/healthz").status_code == 200

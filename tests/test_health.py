import sqlite3, time
def test_health(server, config):
    c = server.test_client()
    assert c.get("/healthz").status_code == 200
    path = config.data_dir / "cellloop.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    t = time.time()
    r = c.get("/healthz")
    print(r.status_code, r.get_json(), time.time() - t)
    holder.execute("ROLLBACK")
    assert c.get("/healthz").status_code == 200

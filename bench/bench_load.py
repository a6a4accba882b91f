"""N simulated annotators against CellLoop started as run.sh starts it (gunicorn, two web
workers; `tests/live/harness.py`), on the embedded setup (SQLite, disk cache) and on the
scale-out one (PostgreSQL + Redis on loopback; `tests/scaleout/servers.py`), issue 22.

Each annotator logs in through the form and then, for `--seconds`, works through the queue
with the same callback requests the browser sends (`/_dash-update-component`):

- open:  the page router's callback for /annotate/<id> (the workspace's layout: it takes
         the image's lease and reads its draft), then the overlay PNG it shows;
- edit:  a closed polygon (the workspace's POLYGON_DONE callback: a new cell in the draft);
- save:  the Save button's callback (a new annotation version);
- next:  the Next button's callback (releases the image, picks the next one of the queue).

With `--think T` (seconds; a list runs each) an annotator pauses before each edit, save and
next for a time drawn from an exponential distribution of mean T, as a person drawing a cell
and deciding to save would, and the annotators start at random moments over the first
3 T seconds (people do not all open the workspace in the same instant); T = 0 sends the
requests back to back from the start (a closed loop: the figures are then those of a
saturated machine, not of N people). Like a browser, a client sends a request again once
when the server had closed the kept-alive connection it went out on before answering
(gunicorn closes a connection idle for 2 s; the report counts these retries).

Figures per setup, T and N: p50/p95 of each step, cycles per second, errors; then checks on
the database: every "Saved version" answer is one stored version (none lost or doubled),
versions of an image are numbered 1..k without gaps, and no image was saved by two
annotators (the queue's leases kept them apart). The load generator runs on the same
2 cores as the servers: the figures are for the whole machine under that load (the load
average is given).

    python bench/bench_load.py [--users 5,20,50] [--seconds 40] [--setups embedded,postgres]
                               [--think 0,2] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from tests.live.harness import LiveApp  # noqa: E402

PROJECT = "Load"
PASSWORD = "load-password"
STEPS = ("open", "edit", "save", "next")
SQUARE = [[20, 20], [60, 20], [60, 60], [20, 60]]


# ---------------------------------------------------------------- the app and its data
def make_images(folder: Path, n: int, side: int = 512) -> None:
    import tifffile
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        tifffile.imwrite(folder / f"img{k:04d}.tif",
                         rng.integers(100, 4000, (side, side), dtype=np.uint16))


def prepare(app: LiveApp, users: int, images: int) -> None:
    app.cli("init-db")
    app.python(
        "from app.config import Config; from app.db import Database\n"
        "from app.permissions import SYSTEM; from app.services import projects, users\n"
        "db = Database(Config.from_env().sqlalchemy_url)\n"
        "with db.session_scope() as s:\n"
        f"    boss = users.create_user(s, SYSTEM, 'boss', {PASSWORD!r}, is_admin=True)\n"
        f"    p = projects.create_project(s, SYSTEM, {PROJECT!r}, owner_id=boss.id,\n"
        "                                starting_model='none')\n"
        f"    for k in range({users}):\n"
        f"        users.create_user(s, SYSTEM, f'ann{{k:02d}}', {PASSWORD!r})\n"
        "        projects.set_member(s, SYSTEM, p.id, f'ann{k:02d}', 'annotator')\n")
    make_images(app.folder / "images", images)
    app.cli("import", PROJECT, str(app.folder / "images"), "--quiet")


# ---------------------------------------------------------------- callback requests
class Callbacks:
    """The server callbacks of the workspace, found in /_dash-dependencies by an input."""

    def __init__(self, deps: list[dict]):
        self.deps = deps

    def find(self, input_id: str, prop: str) -> dict:
        for dep in self.deps:
            if dep.get("clientside_function"):
                continue
            if any(i["id"] == input_id and i["property"] == prop for i in dep["inputs"]):
                return dep
        raise LookupError(f"no server callback on {input_id}.{prop}")

    @staticmethod
    def body(dep: dict, values: dict) -> dict:
        def items(specs):
            return [{"id": s["id"], "property": s["property"],
                     "value": values.get((s["id"], s["property"]))} for s in specs]
        outputs = []
        for part in dep["output"].strip(".").split("..."):
            ident, prop = part.rsplit(".", 1)
            outputs.append({"id": ident, "property": prop})
        inputs = items(dep["inputs"])
        return {"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
                "inputs": inputs, "state": items(dep.get("state", [])),
                "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs
                                   if i["value"] is not None]}


def find_component(tree, component_id: str):
    """The props of the component with `component_id` in a Dash layout (JSON)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and props.get("id") == component_id:
                return props
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


class Annotator(threading.Thread):
    def __init__(self, base: str, name: str, callbacks: Callbacks, start_path: str,
                 until: float, log: dict, lock: threading.Lock, think: float = 0.0):
        super().__init__(daemon=True)
        self.base, self.name, self.cb = base, name, callbacks
        self.path, self.until = start_path, until
        self.think, self.rng = think, random.Random(name)
        self.log, self.lock = log, lock
        self.session = requests.Session()
        self.finished = False

    def post(self, dep: dict, values: dict) -> dict:
        url, body = self.base + "/_dash-update-component", Callbacks.body(dep, values)
        try:
            r = self.session.post(url, json=body, timeout=120)
        except requests.ConnectionError as exc:
            # a kept-alive connection the server closed as the request went out: nothing
            # was answered, and a browser sends it again on a new connection
            if "RemoteDisconnected" not in repr(exc):
                raise
            with self.lock:
                self.log["retried"] += 1
            r = self.session.post(url, json=body, timeout=120)
        if r.status_code == 204:
            return {}
        r.raise_for_status()
        return r.json().get("response", {})

    def pause(self) -> None:
        """A person's time before the next action (none in a closed loop)."""
        if self.think > 0:
            time.sleep(min(self.rng.expovariate(1.0 / self.think),
                           max(0.0, self.until - time.time())))

    def timed(self, step: str, fn):
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:   # noqa: BLE001 - counted, the run goes on
            with self.lock:
                self.log["errors"].append(f"{self.name} {step}: {exc}"[:300])
            return None
        with self.lock:
            self.log[step].append(time.perf_counter() - t0)
        return out

    def login(self) -> None:
        page = self.session.get(self.base + "/login", timeout=60)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = self.session.post(self.base + "/login", data={
            "username": self.name, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False, timeout=60)
        if r.status_code != 302:
            raise RuntimeError(f"{self.name} could not log in ({r.status_code})")

    def open(self, path: str):
        router = self.cb.find("_pages_location", "pathname")
        out = self.post(router, {("_pages_location", "pathname"): path,
                                 ("_pages_location", "search"): ""})
        info = find_component(out, "annotate-info")
        if info is None:
            raise RuntimeError(f"no workspace at {path}")
        data = info["data"]
        state = (find_component(out, "annotate-state") or {}).get("data") or {}
        overlay = self.session.get(f"{self.base}/api/images/{data['id']}/draft.png"
                                   f"?rev={state.get('rev', 0)}", timeout=60)
        overlay.raise_for_status()
        return data, state

    def cycle(self, seq: int) -> bool:
        opened = self.timed("open", lambda: self.open(self.path))
        if opened is None:
            return False
        info, state = opened
        if not info.get("can_edit"):
            # another annotator's Next took this image first (its lease holds): move on, as
            # a person would, without editing
            with self.lock:
                self.log["leased"] += 1
            return self.move(info)
        polygon = self.cb.find("annotate-polygon-done", "data")
        self.pause()
        acked = self.timed("edit", lambda: self.post(polygon, {
            ("annotate-polygon-done", "data"): {"corners": SQUARE, "t": time.time(),
                                               "seq": seq, "cls": 0},
            ("annotate-class", "value"): 0, ("annotate-state", "data"): state,
            ("annotate-info", "data"): info}))
        if acked is None:
            return False
        save = self.cb.find("annotate-save", "n_clicks")
        self.pause()
        saved = self.timed("save", lambda: self.post(save, {
            ("annotate-save", "n_clicks"): 1, ("annotate-state", "data"): state,
            ("annotate-info", "data"): info}))
        if saved is None:
            return False
        text = json.dumps(saved)
        found = re.search(r"Saved version (\d+)", text)
        with self.lock:
            if found:
                self.log["saves"].append((info["id"], int(found.group(1)), self.name))
            else:
                self.log["errors"].append(f"{self.name} save: {text[:200]}")
        return self.move(info)

    def move(self, info: dict) -> bool:
        nxt = self.cb.find("annotate-next", "n_clicks")
        self.pause()
        moved = self.timed("next", lambda: self.post(nxt, {
            ("annotate-next", "n_clicks"): 1, ("annotate-info", "data"): info}))
        href = json.dumps(moved or {})
        target = re.search(r'"/annotate/(\d+)[?"]', href)
        if not target:
            if "No images are waiting" in href:
                self.finished = True          # the queue is empty: this annotator is done
            else:
                with self.lock:
                    self.log["errors"].append(f"{self.name} next: {href[:200]}")
            return False
        self.path = f"/annotate/{target.group(1)}"
        return True

    def run(self) -> None:
        if self.think > 0:
            time.sleep(self.rng.uniform(0, 3 * self.think))
        try:
            self.login()
        except Exception as exc:   # noqa: BLE001
            with self.lock:
                self.log["errors"].append(str(exc))
            return
        seq = 0
        while time.time() < self.until and not self.finished:
            seq += 1
            if not self.cycle(seq) and not self.finished:
                time.sleep(0.5)


# ---------------------------------------------------------------- one run
class LoadApp(LiveApp):
    """LiveApp whose `query` also speaks PostgreSQL (DATABASE_URL set)."""

    def query(self, sql: str, *params) -> list[tuple]:
        url = self.env.get("DATABASE_URL")
        if not url:
            return super().query(sql, *params)
        import psycopg
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()


def login_session(app: LiveApp) -> requests.Session:
    s = requests.Session()
    page = s.get(app.url("/login"), timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    s.post(app.url("/login"), data={"username": "boss", "password": PASSWORD,
                                    "csrf_token": token}, allow_redirects=False, timeout=30)
    return s


def check(app: LiveApp, saves: list[tuple]) -> dict:
    rows = app.query("SELECT image_id, version, author_id FROM annotation")
    authors = dict(app.query('SELECT id, username FROM "user"'))
    stored = {(i, v) for i, v, _a in rows}
    answered = {(i, v) for i, v, _n in saves}
    by_image: dict[int, list[int]] = {}
    savers: dict[int, set] = {}
    for i, v, a in rows:
        by_image.setdefault(i, []).append(v)
        savers.setdefault(i, set()).add(authors.get(a))
    gaps = [i for i, vs in by_image.items() if sorted(vs) != list(range(1, len(vs) + 1))]
    keys = [(i, v) for i, v, _a in rows]
    return {"stored": len(rows), "answered": len(answered),
            "lost": len(answered - stored), "unanswered": len(stored - answered),
            "doubled": len(keys) - len(set(keys)), "repeats": len(saves) - len(answered),
            "gaps": len(gaps), "shared": sum(1 for s in savers.values() if len(s) > 1)}


def run_one(setup: str, users: int, seconds: float, env: dict, folder: Path,
            think: float = 0.0) -> dict:
    app = LoadApp(folder, extra_env=env)
    try:
        # more images than a closed loop can annotate in `seconds` (about 18 a second here)
        prepare(app, users, images=int(max(100, seconds * 30, users * 4)))
        app.start_web()
        deps = login_session(app).get(app.url("/_dash-dependencies"), timeout=60)
        deps.raise_for_status()
        callbacks = Callbacks(deps.json())
        log = {step: [] for step in STEPS}
        log.update(errors=[], saves=[], leased=0, retried=0)
        lock = threading.Lock()
        starts = [r[0] for r in app.query("SELECT id FROM image ORDER BY id")][:users]
        until = time.time() + seconds
        load0 = os.getloadavg()
        team = [Annotator(app.base, f"ann{k:02d}", callbacks, f"/annotate/{starts[k]}",
                          until, log, lock, think) for k in range(users)]
        t0 = time.perf_counter()
        for a in team:
            a.start()
        for a in team:
            a.join(timeout=seconds + 300)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        result = {"setup": setup, "users": users, "think": think, "wall": wall,
                  "load": (load0, load1),
                  "errors": log["errors"], "leased": log["leased"], "retried": log["retried"],
                  "check": check(app, log["saves"])}
        for step in STEPS:
            times = sorted(log[step])
            result[step] = (len(times), _pct(times, 50), _pct(times, 95))
        result["cycles_per_s"] = len(log["saves"]) / wall
        return result
    finally:
        app.stop()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[k] * 1000


def scaleout_env(folder: Path):
    from tests.scaleout import servers
    missing = servers.missing()
    if missing:
        raise SystemExit(f"the postgres setup needs {', '.join(missing)}")
    pg = servers.start_postgres()
    redis = servers.start_redis(folder / "redis")
    return {"DATABASE_URL": pg.url, "REDIS_URL": redis.url}, [pg, redis]


def fresh_database(server_url: str, name: str) -> str:
    import psycopg
    base = server_url.replace("+psycopg", "").rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def report(results: list[dict], seconds: float) -> str:
    lines = [f"Each annotator repeats open → edit (one polygon) → save → next for {seconds:g} s "
             "after logging in; client threads on the same 2 cores as gunicorn (2 web "
             "workers × 4 threads), its database and Redis. *Think*: the mean pause (s, "
             "exponential) before each edit, save and next; 0 = requests back to back (a "
             "closed loop, which saturates the machine at any N). Times in ms (p50 / p95); "
             "load average (1 min) before → after.", "",
             "| setup | think | annotators | cycles/s | open | edit | save | next | errors | "
             "sent again | leased to another | versions stored / answered | lost · "
             "unanswered · doubled · gaps · shared | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["check"]

        def cell(step):
            n, p50, p95 = r[step]
            return f"{p50:.0f} / {p95:.0f}" if n else "-"
        lines.append(
            f"| {r['setup']} | {r['think']:g} | {r['users']} | {r['cycles_per_s']:.2f} | "
            f"{cell('open')} | "
            f"{cell('edit')} | {cell('save')} | {cell('next')} | {len(r['errors'])} | "
            f"{r['retried']} | "
            f"{r['leased']} | {c['stored']} / {c['answered']} | {c['lost']} · "
            f"{c['unanswered']} · {c['doubled']} · {c['gaps']} · {c['shared']} | "
            f"{r['load'][0][0]:.1f} → {r['load'][1][0]:.1f} |")
    lines += ["", "Checks on the database after each run: *lost* = a save answered "
              "\"Saved version k\" that is not stored; *unanswered* = stored versions no answer "
              "named; *doubled* = two rows with one (image, version); *gaps* = images whose "
              "versions are not 1..k; *shared* = images saved by two annotators (a lease not "
              "honoured). *Leased to another*: the image an annotator was sent to was held by "
              "another's lease (the workspace opened read-only; the annotator moved on). "
              "*Sent again*: requests a client sent a second time because the server had "
              "closed the idle connection as it went out (as a browser does).",
              "", "Goal at 20 annotators: p95 save ≤ 300 ms, p95 open ≤ 1 s, nothing lost or "
              "doubled, every lease honoured."]
    errors = [e for r in results for e in r["errors"]][:8]
    if errors:
        lines += ["", "First errors:", ""] + [f"- `{e}`" for e in errors]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", default="5,20,50")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--setups", default="embedded,postgres")
    ap.add_argument("--think", default="0",
                    help="mean pause before each edit, save and next (s); a list runs each")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="cellloop-load-") as tmp:
        root = Path(tmp)
        servers = []
        try:
            for setup in args.setups.split(","):
                env = {}
                if setup == "postgres":
                    env, servers = scaleout_env(root / "servers")
                runs = [(float(t), int(u)) for t in args.think.split(",")
                        for u in args.users.split(",")]
                for think, n in runs:
                    run_env = dict(env)
                    if setup == "postgres":
                        run_env["DATABASE_URL"] = fresh_database(env["DATABASE_URL"],
                                                                 f"load_{n}_{int(time.time())}")
                    r = run_one(setup, n, args.seconds, run_env,
                                root / f"{setup}-{think:g}-{n}", think)
                    print(json.dumps({k: v for k, v in r.items() if k != "errors"},
                                     default=str), f"errors={len(r['errors'])}", flush=True)
                    results.append(r)
        finally:
            for server in servers:
                server.stop()
    body = report(results, args.seconds)
    if args.dry_run:
        print(body)
    else:
        write_section("load", "Simulated annotators: embedded vs PostgreSQL + Redis (issue 22)",
                      body)


if __name__ == "__main__":
    main()

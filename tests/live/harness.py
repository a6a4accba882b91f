"""CellLoop started the way `run.sh` starts it, for the fault and journey tiers: a fresh
*relative* data directory (the processes run in a temporary folder, CELLLOOP_DATA_DIR=data),
`init-db`, the demo project, one Celery worker per queue (gpu, cpu) and gunicorn with two web
workers, on a free loopback port. Tests talk to it over HTTP (requests) and through a real
headless Chromium (selenium), and may kill its processes."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
DEMO = {"admin": "cellloop-admin", "anna": "cellloop-anna", "rita": "cellloop-rita",
        "victor": "cellloop-victor"}
DEMO_PROJECT = "Demo: DSB 2018 nuclei"
TINY_TRAINING = {"width": 8, "depth": 2, "patch": 64, "batch": 4, "steps_per_epoch": 10,
                 "epochs": 2, "patience": 20}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveApp:
    def __init__(self, folder: Path, web_workers: int = 2, extra_env: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CELLLOOP_DATA_DIR": "data", "PORT": str(self.port),
                    "HOST": "127.0.0.1", "WEB_CONCURRENCY": str(web_workers),
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
                    **(extra_env or {})}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    # ------------------------------------------------------------------ processes
    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([PYTHON, "-m", "app", *args], cwd=self.folder,
                              env={**self.env, **(env or {})}, input=stdin, text=True,
                              capture_output=True, timeout=timeout)
        assert done.returncode == 0, f"app {' '.join(args)}: {done.stderr[-3000:]}"
        return done

    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(cmd, cwd=self.folder, env={**self.env, **(env or {})},
                                stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_worker(self, queue: str, name: str | None = None) -> subprocess.Popen:
        return self._spawn(name or f"worker-{queue}",
                           [PYTHON, "-m", "app", "worker", "--queues", queue])

    def start_web(self, env: dict | None = None) -> None:
        self._spawn("web", [GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"),
                            "app.wsgi:application"], env)
        self.wait_ready()

    def start(self, demo: bool = True, workers: tuple[str, ...] = ("gpu", "cpu")) -> "LiveApp":
        self.cli("init-db")
        if demo:
            self.cli("demo")
        for queue in workers:
            self.start_worker(queue)
        self.start_web()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.procs["web"].poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail('web')}")
            try:
                if requests.get(self.url("/healthz"), timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the app did not answer /healthz: {self.log_tail('web')}")

    def stop_process(self, name: str, sig=signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def stop(self) -> None:
        for name in list(self.procs):
            self.stop_process(name)

    def log_tail(self, name: str, n: int = 4000) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-n:] if path and path.exists() else ""

    def web_worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.procs["web"].pid).children()]

    def worker_children(self, name: str) -> list[int]:
        """The pool processes of a Celery worker (they run the jobs)."""
        return [c.pid for c in psutil.Process(self.procs[name].pid).children(recursive=True)]

    # ------------------------------------------------------------------ talking to it
    def url(self, path: str) -> str:
        return self.base + path

    def login(self, username: str, password: str | None = None) -> requests.Session:
        """A requests session logged in through the form, as a browser does."""
        s = requests.Session()
        page = s.get(self.url("/login"), timeout=30)
        token = CSRF_RE.search(page.text).group(1)
        r = s.post(self.url("/login"), data={"username": username, "csrf_token": token,
                                            "password": password or DEMO[username]},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 302, (r.status_code, r.text[:500])
        return s

    def python(self, code: str, timeout: float = 300) -> str:
        """Run Python in the app's environment (same data directory); returns stdout."""
        done = subprocess.run([PYTHON, "-c", code], cwd=self.folder, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def query(self, sql: str, *params) -> list[tuple]:
        import sqlite3
        con = sqlite3.connect(self.data_dir / "cellloop.sqlite", timeout=30)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def job(self, job_id: int) -> dict:
        rows = self.query("SELECT state, error, message, owner, progress FROM job WHERE id=?",
                          job_id)
        state, error, message, owner, progress = rows[0]
        return {"state": state, "error": error, "message": message, "owner": owner,
                "progress": progress}

    def wait_job(self, job_id: int, states=("done", "failed", "cancelled"), timeout=300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {self.job(job_id)} after {timeout} s; "
                             f"workers: {self.log_tail('worker-gpu')}")

    def project_id(self, name: str = DEMO_PROJECT) -> int:
        return self.query("SELECT id FROM project WHERE name=?", name)[0][0]

    def set_training(self, settings: dict, project: str = DEMO_PROJECT) -> None:
        self.python(
            "from app.config import Config; from app.db import Database;"
            "from app.permissions import SYSTEM; from app.services import projects;"
            "c = Config.from_env(); db = Database(c.sqlalchemy_url)\n"
            "with db.session_scope() as s:\n"
            f"    projects.set_training_settings(s, SYSTEM, projects.find_project_id(s, {project!r}),"
            f" {json.dumps(settings)})\n")

    def submit(self, kind: str, params: dict | None = None, username: str = "admin",
               project: str = DEMO_PROJECT) -> int:
        """Submit a job as `username` through the same service and sender as the pages."""
        out = self.python(
            "from app.config import Config; from app.deps import Deps;"
            "from app.db import Database; from app.services import jobs, projects, users;"
            "c = Config.from_env(); db = Database(c.sqlalchemy_url)\n"
            "with db.session_scope() as s:\n"
            f"    u = users.find_user(s, {username!r})\n"
            f"    info = jobs.submit_job(s, u, projects.find_project_id(s, {project!r}), {kind!r},"
            f" {json.dumps(params or {})}, Deps(c, db).enqueue)\n"
            "print(info.id)\n")
        return int(out.strip().splitlines()[-1])


def chrome(width: int = 1600, height: int = 1000, downloads: Path | None = None):
    """Headless Chromium as root on a closed network (Debian's chromium and chromedriver)."""
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    return webdriver.Chrome(options=options)


def browser_login(driver, app: LiveApp, username: str, password: str | None = None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(app.url("/login"))
    WebDriverWait(driver, 30).until(EC.presence_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password or DEMO[username])
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)


def mapped_libraries(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if "/" in line.split()[-1]}

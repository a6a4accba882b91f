"""Decompression bombs uploaded through the browser's path against the app started as run.sh
starts it: `python -m app init-db`, a Celery worker (`python -m app worker`) and gunicorn
with 2 workers (gunicorn.conf.py), on a fresh relative data directory (CELLLOOP_DATA_DIR).

A project owner logs in (login form with its CSRF token) and each file is sent as the
browser sends it: the Dash upload callback (POST /_dash-update-component, the file as a
base64 data URL); a file handed to the import job is followed with the page's job-polling
callback. Measured per file: time until the page has its answer (the rejection, or the
job's result), the peak RSS of the gunicorn worker processes and of the Celery worker's
process tree (psutil, sampled every 10 ms), and what the page was told.

Bombs: a 1 MB zlib TIFF declaring 16384 x 16384 float32 (1 GiB decoded), a zip of 1 GiB of
zeros, a PNG declaring 50000 x 50000 (a complete zlib stream of 2.5 GB of zeros), a .npy
header declaring 16000 x 16000 float32 (977 MiB). Control: an 8192 x 8192 float32 zlib TIFF
(256 MiB decoded, under the limit), which must be imported by the job, not the web worker.

    python bench/bench_bombs.py
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._report import write_section  # noqa: E402
from tests.storage import bombs  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
OWNER, PASSWORD = "bomb-owner", "bench-bombs-password-1"
LIMIT_MB = 500
MB = 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_files(folder: Path) -> list[tuple[str, str, bytes]]:
    """(label, file name, bytes) of each upload."""
    zip_path = bombs.zeros_zip(folder / "zeros.zip", {"zeros.tif": 1 << 30})
    return [
        ("zlib TIFF, 16384² float32 (1 GiB decoded)", "bomb.tif",
         bombs.zlib_tiff(16384, np.float32)),
        ("zip of 1 GiB of zeros", "zeros.zip", zip_path.read_bytes()),
        ("PNG declaring 50000² (2.5 GB of zeros)", "huge.png", bombs.png(50000, 50000)),
        ("NPY header declaring 16000² float32 (977 MiB)", "huge.npy",
         bombs.npy_header((16000, 16000), np.float32)),
        ("control: zlib TIFF 8192² float32 (256 MiB, allowed)", "big.tif",
         bombs.zlib_tiff(8192, np.float32)),
    ]


class Sampler(threading.Thread):
    """Peak RSS of the gunicorn workers and of the Celery worker's process tree."""

    def __init__(self, gunicorn: psutil.Process, celery: psutil.Process):
        super().__init__(daemon=True)
        self.gunicorn, self.celery = gunicorn, celery
        self.web_peak = self.job_peak = 0
        self.stop = threading.Event()

    @staticmethod
    def _rss(procs) -> list[int]:
        out = []
        for p in procs:
            try:
                out.append(p.memory_info().rss)
            except psutil.Error:
                pass
        return out

    def web_workers(self) -> list[psutil.Process]:
        return self.gunicorn.children(recursive=True)

    def reset(self) -> None:
        self.web_peak = max(self._rss(self.web_workers()), default=0)
        self.job_peak = sum(self._rss([self.celery] + self.celery.children(recursive=True)))

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.web_peak = max([self.web_peak] + self._rss(self.web_workers()))
            tree = [self.celery] + self.celery.children(recursive=True)
            self.job_peak = max(self.job_peak, sum(self._rss(tree)))


class Browser:
    """The requests a browser makes: login form, Dash callbacks."""

    def __init__(self, base: str):
        self.base, self.http = base, requests.Session()
        self.deps: list[dict] = []

    def login(self) -> None:
        page = self.http.get(f"{self.base}/login", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        form = {"username": OWNER, "password": PASSWORD}
        if token:
            form["csrf_token"] = token.group(1)
        r = self.http.post(f"{self.base}/login", data=form, timeout=60)
        if r.status_code != 200 or "/login" in r.url:
            raise SystemExit(f"login failed: {r.status_code} {r.url}")
        self.deps = self.http.get(f"{self.base}/_dash-dependencies", timeout=30).json()

    def callback(self, input_id: str, prop: str, values: dict, state: dict) -> dict:
        """Fire the callback triggered by `input_id.prop`, as dash-renderer does."""
        dep = next(d for d in self.deps
                   if any(i["id"] == input_id and i["property"] == prop for i in d["inputs"]))
        outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
                   for o in dep["output"].strip(".").split("...")]
        body = {"output": dep["output"], "outputs": outputs,
                "inputs": [{**i, "value": values.get(i["id"])} for i in dep["inputs"]],
                "state": [{**s, "value": state.get(s["id"])} for s in dep["state"]],
                "changedPropIds": [f"{input_id}.{prop}"]}
        r = self.http.post(f"{self.base}/_dash-update-component", json=body, timeout=300)
        if r.status_code == 204:
            return {}
        r.raise_for_status()
        return r.json().get("response", {})


def text_of(component) -> str:
    """The visible text of a Dash component tree (JSON)."""
    if isinstance(component, str):
        return component
    if isinstance(component, list):
        return " ".join(text_of(c) for c in component)
    if isinstance(component, dict):
        return text_of(component.get("props", {}).get("children", ""))
    return "" if component is None else str(component)


def upload(browser: Browser, project_id: int, name: str, data: bytes
           ) -> tuple[str, str]:
    """(outcome, message the page shows) once the page has the answer."""
    url = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    resp = browser.callback("images-upload", "contents",
                            {"images-upload": [url]},
                            {"images-upload": [name], "images-project-id": project_id,
                             "images-refresh": 0})
    job_id = resp.get("images-job", {}).get("data")
    shown = text_of(resp.get("images-upload-result", {}).get("children"))
    if job_id is None:
        done = re.search(r"(\d+) imported", shown)
        return ("imported inline" if done and int(done.group(1)) else
                "refused in the web worker"), shown
    n = 0
    while True:
        n += 1
        time.sleep(0.2)
        resp = browser.callback("images-job-poll", "n_intervals",
                                {"images-job-poll": n},
                                {"images-job": job_id, "images-refresh": 0})
        text = text_of(resp.get("images-job-status", {}).get("children"))
        done = re.search(r"(\d+) imported, (\d+) duplicates?, (\d+) rejected", text)
        if done:
            return ("imported by the job" if int(done.group(1)) else "refused by the job"), text
        if "failed" in text.lower() or "cancelled" in text.lower():
            return "job failed", text


def run_cli(env: dict, *args: str, stdin: str | None = None) -> None:
    subprocess.run([PY, "-m", "app", *args], cwd=ROOT, env=env, input=stdin, text=True,
                   check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    (ROOT / "tmp").mkdir(exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-bombs-", dir=ROOT / "tmp"))
    files_dir = Path(tempfile.mkdtemp(prefix="bench-bombs-files-"))
    port = free_port()
    env = {**os.environ, "CELLLOOP_DATA_DIR": str(data_dir.relative_to(ROOT)),
           "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2",
           "CELLLOOP_ENV": "development", "LOG_LEVEL": "WARNING"}
    procs: list[subprocess.Popen] = []
    try:
        files = make_files(files_dir)
        run_cli(env, "init-db")
        run_cli(env, "create-user", OWNER, stdin=PASSWORD + "\n")
        run_cli(env, "create-project", "Bombs", "--owner", OWNER)
        log = open(data_dir / "server.log", "w")
        procs.append(subprocess.Popen([PY, "-m", "app", "worker"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        procs.append(subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py",
                                       "app.wsgi:application"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the server did not start; see " + str(data_dir / "server.log"))
        browser = Browser(base)
        browser.login()
        project_id = 1
        sampler = Sampler(psutil.Process(procs[1].pid), psutil.Process(procs[0].pid))
        time.sleep(3)                       # let the worker finish starting
        sampler.start()
        rows = []
        for label, name, data in files:
            sampler.reset()
            before_web, before_job = sampler.web_peak, sampler.job_peak
            t0 = time.perf_counter()
            kind, shown = upload(browser, project_id, name, data)
            seconds = time.perf_counter() - t0
            time.sleep(0.1)
            rows.append((label, len(data), seconds, before_web, sampler.web_peak,
                         before_job, sampler.job_peak, kind, shown))
            print(f"{label}: {kind} in {seconds:.2f} s, web peak {sampler.web_peak / MB:.0f} MB "
                  f"(before {before_web / MB:.0f}), job tree peak {sampler.job_peak / MB:.0f} MB"
                  f"\n    {shown[:300]}", flush=True)
        sampler.stop.set()
        report(rows)
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(files_dir, ignore_errors=True)


def blob_timings() -> list[str]:
    """put_array / get_array of typical arrays, zstd-compressed (now) against plain .npy
    (before), on a local blob store in a temporary directory."""
    from skimage.draw import disk

    from bench._report import median_ms
    from storage.blobstore import LocalBlobStore, array_to_bytes, get_array, put_array

    rng = np.random.default_rng(0)
    side = 4096
    image = rng.normal(200, 30, (side, side)).astype(np.float32)
    labels = np.zeros((side, side), np.uint16)
    for i in range(1, 3001):
        rr, cc = disk(tuple(rng.integers(0, side, 2)), int(rng.integers(5, 20)), shape=labels.shape)
        image[rr, cc] += rng.uniform(500, 3000)
        labels[rr, cc] = i
    cases = [("4096² uint16 fluorescence-like image", np.clip(image, 0, 65535).astype(np.uint16)),
             ("4096² float32 image", image / 4000),
             ("4096² uint16 label mask, 3,000 cells", labels)]
    out = ["| array | plain .npy: size, write, read | zstd (stored now): size, write, read |",
           "|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalBlobStore(tmp)
        for label, array in cases:
            cells = []
            for compress in (False, True):
                def put(compress=compress):
                    return store.put_bytes(array_to_bytes(array, compress=compress))
                key = put()
                size = len(store.get_bytes(key))
                write = median_ms(lambda: (store.delete(key), put()), repeat=9)
                read = median_ms(lambda: get_array(store, key), repeat=9)
                cells.append(f"{size / MB:.1f} MB, {write:.0f} ms, {read:.0f} ms")
            assert np.array_equal(get_array(store, put_array(store, array)), array)
            out.append(f"| {label} ({array.nbytes / MB:.0f} MB) | {cells[0]} | {cells[1]} |")
    return out


def report(rows) -> None:
    lines = ["| upload | file size | outcome | time to answer | web worker peak RSS "
             "(before) | job worker peak RSS (before) |",
             "|---|---:|---|---:|---:|---:|"]
    worst = 0.0
    for label, size, seconds, bw, pw, bj, pj, kind, _shown in rows:
        if not label.startswith("control"):
            worst = max(worst, pw)
        size_text = f"{size / MB:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
        lines.append(f"| {label} | {size_text} | {kind} | {seconds:.2f} s | "
                     f"{pw / MB:.0f} MB ({bw / MB:.0f}) | {pj / MB:.0f} MB ({bj / MB:.0f}) |")
    messages = "\n".join(f"- {label}: “{shown.strip()[:400]}”"
                         for label, *_rest, shown in rows)
    verdict = "met" if worst < LIMIT_MB * MB else "NOT met"
    body = f"""Each bomb uploaded through the browser's path (the Dash upload callback) to the app
started as `run.sh` starts it (gunicorn, 2 workers; one Celery worker; fresh relative data
directory). Peak RSS is the largest gunicorn worker (psutil, every 10 ms, across the upload
and any job it started) and the Celery worker's whole process tree; "before" is the same
figure just before the upload. Goal: every bomb's web-worker peak under {LIMIT_MB} MB: {verdict}
(worst {worst / MB:.0f} MB). Limits at their defaults: MAX_IMAGE_BYTES 512 MiB,
MAX_IMAGE_PIXELS 2^28, MAX_ARCHIVE_BYTES 8 GiB; images declaring more than 64 MiB decoded go
to the import job.

{chr(10).join(lines)}

What the page showed:

{messages}

Image arrays are stored zstd-compressed (level 1) in the blob store since this change; plain
.npy blobs written before still read. Write (serialise + fsync'd atomic write) and read
(read + decode) on a local blob store, median of 9:

{chr(10).join(blob_timings())}
"""
    write_section("bombs", "Decompression bombs through the browser upload", body)


if __name__ == "__main__":
    main()

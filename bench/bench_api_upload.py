"""Upload throughput through the HTTP API (`cellloop_client.Client.upload_folder`, bearer
token, multipart batches of 20 files) against the CLI import (`python -m app import`) of the
same files in the same run, each into its own new project of one CellLoop started as run.sh
starts it (gunicorn with two web workers and the worker processes; `tests/live/harness.py`).

The API is timed with one client, and with two clients uploading half the files each at
once (gunicorn has two workers). The CLI time includes its process start, as in
bench_import.py.

    python bench/bench_api_upload.py [--n 1000] [--dry-run]

`--dry-run` prints the section instead of writing it into docs/benchmarks.md (for a smoke
run with a tiny --n).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from bench.bench_import import make_files  # noqa: E402
from cellloop_client import Client  # noqa: E402
from tests.live.harness import LiveApp  # noqa: E402

BATCH = 20


def upload(client: Client, project: str, folders: list[Path]) -> float:
    """Seconds to upload every folder, one client thread per folder, all at once."""
    results: list[list[dict]] = [[] for _ in folders]

    def one(k: int) -> None:
        results[k] = client.upload_folder(project, folders[k], batch_files=BATCH,
                                          progress=False)
    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(folders))]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t
    statuses = [r["status"] for rs in results for r in rs]
    if len(statuses) == 0 or set(statuses) != {"imported"}:
        raise SystemExit(f"API upload failed: {[r for rs in results for r in rs][:5]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    n = max(2, args.n - args.n % 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, halves = tmp / "files", [tmp / "half0", tmp / "half1"]
        for folder in (files, *halves):
            folder.mkdir()
        make_files(files, n)
        for k, path in enumerate(sorted(files.glob("*.tif"))):
            (halves[k % 2] / path.name).symlink_to(path)
        app = LiveApp(tmp / "site")
        try:
            app.cli("init-db")
            app.cli("create-user", "bench", "--admin", stdin="bench-password\n")
            for name in ("API-1", "API-2", "CLI"):
                app.cli("create-project", name, "--owner", "bench", "--starting-model", "none")
            app.start_worker("cpu")
            app.start_web()
            token = app.cli("create-token", "bench", "--name", "bench", "--write").stdout.strip()
            client = Client(app.base, token, timeout=600)
            one_s = upload(client, "API-1", [files])
            two_s = upload(client, "API-2", halves)
            t = time.perf_counter()
            out = app.cli("import", "CLI", str(files), "--quiet", timeout=3600).stdout
            cli_s = time.perf_counter() - t
            if "rejected 0" not in out:
                raise SystemExit(f"CLI import failed: {out[-2000:]}")
        finally:
            app.stop()
    body = f"""{n} files, 512x512 uint16 TIFF (512 KiB each), each way into a new project.

| how | wall time | throughput | vs CLI import |
|---|---|---|---|
| CLI import (`python -m app import`, process start included) | {cli_s:.1f} s | {n / cli_s:.0f} files/s | 1.00x |
| **API, one client** (`Client.upload_folder`, {BATCH} files per request) | {one_s:.1f} s | **{n / one_s:.0f} files/s** | {cli_s / one_s:.2f}x |
| API, two clients at once (half the files each) | {two_s:.1f} s | {n / two_s:.0f} files/s | {cli_s / two_s:.2f}x |

The API path decodes, checks and stores every file as the browser's upload does
(`app.services.uploads.upload`: inline for batches under 50 files and 64 MiB), in a gunicorn
web worker, and adds the HTTP transfer, multipart parsing and the token check and count.
"""
    if args.dry_run:
        print(body)
    else:
        write_section("api-upload", "API upload throughput (issue 24)", body)


if __name__ == "__main__":
    main()

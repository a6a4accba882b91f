"""Real servers for the scaleout tier, started on loopback in a temporary folder: Debian's
PostgreSQL (initdb + pg_ctl, as the `postgres` account when we run as root, since postgres
refuses to run as root), redis-server, and moto's standalone S3 server (`moto[server]`).

Each `start_*` returns a small handle with the URL the app needs and a `stop()`; `missing()`
says which binaries are absent, so the tier can skip with a reason instead of failing."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None, what: str, log: Path,
               timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port}: "
                       f"{log.read_text(errors='replace')[-3000:]}")


def pg_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def moto_server() -> list[str] | None:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe)]
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "moto.server"]


def missing() -> list[str]:
    out = []
    if pg_bin() is None:
        out.append("postgresql (initdb, pg_ctl)")
    if shutil.which("redis-server") is None:
        out.append("redis-server")
    if moto_server() is None:
        out.append("moto[server]")
    try:
        import psycopg  # noqa: F401
        import redis  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        out.append(f"python package {exc.name}")
    return out


@dataclass
class Server:
    url: str
    stop_fn: object
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        self.stop_fn()


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and uid/gid to run postgres under (root may not)."""
    if os.geteuid() != 0:
        return [], None, None
    pw = pwd.getpwnam("postgres")
    return [], pw.pw_uid, pw.pw_gid


def start_postgres(folder: Path | None = None) -> Server:
    """A fresh cluster on 127.0.0.1:<free port> with database `cellloop` (trust auth on
    loopback only). Its data lives in a temporary folder that the postgres account owns."""
    bindir = pg_bin()
    _, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="cellloop-pg-"))
    os.chmod(root, 0o755)
    data = root / "data"
    log = root / "postgres.log"
    if uid is not None:
        os.chown(root, uid, gid)

    def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
        def demote():
            if uid is not None:
                os.setgid(gid)
                os.setuid(uid)
        return subprocess.run(cmd, preexec_fn=demote, cwd=root, capture_output=True,
                              text=True, **kw)

    done = run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
    if done.returncode:
        raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
    port = free_port()
    opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{root}' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200")
    done = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                "-t", "60", "start"], timeout=90)
    if done.returncode:
        raise RuntimeError(f"pg_ctl start failed: {done.stderr[-2000:]} "
                           f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
    done = run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                "cellloop"], timeout=60)
    if done.returncode:
        raise RuntimeError(f"createdb failed: {done.stderr[-2000:]}")

    def stop() -> None:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    return Server(f"postgresql+psycopg://postgres@127.0.0.1:{port}/cellloop", stop,
                  {"port": port, "root": root, "bindir": bindir})


def _spawn(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **(env or {})}, cwd=log.parent)


def _killer(proc: subprocess.Popen, folder: Path | None = None):
    def stop() -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return stop


def start_redis(folder: Path, port: int | None = None) -> Server:
    """redis-server on 127.0.0.1 (`port`: the same one again, to restart it)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = folder / "redis.log"
    proc = _spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
                   str(folder), "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
                  log)
    _wait_port(port, proc, "redis-server", log)
    return Server(f"redis://127.0.0.1:{port}/0", _killer(proc), {"port": port, "proc": proc})


def start_s3(folder: Path, bucket: str = "cellloop") -> Server:
    """moto's S3 server on loopback with `bucket` created; `extra["env"]` is the environment
    the app's processes need (endpoint, keys, region)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "moto.log"
    proc = _spawn([*moto_server(), "-H", "127.0.0.1", "-p", str(port)], log)
    _wait_port(port, proc, "moto_server", log)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    import boto3
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_bucket(Bucket=bucket)
    return Server(f"s3://{bucket}/cellloop", _killer(proc), {"port": port, "env": env,
                                                             "proc": proc})

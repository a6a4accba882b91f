"""CLI import throughput and peak memory: `python -m app import` of N 16-bit 512x512 TIFFs.

Baseline (same run, same files): a bare loop that reads each TIFF with tifffile and writes it
back as .npy, i.e. the decoding and writing any import must do. Memory flatness: the peak RSS
of importing N/4 files vs N files.

    python bench/bench_import.py [--n 1000]
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_files(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4000, (512, 512), dtype=np.uint16)
    for i in range(n):
        img = base.copy()
        img[i % 512, :] = i  # every file differs (no duplicates)
        tifffile.imwrite(folder / f"img_{i:05d}.tif", img)


def baseline(folder: Path) -> float:
    out = tempfile.mkdtemp()
    t = time.perf_counter()
    for i, p in enumerate(sorted(folder.glob("*.tif"))):
        arr = tifffile.imread(p)
        buf = io.BytesIO()
        np.save(buf, arr[None, None])
        Path(out, f"{i}.npy").write_bytes(buf.getvalue())
    return time.perf_counter() - t


def cli_import(folder: Path, data_dir: Path) -> tuple[float, float]:
    env = {**os.environ, "CELLLOOP_DATA_DIR": str(data_dir)}
    py = sys.executable
    subprocess.run([py, "-m", "app", "init-db"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    subprocess.run([py, "-m", "app", "create-user", "bench", "--admin"], env=env, cwd=ROOT,
                   input="bench-password\n", text=True, check=True, capture_output=True)
    subprocess.run([py, "-m", "app", "create-project", "B", "--owner", "bench"], env=env,
                   cwd=ROOT, check=True, capture_output=True)
    t = time.perf_counter()
    proc = subprocess.Popen([py, "-m", "app", "import", "B", str(folder), "--quiet"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    out = proc.stdout.read().decode()
    if status != 0 or "rejected 0" not in out:
        raise SystemExit(f"import failed: {out} {proc.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024  # MiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, big = tmp / "small", tmp / "big"
        small.mkdir()
        big.mkdir()
        make_files(small, args.n // 4)
        make_files(big, args.n)
        base_s = baseline(big)
        small_s, small_mem = cli_import(small, tmp / "d1")
        big_s, big_mem = cli_import(big, tmp / "d2")
    rate = args.n / big_s
    body = f"""| measure | value |
|---|---|
| files | {args.n} x 512x512 uint16 TIFF (512 KiB each) |
| CLI import, wall time (process start included) | {big_s:.1f} s |
| **CLI import throughput** | **{rate:.0f} files/s** (goal >= 50) |
| baseline: tifffile read + .npy write only | {args.n / base_s:.0f} files/s |
| ratio import / baseline time | {big_s / base_s:.2f}x |
| peak RSS, {args.n // 4} files | {small_mem:.0f} MiB |
| peak RSS, {args.n} files | {big_mem:.0f} MiB (ratio {big_mem / small_mem:.2f}: flat means ~1) |
"""
    write_section("import", "Import (issue 3)", body)


if __name__ == "__main__":
    main()

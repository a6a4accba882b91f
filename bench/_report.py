"""Write a benchmark's results into its own section of docs/benchmarks.md."""
from __future__ import annotations

import datetime as dt
import os
import shlex
import platform
import re
import statistics
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by the script named in it; rerun the command to refresh it.
Figures are what the script measured on the machine named, ratios against a baseline
measured in the same run. Two kinds of 2-core machine appear below: AMD EPYC (AVX2 only)
and Intel Xeon (AVX-512 with AMX, native bf16). The engine CellLoop picks differs between
them (bf16 autocast on the Xeon, fp32 and ONNX Runtime on the EPYC; docs/architecture.md),
so compare figures within a section, or between sections run on the same machine.
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    for line in info.splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = set(info.split())
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx2", "AVX2")):
        if flag in flags:
            cpu += f" ({name})"
            break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, title: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    # quoted as a shell would need it (an empty argument such as --curve '' stays visible)
    command = "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    section = (f"<!-- bench:{name} -->\n## {title}\n\n"
               f"Command: `{command}`  \nRun: {dt.date.today().isoformat()} on {machine()}\n\n"
               f"{body.strip()}\n<!-- /bench:{name} -->")
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + section + "\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(section)


def timings_ms(fn, repeat: int = 7, warmups: int = 1) -> list[float]:
    """Wall times of `repeat` calls of `fn()` in milliseconds, after `warmups` calls."""
    for _ in range(warmups):
        fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def median_ms(fn, repeat: int = 7) -> float:
    """Median wall time of `fn()` in milliseconds, after one warm-up call."""
    return statistics.median(timings_ms(fn, repeat))

"""GPU check (issue 22): on a machine with CUDA, prove that the job system's gpu worker
(`python -m app worker --queues gpu`, the embedded setup: SQLite database and broker) trains,
predicts and scores on the GPU, and take GPU throughput figures beside the same machine's CPU.

    python scripts/gpu_check.py --images DIR --masks DIR --pool DIR --out OUT [--allow-cpu]

DIR holds images (PNG/TIFF) whose label images in --masks share their file stem; --pool holds
images left unannotated (predicted and scored). Writes OUT/gpu_check.json and prints a
Markdown summary. Exits 1 when a job fails or does not run where it should (CUDA, bf16).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT = "GPU check"


def cli(env: dict, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, input=stdin,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"`python -m app {' '.join(args)}` failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def wait_job(db, job_id: int, timeout: float) -> dict:
    from app.tables import Job
    t0 = time.time()
    last = ""
    while time.time() - t0 < timeout:
        with db.session_scope() as s:
            job = s.get(Job, job_id)
            state, message = job.state, job.message or ""
            if state in ("done", "failed", "cancelled"):
                return {"state": state, "result": job.result, "error": job.error,
                        "seconds": round(time.time() - t0, 1), "worker": job.worker}
        if message != last:
            print(f"  job {job_id}: {state} {message}", flush=True)
            last = message
        time.sleep(1.0)
    return {"state": "timeout", "seconds": round(time.time() - t0, 1)}


def job_system(args, work: Path) -> dict:
    """Import, train, predict and score through the gpu worker; returns what each job said."""
    env = {**os.environ, "CELLLOOP_DATA_DIR": str(work / "data"), "LOG_LEVEL": "INFO",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))}
    os.environ.update({k: env[k] for k in ("CELLLOOP_DATA_DIR", "LOG_LEVEL")})
    cli(env, "init-db")
    cli(env, "create-user", "boss", "--admin", stdin="gpu-check-password\n")
    cli(env, "create-project", PROJECT, "--owner", "boss")
    print(cli(env, "import", PROJECT, args.images, "--masks", args.masks, "--quiet").strip())
    print(cli(env, "import", PROJECT, args.pool, "--quiet").strip())

    from app.config import Config
    from app.db import Database
    from app.deps import Deps
    from app.permissions import SYSTEM
    from app.services import (learning_loop, model_versions, prediction, projects, scoring,
                              training)
    from app.deps import open_store
    config = Config.from_env()
    db = Database(config.sqlalchemy_url)
    deps = Deps(config, db)
    log = open(work / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--queues", "gpu",
                               "--concurrency", "1"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    out: dict = {}
    try:
        with db.session_scope() as s:
            pid = projects.find_project_id(s, PROJECT)
            projects.set_training_settings(s, SYSTEM, pid, {"epochs": args.epochs})
            train = training.start_training(s, SYSTEM, pid, {"fine_tune": True},
                                            deps.enqueue).id
        out["train"] = wait_job(db, train, args.job_timeout)
        from app.tables import ModelVersion
        with db.session_scope() as s:
            # the version this training made (activated or not: the built-in model it
            # started from stays active when it does better on the validation images)
            mv = s.get(ModelVersion, (out["train"].get("result") or {}).get(
                "model_version_id", 0))
            if mv is not None:
                out["train"]["activated"] = mv.is_active
                model = model_versions.load(open_store(config), mv)
                out["train"]["training_engine"] = model.meta.get("training_engine")
                out["train"]["metrics"] = mv.metrics
            pool = scoring.pool_ids(s, pid)
            predict = prediction.start_project_prediction(s, SYSTEM, pid, deps.enqueue,
                                                          image_ids=pool).id
        out["predict"] = wait_job(db, predict, args.job_timeout)
        with db.session_scope() as s:
            # an MC-dropout strategy, which runs the model (the default, stratified-cheap, does not)
            learning_loop.set_settings(s, SYSTEM, pid, {"strategy": "bald"})
            score = scoring.start_scoring(s, SYSTEM, pid, deps.enqueue).id
        out["score"] = wait_job(db, score, args.job_timeout)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()
    tail = (work / "worker.log").read_text(errors="replace").splitlines()[-40:]
    out["worker_log_tail"] = tail
    return out


def throughput() -> dict:
    """Training patches/s and inference megapixels/s of the default network, on CUDA (bf16
    autocast, as shipped, and fp32) and on this machine's CPU (fp32), in one run."""
    import numpy as np
    import torch

    from models.model import SegmentationModel
    from models.training import TrainConfig, loss_fn
    from models.unet import UNet
    arch = dict(in_channels=1, n_classes=3, width=16, depth=4, dropout=0.2)
    rows = {"train": [], "infer": []}
    devices = [("cuda", torch.bfloat16), ("cuda", None), ("cpu", None)] \
        if torch.cuda.is_available() else [("cpu", None)]
    for device, dtype in devices:
        name = f"{device}/{'bf16' if dtype else 'fp32'}"
        for patch, batch in ((256, 8), (256, 64)):
            if device == "cpu" and batch > 8:
                continue
            torch.manual_seed(0)
            net = UNet(**arch).to(device).to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(net.parameters(), 2e-3)
            x = torch.randn(batch, 1, patch, patch, device=device).contiguous(
                memory_format=torch.channels_last)
            y = torch.randint(0, 3, (batch, patch, patch), device=device)
            steps = 30 if device == "cuda" else 4
            for i in range(steps + 3):
                if i == 3:
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                with torch.autocast(device, dtype=dtype or torch.float32, enabled=bool(dtype)):
                    logits = net(x)
                loss = loss_fn(logits.float(), y, TrainConfig())
                opt.zero_grad()
                loss.backward()
                opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
            rate = steps * batch / (time.perf_counter() - t0)
            rows["train"].append({"engine": name, "patch": patch, "batch": batch,
                                  "patches_per_s": round(rate, 1)})
        image = np.random.default_rng(0).normal(0.3, 0.1, (1, 2048, 2048)).astype(np.float32)
        torch.manual_seed(0)
        net = UNet(**arch).eval()
        model = SegmentationModel(net, {"architecture": net.config,
                                        "normalisation": {"low": 1, "high": 99.8}}, module=net)
        runtime = model.runtime(prefer="bf16" if dtype else "fp32", device=device)
        assert runtime.device.type == device and runtime.dtype == dtype, runtime
        model.probabilities(image, normalised=True)
        times = []
        for _ in range(3 if device == "cuda" else 1):
            t0 = time.perf_counter()
            model.probabilities(image, normalised=True)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        rows["infer"].append({"engine": name, "tile_batch": model._runtime.tile_batch,
                              "megapixels_per_s": round(2048 * 2048 / 1e6 / min(times), 2)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--masks", required=True)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--job-timeout", type=float, default=240)
    ap.add_argument("--allow-cpu", action="store_true", help="run without CUDA (a dry run)")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    import torch
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("no CUDA device: nothing to check (use --allow-cpu for a dry run)")
        return 1
    report = {"python": platform.python_version(), "torch": torch.__version__,
              "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
              "cpu_threads": torch.get_num_threads()}
    print(json.dumps(report), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cellloop-gpu-"))
    t0 = time.time()
    try:
        report["jobs"] = job_system(args, work)
    finally:
        report["jobs_seconds"] = round(time.time() - t0, 1)
        if (work / "worker.log").exists():
            shutil.copy(work / "worker.log", out / "worker.log")
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    if not args.skip_throughput:
        report["throughput"] = throughput()
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    jobs = report["jobs"]
    want = "cuda/bf16" if cuda else "cpu/"
    ok = all(jobs[k]["state"] == "done" for k in ("train", "predict", "score")) and \
        (jobs["score"].get("result") or {}).get("strategy") == "bald" and \
        str(jobs["train"].get("training_engine", "")).startswith(want) and \
        str((jobs["predict"].get("result") or {}).get("engine", "")).startswith(want)
    print(json.dumps({k: v for k, v in report.items() if k != "jobs"}, indent=1))
    for kind in ("train", "predict", "score"):
        j = jobs[kind]
        print(f"{kind}: {j['state']} in {j['seconds']} s on {j.get('worker')}; "
              f"engine {j.get('training_engine') or (j.get('result') or {}).get('engine')}; "
              f"error {j.get('error')}")
    print("CHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

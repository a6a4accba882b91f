"""The built-in nuclei model `nuclei-v1` (models/pretrained/) on the DSB 2018 test split, per
group (small fluorescence, large fluorescence, H&E, brightfield; models/builtin_data.py):

- built-in: the shipped model, zero-shot (it never saw these ids);
- ceiling: the same architecture and recipe trained only on that group's training ids
  (`--ceiling-minutes` per group);
- floor: Otsu + distance-transform watershed (bench/baselines.py) on the mapped image.

F1@0.5, precision and recall (means over the test images) per group and their unweighted
mean (macro-F1); and the inference time of one 512x512 image (median of 10 after a warm-up)
with the engine CellLoop picks on this CPU and with fp32 (the engine of CPUs without native
bf16), plus torch fp32 with oneDNN and ATen limited to AVX2 (an estimate of an AVX2-only CPU
on this machine).

    python bench/bench_builtin.py                      # writes docs/benchmarks.md
    python bench/bench_builtin.py --quick              # smoke run: prints, writes nothing
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._report import machine, timings_ms, write_section  # noqa: E402
from bench.baselines import otsu_watershed  # noqa: E402

from models import builtin  # noqa: E402
from models.builtin_data import GROUPS, split, to_network_input  # noqa: E402

QUICK_TRAIN = dict(patch=128, batch=4, steps_per_epoch=4, epochs=1, patience=1)


def timing(model, image: np.ndarray, repeat: int = 10) -> dict:
    """Median ms of the network on one (mapped) 512x512 image, and of the whole prediction
    (mapping, network, instances), after one warm-up each."""
    from models.inference import predict_image

    def median(fn) -> float:
        samples = timings_ms(fn, repeat, warmups=2)
        best.append(round(min(samples), 1))
        return round(statistics.median(samples), 1)

    mapped = to_network_input(image)
    best: list = []
    out = {"engine": model.runtime().name,
           "network_ms": median(lambda: model.probabilities(mapped)),
           "predict_ms": median(lambda: predict_image(model, image))}
    return {**out, "network_min_ms": best[0], "predict_min_ms": best[1]}


def test_image_512(data_dir: Path, parts: dict) -> np.ndarray:
    """A 512x512 crop of the first brightfield test image (1024x1024 RGBA)."""
    image_id = parts["brightfield"][1][0]
    return builtin.read_image(data_dir, image_id)[:, :512, :512]


def time_only(args) -> None:
    """Child process (--time-only): one timing with the engine asked for, as JSON."""
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    model = builtin.load_builtin(folder=args.folder)
    image = test_image_512(builtin.require_data(args.data), split(builtin.require_data(args.data)))
    if args.time_only == "torch-fp32":
        model.frozen = False                # torch, not ONNX Runtime
        model.runtime("fp32")
    print(json.dumps(timing(model, image, args.repeat)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ceiling-minutes", type=float, default=4.0, help="per group")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folder", default=None, help="the built-in model's folder "
                                                  "(default models/pretrained)")
    p.add_argument("--data", default=None, help="default ../shared/data/dsb2018")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 test images per group, ceilings of a few steps on 6 "
                        "images, 3 timings; prints and writes nothing")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--time-only", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.time_only:
        return time_only(args)
    if args.quick:
        args.repeat = 5
    try:
        data_dir = builtin.require_data(args.data)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    parts = split(data_dir)
    test = {g: te[:2] if args.quick else te for g, (_, te) in parts.items()}
    model = builtin.load_builtin(folder=args.folder)
    info = builtin.card(folder=args.folder)
    say = lambda m: print(m, flush=True)          # noqa: E731

    say("timing one 512x512 image ...")           # first, before any training runs
    image = test_image_512(data_dir, parts)
    times = {"shipped": timing(model, image, args.repeat)}
    with model.running("fp32"):
        times["fp32"] = timing(model, image, args.repeat)
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    command = [sys.executable, str(Path(__file__).resolve()), "--time-only", "torch-fp32",
               "--repeat", str(args.repeat)] + (["--folder", args.folder] if args.folder else []) \
        + (["--data", args.data] if args.data else [])
    child = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if child.returncode == 0:
        times["avx2"] = json.loads(child.stdout.strip().splitlines()[-1])
    else:
        say(f"AVX2-limited timing failed: {child.stderr.strip()[-300:]}")
    say(json.dumps(times))

    say("built-in, zero-shot ...")
    zero = builtin.score_groups(model, data_dir, test)
    say(json.dumps(zero))
    say("floor: Otsu + watershed on the mapped image ...")
    floor = builtin.score_groups(None, data_dir, test,
                                 segment=lambda image: otsu_watershed(to_network_input(image)))
    ceiling = {}
    for group in GROUPS:
        train = parts[group][0][:6] if args.quick else parts[group][0]
        say(f"ceiling: {group}, {len(train)} training images, "
            f"{'a few steps' if args.quick else f'{args.ceiling_minutes:g} min'} ...")
        result, _ = builtin.train_group_model(
            data_dir, {group: train}, None if args.quick else args.ceiling_minutes, args.seed,
            QUICK_TRAIN if args.quick else None)
        ceiling[group] = builtin.score_groups(result.model, data_dir,
                                              {group: test[group]})["groups"][group]
        ceiling[group]["seconds"] = round(result.seconds)
        say(json.dumps(ceiling[group]))


    ceiling_macro = round(float(np.mean([ceiling[g]["f1"] for g in GROUPS])), 4)
    rows = []
    for g in GROUPS:
        z, c, f = zero["groups"][g], ceiling[g], floor["groups"][g]
        rows.append(f"| {g} | {z['n_images']} | **{z['f1']:.3f}** | {z['precision']:.3f} | "
                    f"{z['recall']:.3f} | {c['f1']:.3f} | {f['f1']:.3f} |")
    rows.append(f"| macro-F1 | {sum(z['n_images'] for z in zero['groups'].values())} | "
                f"**{zero['macro_f1']:.3f}** | | | {ceiling_macro:.3f} | "
                f"{floor['macro_f1']:.3f} |")
    w = info["weights"]
    arch = info["architecture"]
    time_rows = [f"| {name} | {t['engine']} | {t['network_ms']:.0f} ({t['network_min_ms']:.0f}) | "
                 f"{t['predict_ms']:.0f} ({t['predict_min_ms']:.0f}) |"
                 for name, t in (("CellLoop's choice here", times["shipped"]),
                                 ("fp32 (CPUs without native bf16)", times["fp32"]),
                                 ("torch fp32, oneDNN/ATen limited to AVX2",
                                  times.get("avx2"))) if t]
    note = f"\n\nNote of the model card: {info['note']}" if info.get("note") else ""
    body = f"""
The shipped `{info['name']}` (`{w['file']}`, {w['bytes'] / 1e6:.1f} MB, fp16 on disk, sha256
`{w['sha256'][:12]}`; U-Net width {arch['width']}, depth {arch['depth']},
{arch['parameters'] / 1e6:.1f} M parameters; trained {info['training']['seconds_trained'] / 60:.0f}
min, {info['training']['steps']} steps) on the DSB 2018 test split (per group, ids
sorted, the last 20%; models/builtin_data.py). Built-in: zero-shot. Ceiling: the same
architecture and recipe trained only on the group's own training ids for
{args.ceiling_minutes:g} min (seed {args.seed}). Floor: Otsu + watershed
(bench/baselines.py) on the mapped image. F1@0.5 and precision/recall are means over the
test images; macro-F1 is the unweighted mean over the four groups. All fluorescence test
images together: {zero.get('fluorescence_f1', float('nan')):.3f} (goal 0.88; macro-F1 goal 0.80).{note}

| group | test images | built-in F1@0.5 | precision | recall | ceiling F1@0.5 | floor F1@0.5 |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Inference of one 512x512 image (a crop of the first brightfield test image), median of
{args.repeat} after a warm-up, on {machine()}: the network alone (mapping and tiling
included) and the whole prediction (with the instances); the fastest run in brackets (on a
machine shared with other work the median rises first).

| engine | runs as | network ms | prediction ms |
|---|---|---|---|
{chr(10).join(time_rows)}
"""
    if args.quick:
        print(body)
        return
    write_section("builtin", "Built-in nuclei model nuclei-v1 (issue 20)", body)


if __name__ == "__main__":
    main()

"""Active-learning benefit on DSB 2018 fluorescence images: random vs MC-dropout entropy vs
BALD (and optionally others), several seeds, the ground truth as the oracle.

Split (fixed, documented): fluorescence ids sorted; the first 80% are the training pool,
the last 20% the test set (as in bench_accuracy.py). To fit a 2-core CPU the pool is a
random subset of `--pool` training images and the test set the first `--test` test ids
(random subset drawn with seed 0, the same for every strategy and seed).

Reported: test F1@0.5 per round (mean and spread over seeds), the labels each strategy needs
to reach 95% of the F1 of a model trained on the whole pool, and the area under the learning
curve relative to random. Writes CSV and HTML next to docs/benchmarks.md.

    python bench/bench_active_learning.py [--pool 120 --test 40 --rounds 6 --seeds 3]

With --mixed: the mixed-pool benchmark of issue 21 in corrections (bench/al_mixed.py), e.g.

    python bench/bench_active_learning.py --mixed --pool 200 --test 20 --batch 2 --steps 50
    python bench/bench_active_learning.py --mixed --unit region --batch 4 ...
    python bench/bench_active_learning.py --mixed --quick          # smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import al_mixed  # noqa: E402
from bench._report import machine, write_section  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402

from models.simulation import SimulationPlan, figure, simulate, summarise, test_metrics  # noqa: E402
from models.training import TrainConfig, train_model  # noqa: E402
from storage import writers  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "active_learning"


def parser() -> argparse.ArgumentParser:
    """This benchmark's arguments (bench/reuse_rows.py reads a run's the same way)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategies", default="random,entropy,bald")
    ap.add_argument("--pool", type=int, default=120)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--initial", type=int, default=5)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60, help="training steps per round")
    ap.add_argument("--passes", type=int, default=8)
    ap.add_argument("--section", default="active_learning",
                    help="docs/benchmarks.md section (and curve file names) to write, so a run "
                    "with other settings does not replace the default one")
    ap.add_argument("--report-log", help="only report the 'round {...}' lines a run printed "
                    "(e.g. a run stopped early); no simulation")
    al_mixed.add_arguments(ap)
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.mixed:
        return al_mixed.run(args, write_section, machine)
    if args.report_log:
        return report_from_log(Path(args.report_log))

    train_ids, test_ids = fluorescence_split()
    rng = np.random.default_rng(0)
    pool_ids = sorted(rng.choice(train_ids, args.pool, replace=False).tolist())
    test_ids = sorted(rng.choice(test_ids, min(args.test, len(test_ids)), replace=False).tolist())
    pool_images, pool_labels = load(pool_ids)
    test_images, test_labels = load(test_ids)
    images, labels = pool_images + test_images, pool_labels + test_labels

    cfg = TrainConfig(width=16, depth=4, patch=128, batch=8, epochs=2,
                      steps_per_epoch=args.steps // 2, patience=2, lr=2e-3)
    t0 = time.perf_counter()
    # the reference gets as many training steps as one strategy's whole run (every round's
    # fine-tuning added up), so reaching its F1 is a matter of labels, not of steps
    full = train_model(pool_images, pool_labels,
                       config=dataclasses.replace(cfg, epochs=2 * (args.rounds + 1),
                                                  patience=3)).model
    full_f1 = test_metrics(full, test_images, test_labels)["f1"]
    full_s = time.perf_counter() - t0

    plan = SimulationPlan(args.strategies.split(","), initial=args.initial, batch=args.batch,
                          rounds=args.rounds, seeds=list(range(args.seeds)),
                          passes=args.passes,
                          test_indices=list(range(len(pool_images), len(images))))
    t1 = time.perf_counter()
    rows = simulate(images, labels, plan, cfg,
                    progress=lambda r: print("round", json.dumps(r), flush=True))
    sim_s = time.perf_counter() - t1

    OUT.mkdir(parents=True, exist_ok=True)
    stem = "dsb_curves" if args.section == "active_learning" else f"dsb_curves_{args.section}"
    writers.write_csv(OUT / f"{stem}.csv", rows, list(rows[0]))
    figure(rows).write_html(OUT / f"{stem}.html", include_plotlyjs="cdn")
    summary = summarise(rows)
    target = 0.95 * full_f1
    by_strategy = {}
    for r in rows:
        by_strategy.setdefault(r["strategy"], {}).setdefault(r["n_labelled"], []).append(r["f1"])
    lines = []
    need = {}
    for s in summary:
        curve = by_strategy[s["strategy"]]
        reached = [k for k in sorted(curve) if np.mean(curve[k]) >= target]
        need[s["strategy"]] = reached[0] if reached else None
        per_round = " · ".join(f"{k}: {np.mean(v):.3f}±{np.std(v):.3f}"
                               for k, v in sorted(curve.items()))
        lines.append(f"| {s['strategy']} | {s['final_f1']:.3f} ± {s['final_sd']:.3f} | "
                     f"{s['auc']:.3f} | {s['auc_vs_random']} | "
                     f"{need[s['strategy']] if need[s['strategy']] else '> ' + str(max(curve))} |"
                     f" {per_round} |")
    best = None
    if need.get("random"):
        ratios = {k: v / need["random"] for k, v in need.items() if k != "random" and v}
        best = min(ratios.items(), key=lambda kv: kv[1]) if ratios else None
    body = f"""
Pool: {len(pool_images)} DSB fluorescence training images (random subset, seed 0, of the
sorted-id 80% split); test: {len(test_images)} images of the 20% test split. Start
{args.initial} random images (same per seed for every strategy), {args.rounds} rounds of
{args.batch}, {args.seeds} seeds; each round fine-tunes the previous round's U-Net (width 16,
{args.steps} steps of 8 x 128 px patches); MC dropout T={args.passes}. Full-pool model
(the same number of steps as one strategy's run, {(args.rounds + 1) * args.steps}, with early
stopping; {full_s / 60:.1f} min to train): test F1@0.5 **{full_f1:.3f}**; target = 95% of it =
{target:.3f}. Simulation wall time {sim_s / 60:.1f} min.

| strategy | final F1 (mean ± sd) | area under curve | AUC vs random | labels to reach target | F1 by labelled images |
|---|---|---|---|---|---|
{chr(10).join(lines)}

Best uncertainty strategy vs random, labels needed: {f"{best[0]} {best[1]:.0%} of random's" if best else "not measurable (random or the others never reached the target within the budget)"}.
Curves: `docs/active_learning/{stem}.csv`, interactive `docs/active_learning/{stem}.html`.
"""
    title = "Active learning on DSB 2018 (simulation)"
    if args.section != "active_learning":
        title += f", start {args.initial}, batch {args.batch}, {args.steps} steps per round"
    write_section(args.section, title, body)


def report_from_log(path: Path) -> None:
    """Summarise the rounds a run printed (no full-pool reference: the target is 95% of the
    best final mean F1 of any strategy, as in `models.simulation.summarise`)."""
    rows = [json.loads(line.split(" ", 1)[1]) for line in path.read_text().splitlines()
            if line.startswith("round ")]
    complete = {}
    for r in rows:
        complete.setdefault((r["seed"], r["strategy"]), []).append(r)
    n_rounds = max(len(v) for v in complete.values())
    rows = [r for v in complete.values() if len(v) == n_rounds for r in v]
    seeds = sorted({r["seed"] for r in rows})
    lines = []
    for s in summarise(rows):
        curve = {}
        for r in rows:
            if r["strategy"] == s["strategy"]:
                curve.setdefault(r["n_labelled"], []).append(r["f1"])
        per_round = " · ".join(f"{k}: {np.mean(v):.3f}" for k, v in sorted(curve.items()))
        lines.append(f"| {s['strategy']} | {s['final_f1']:.3f} | {s['auc']:.3f} | "
                     f"{s['auc_vs_random']} | {s['labels_to_target'] or '> ' + str(max(curve))}"
                     f" | {per_round} |")
    body = f"""
Partial run, reported from its printed rounds (`{path.name}`): only the seeds in which every
strategy finished all rounds are used: seeds {seeds} of the 3 planned (the run was stopped
for time). Setup as described in the script: pool of 100 DSB fluorescence training images,
30 test images, start 5, 5 rounds of 5, 50 training steps per round (fine-tuned from the
previous round), MC dropout T=8. Target: 95% of the best final F1 of any strategy
({summarise(rows)[0]['target_f1']:.3f}); no full-pool model in this report.

| strategy | final F1 | area under curve | AUC vs random | labels to reach target | test F1 by labelled images |
|---|---|---|---|---|---|
{chr(10).join(lines)}

With one seed there is no spread to compare against, so the goal (best uncertainty strategy
needs at most 60% of random's labels, never below random by more than the seed spread) is
not established by this run.
"""
    write_section("active_learning", "Active learning on DSB 2018 (simulation)", body)


if __name__ == "__main__":
    main()

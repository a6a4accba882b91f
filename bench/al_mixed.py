"""The mixed-pool active-learning benchmark of issue 21, in effort (run through
`python bench/bench_active_learning.py --mixed`).

Pool and test from ../shared/data/dsb2018 with the built-in model's groups and split
(models/builtin_data.py: small fluorescence, large fluorescence, H&E, brightfield; per
group, ids sorted, the first 80% train): test = `--test` random ids per group from the test
split (all of a smaller group's), pool = a random `--pool` of all groups' training ids (seed
0). Every image is read as one grey channel through the built-in model's input mapping
(`meta: input_mapping`), so every model sees the same input. One shared random start unit
per seed, `--rounds` rounds of `--batch`, warm-started rounds, the cost of a unit is the
corrections of the current model's suggestion (models/corrections.py); metric: macro-F1@0.5
over the four groups; reference: a model trained on the whole pool for as many steps as
one strategy's whole run.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np

from models import builtin
from models.builtin_data import GROUPS, INPUT_MAPPING, split
from models.simulation import SimulationPlan, figure, simulate, summarise, test_metrics
from models.strategies import get_strategy
from models.training import TrainConfig, check_pull, train_model
from storage import writers

OUT = Path(__file__).resolve().parent.parent / "docs" / "active_learning"


def add_arguments(ap) -> None:
    g = ap.add_argument_group("--mixed (issue 21: mixed pool, cost in corrections)")
    g.add_argument("--mixed", action="store_true", help="run the mixed-pool benchmark")
    g.add_argument("--unit", default="image", choices=["image", "region"])
    g.add_argument("--region-size", type=int, default=256)
    g.add_argument("--start", default="scratch", choices=["scratch", "builtin"])
    g.add_argument("--start-model", default=None,
                   help="with --start builtin: a model file (e.g. a generalist trained "
                        "without one group, from bench/bench_from_builtin.py's cache); "
                        "default the shipped nuclei-v1")
    g.add_argument("--reference-steps", type=int, default=0,
                   help="training steps of the whole-pool reference (default: as many as "
                        "one strategy's whole run, (rounds + 1) x steps)")
    g.add_argument("--leave-out", default=None, choices=GROUPS,
                   help="with --start builtin: start from a generalist trained (600 steps, "
                        "cached as in bench/bench_from_builtin.py) on every DSB training "
                        "image outside this group, so that group is new to the start model")
    g.add_argument("--cache", default="/tmp/cellloop-bench-from-builtin",
                   help="where --leave-out's generalist, the whole-pool reference's metrics "
                        "(keyed by its settings) and each (strategy, seed)'s rows (keyed by "
                        "the settings, the start weights and the code in models/) are cached")
    g.add_argument("--mixed-strategies", default="random,stratified,power,coverage")
    g.add_argument("--round-lr", type=float, default=2e-3,
                   help="learning rate of each round's fine-tune (the whole-pool reference "
                        "keeps 2e-3); lower forgets less of the start model")
    g.add_argument("--round-pull", type=float, default=0.0,
                   help="each round's fine-tune pulls the weights back to the previous "
                        "model's (TrainConfig.pull, decoupled L2-SP); 0: no pull")
    g.add_argument("--fresh", action="store_true",
                   help="run every (strategy, seed) and the reference again, ignoring --cache")
    g.add_argument("--quick", action="store_true", help="smoke run; prints, writes nothing")


def data(args) -> tuple[list, list, list, list[int]]:
    """images, labels, groups (pool first, then test) and the test indices."""
    data_dir = builtin.require_data()
    parts = split(data_dir)
    rng = np.random.default_rng(0)
    test_ids, groups_of = [], {}
    for g in GROUPS:
        tr, te = parts[g]
        take = sorted(rng.choice(te, min(args.test, len(te)), replace=False).tolist())
        test_ids += take
        groups_of.update({i: g for i in tr + te})
    everything = sorted(i for g in GROUPS for i in parts[g][0])
    pool_ids = sorted(rng.choice(everything, min(args.pool, len(everything)),
                                 replace=False).tolist())
    ids = pool_ids + test_ids
    images = [builtin.read_image(data_dir, i) for i in ids]
    labels = [builtin.read_labels(data_dir, i).astype(np.uint16) for i in ids]
    return images, labels, [groups_of[i] for i in ids], list(range(len(pool_ids), len(ids)))


def run(args, write_section, machine) -> None:
    if args.quick:
        args.pool, args.test, args.rounds, args.seeds, args.steps = 12, 1, 1, 1, 4
        args.reference_steps = 0
        args.batch = 1
    strategies = args.mixed_strategies.split(",")
    for name in strategies:
        get_strategy(name)          # a misspelt name fails now, not after an hour of others
    check_pull(args.round_pull, args.round_lr)
    images, labels, groups, test = data(args)
    pool = [i for i in range(len(images)) if i not in set(test)]
    meta = {"input_mapping": INPUT_MAPPING}
    start_model = _start_model(args)
    cfg, ref_cfg = configs(args, start_model)
    ref, full_s = _reference(args, ref_cfg, images, labels, groups, pool, test, meta,
                             start_model)
    target = 0.95 * ref["macro_f1"]
    print(f"reference macro-F1 {ref['macro_f1']:.3f} ({full_s:.0f} s); target {target:.3f}",
          flush=True)
    t1 = time.perf_counter()
    load, rows, sim_s, cached = [], [], 0.0, 0
    fingerprint = _fingerprint(start_model)
    for seed in range(args.seeds):      # one (seed, strategy) at a time, cached: a run with
        for name in strategies:         # more seeds redoes none of these
            plan = one_plan(args, name, seed, test, target)
            done = _cached_rows(args, cfg, plan, fingerprint, lambda load, plan=plan: simulate(
                images, labels, plan, cfg, groups=groups, start_model=start_model, meta=meta,
                progress=lambda r: (load.append(_load()),
                                    print("round", json.dumps(r), flush=True))))
            rows += done["rows"]
            sim_s += done["seconds"]
            load += done["load"]
            cached += done["cached"]
    runs = f"{args.seeds * len(strategies)} (strategy, seed) runs"
    made = (f"{runs}, {cached} of them read from --cache" if cached else runs)
    print(f"{made}; simulation {sim_s / 60:.1f} min ({(time.perf_counter() - t1) / 60:.1f} in "
          "this run)", flush=True)
    summary = summarise(rows, target=target)
    left_out = None
    if args.leave_out:      # the group the start never saw: its own target and costs
        metric = f"f1_{args.leave_out}"
        left_out = {"metric": metric, "target": 0.95 * ref[metric],
                    "strategies": summarise(rows, target=0.95 * ref[metric], metric=metric)}
    body = report(args, rows, summary, ref, target, full_s, sim_s, len(pool), len(test),
                  groups, test, load, left_out, made)
    if args.quick:
        print(body)
        return
    stem = _stem(args)
    OUT.mkdir(parents=True, exist_ok=True)
    from models.simulation_plan import columns
    writers.write_csv(OUT / f"{stem}.csv", rows, columns(rows))
    figure(rows, cost="corrections", unit=args.unit).write_html(OUT / f"{stem}.html",
                                                                include_plotlyjs="cdn")
    writers.write_json(OUT / f"{stem}_summary.json", {"target": target, "reference": ref,
                                                      "strategies": summary,
                                                      "left_out": left_out})
    write_section(f"active_learning_{stem}", "Active learning on a mixed DSB pool, in "
                  f"corrections ({args.unit} units, from {_start_name(args)}; issue 21)", body)


def _start_model(args):
    """The first model (None from scratch)."""
    if args.start != "builtin":
        return None
    from models.persist import model_from_bytes
    if args.leave_out:
        return _left_out_generalist(args)
    return (model_from_bytes(Path(args.start_model).read_bytes())
            if args.start_model else builtin.load_builtin())


def configs(args, start_model) -> tuple[TrainConfig, TrainConfig]:
    """Each round's fine-tuning settings and the whole-pool reference's."""
    cfg = TrainConfig(width=16, depth=4, patch=128, batch=8, epochs=1,
                      steps_per_epoch=args.steps, patience=2, lr=2e-3, calibrate=False)
    if start_model is not None:
        arch = start_model.meta["architecture"]
        cfg = dataclasses.replace(cfg, width=arch["width"], depth=arch["depth"])
    ref_cfg = (dataclasses.replace(cfg, epochs=1, steps_per_epoch=args.reference_steps)
               if args.reference_steps else dataclasses.replace(cfg, epochs=args.rounds + 1))
    return dataclasses.replace(cfg, lr=args.round_lr, pull=args.round_pull), ref_cfg


def _start_name(args) -> str:
    return (f"{args.start} without {args.leave_out}"
            if args.start == "builtin" and args.leave_out else args.start)


def _stem(args) -> str:
    """The curve files' name, and the docs section's after "active_learning_": from the
    unit and the start, or from --section when one is given (a run with other settings
    then replaces nothing)."""
    if getattr(args, "section", "active_learning") != "active_learning":
        return args.section.removeprefix("active_learning_")
    return f"mixed_{args.unit}_{_start_name(args).replace(' ', '_')}"


def _left_out_generalist(args):
    """The built-in architecture trained on every DSB training image outside
    args.leave_out (the same settings and cache as bench/bench_from_builtin.py)."""
    from bench.bench_from_builtin import cached_group_model
    data_dir = builtin.require_data()
    parts = split(data_dir)
    others = {g: tr for g, (tr, _) in parts.items() if g != args.leave_out}
    settings = argparse.Namespace(patch=256, batch=8, epochs_big=4)
    if args.quick:
        others = {g: ids[:6] for g, ids in others.items()}
        settings = argparse.Namespace(patch=128, batch=4, epochs_big=1)
    return cached_group_model(Path(args.cache), data_dir, others, 4 if args.quick else 600,
                              settings, f"without-{args.leave_out}")


def _reference(args, ref_cfg, images, labels, groups, pool, test, meta, start_model):
    """The whole-pool reference's test metrics and training seconds, cached in --cache by
    everything that decides them (a run with other round settings reuses it)."""
    path = reference_path(args, ref_cfg)
    if path.exists() and not args.fresh:
        cached = json.loads(path.read_text())
        print(f"reference: cached {path}", flush=True)
        return cached["metrics"], cached["seconds"]
    t0 = time.perf_counter()
    full = train_model([images[i] for i in pool], [labels[i] for i in pool], config=ref_cfg,
                       meta=meta, init=start_model).model
    ref = test_metrics(full, [images[i] for i in test], [labels[i] for i in test],
                       [groups[i] for i in test])
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    writers.write_json(path, {"metrics": ref, "seconds": seconds})
    return ref, seconds


def reference_path(args, ref_cfg: TrainConfig) -> Path:
    """Where the whole-pool reference is cached: named by everything that decides it."""
    settings = {k: v for k, v in dataclasses.asdict(ref_cfg).items()
                if k != "pull" or v}     # no pull: the key it had before the option existed
    key = json.dumps([settings, args.pool, args.test, args.start,
                      args.start_model, args.leave_out, args.quick, "reference-v1"],
                     sort_keys=True, default=str)
    return Path(args.cache) / f"reference-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def one_plan(args, strategy: str, seed: int, test: list[int],
             target: float | None = None) -> SimulationPlan:
    """The simulation of one strategy and one seed."""
    return SimulationPlan([strategy], initial=1, batch=args.batch, rounds=args.rounds,
                          seeds=[seed], passes=args.passes, test_indices=test, unit=args.unit,
                          region=args.region_size, start=args.start, cost="corrections",
                          target_f1=target)


def _fingerprint(start_model) -> str:
    """What else decides a simulation's rows: the code in models/ and the start weights."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent.parent / "models").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    if start_model is not None:
        for name, tensor in start_model.module.state_dict().items():
            digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def rows_path(args, cfg, plan, fingerprint: str) -> Path:
    """Where one (strategy, seed)'s rows are cached: named by everything that decides them."""
    what = {k: v for k, v in dataclasses.asdict(plan).items() if k != "target_f1"}
    key = json.dumps([dataclasses.asdict(cfg), what, args.pool, args.test, args.start_model, args.leave_out,
                      args.quick, fingerprint, "rows-v2"], sort_keys=True, default=str)
    return Path(args.cache) / f"rows-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _cached_rows(args, cfg, plan, fingerprint: str, run) -> dict:
    """One (seed, strategy)'s rows, its seconds and load averages, and whether they came
    from --cache, where a run with everything that decides them (the round settings, the
    plan, the data, the start weights and the code in models/) left them; --fresh reruns."""
    path = rows_path(args, cfg, plan, fingerprint)
    if path.exists() and not (args.quick or args.fresh):
        print(f"{plan.strategies[0]} seed {plan.seeds[0]}: cached {path}", flush=True)
        return {**json.loads(path.read_text()), "cached": True}
    t0, load = time.perf_counter(), []
    rows = run(load)            # `load` gets the load average after each round
    done = {"rows": rows, "seconds": time.perf_counter() - t0, "load": load}
    if not args.quick:
        path.parent.mkdir(parents=True, exist_ok=True)
        writers.write_json(path, done)
    return {**done, "cached": False}


def _load() -> float:
    import os
    return round(os.getloadavg()[0], 2)


def left_out_lines(left_out: dict | None) -> str:
    """The left-out group's own table: its final F1, the corrections each strategy paid to
    reach 95% of the reference's F1 on that group, and the area under its curve."""
    if not left_out:
        return ""
    group = left_out["metric"][3:]
    rows = [f"| {s['strategy']} | {s['final_f1']:.3f} ± {s['final_sd']:.3f} | {s['auc_vs_random']}"
            f" | {s['cost_to_target'] if s['cost_to_target'] is not None else 'not reached'} ("
            + ", ".join("–" if v is None else f"{v:g}" for v in s["cost_to_target_per_seed"])
            + ") |" for s in left_out["strategies"]]
    return f"""
The left-out group, {group} (the start model never saw it): target 95% of the reference's
{group} F1 = {left_out['target']:.3f}.

| strategy | final {group} F1 | area vs random ({group}) | corrections to the {group} target (median; per seed) |
|---|---|---|---|
{chr(10).join(rows)}
"""


def report(args, rows, summary, ref, target, full_s, sim_s, n_pool, n_test, groups, test,
           load, left_out: dict | None = None, runs: str = "") -> str:
    by = {s["strategy"]: s for s in summary}
    per_group = {g: sum(1 for i in test if groups[i] == g) for g in GROUPS}
    lines = []
    for s in summary:
        finals = {g: np.mean([r[f"f1_{g}"] for r in rows if r["strategy"] == s["strategy"]
                              and r["round"] == args.rounds]) for g in GROUPS}
        lines.append(
            f"| {s['strategy']} | {s['final_f1']:.3f} ± {s['final_sd']:.3f} | "
            + " | ".join(f"{finals[g]:.3f}" for g in GROUPS)
            + f" | {s['auc']:.3f} | {s['auc_vs_random']} | "
            + ", ".join(f"{v:g}" for v in s["auc_vs_random_per_seed"].values())
            + f" | {s['cost_to_target'] if s['cost_to_target'] is not None else 'not reached'}"
            + " (" + ", ".join("–" if v is None else f"{v:g}" for v in
                               s["cost_to_target_per_seed"]) + ") |")
    half = ""
    if "random" in by and by["random"]["cost_to_target"]:
        ratios = {k: v["cost_to_target"] / by["random"]["cost_to_target"]
                  for k, v in by.items() if k != "random" and v["cost_to_target"]}
        half = "; ".join(f"{k} {r:.0%} of random's corrections" for k, r in ratios.items())
    costs = [r["cost"] for r in rows if r["round"] == args.rounds]
    return f"""
Pool: {n_pool} DSB training images of all four groups (random, seed 0); test: {n_test} images
({', '.join(f'{g} {n}' for g, n in per_group.items())}) from the test split. Grey input (the
built-in model's input mapping). Unit: {args.unit}{f' ({args.region_size} px)' if args.unit == 'region' else ''};
start: {_start_name(args)}{f' ({Path(args.start_model).name})' if args.start_model and not args.leave_out else ''}. One shared random start
unit per seed, {args.rounds} rounds of {args.batch}, {args.seeds} seeds; each round fine-tunes the
previous round's U-Net ({args.steps} steps of 8 x 128 px patches at learning rate
{args.round_lr:g}{f', pulled back to the previous model at {args.round_pull:g}' if args.round_pull else ''}, default post-processing);
MC dropout T={args.passes}. Cost: corrections of the current model's suggestion (redrawn +
missed + false cells). Reference (whole pool, {args.reference_steps or (args.rounds + 1) * args.steps} steps,
{full_s / 60:.1f} min): macro-F1 **{ref['macro_f1']:.3f}**
({', '.join(f"{g} {ref[f'f1_{g}']:.3f}" for g in GROUPS)}); target (95%) {target:.3f}.
Simulation {sim_s / 60:.1f} min{f' ({runs}; times from the runs that made them)' if 'cache' in runs else ''}; load average during it {statistics.median(load) if load else 0:g}
(median of the rounds); final cumulative corrections {min(costs)}–{max(costs)}.

| strategy | final macro-F1 | {' | '.join(GROUPS)} | area vs cost | area vs random | per seed | corrections to target (median; per seed) |
|---|---|{'---|' * len(GROUPS)}---|---|---|---|
{chr(10).join(lines)}

{half or 'Random did not reach the target, so no ratio of corrections.'}
{left_out_lines(left_out)}
Curves: `docs/active_learning/{_stem(args)}.csv` and `.html`.
"""

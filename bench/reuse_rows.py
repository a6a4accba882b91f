"""Put a committed run's rows (some of its strategies) and its whole-pool reference into the
mixed benchmark's cache (bench/al_mixed.py, --cache) under the key the current code gives
them, so that a run with one more strategy computes only that one.

Valid only where nothing that decides those rows changed since the committed run: the
strategies' picks, the training code and the start weights. The cache keys rows on a hash of
models/*.py, so any change there (a refactor, another strategy) moves the key even when the
rows would be the same; check that the copied strategies' picks are unchanged before using
this, and say so where the results are reported. A check that costs one round: the new
strategy's round 0 (the start unit every strategy shares) must equal the copied rows' round 0.

    python bench/reuse_rows.py SOURCE_STEM random,stratified REFERENCE_MINUTES -- \\
        --mixed --start builtin --leave-out histology ... (the new run's arguments)

SOURCE_STEM: docs/active_learning/SOURCE_STEM.csv and _summary.json; REFERENCE_MINUTES: the
reference's training time as its section reports it. With --start builtin --leave-out, the
start model is trained first if the cache lacks it.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import al_mixed  # noqa: E402
from bench.bench_active_learning import parser  # noqa: E402
from storage import writers  # noqa: E402

INT = {"seed", "round", "n_labelled", "cost"}


def main() -> None:
    if "--" not in sys.argv or sys.argv.index("--") != 4:
        raise SystemExit("usage: python bench/reuse_rows.py SOURCE_STEM STRATEGIES "
                         "REFERENCE_MINUTES -- (the new run's arguments)")
    split = sys.argv.index("--")
    source, strategies, minutes = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
    args = parser().parse_args(sys.argv[split + 1:])
    src = al_mixed.OUT / source
    summary = json.loads(Path(f"{src}_summary.json").read_text())
    start = al_mixed._start_model(args)
    cfg, ref_cfg = al_mixed.configs(args, start)
    path = al_mixed.reference_path(args, ref_cfg)
    if not path.exists():
        writers.write_json(path, {"metrics": summary["reference"], "seconds": minutes * 60})
        print("reference", path, flush=True)
    fingerprint = al_mixed._fingerprint(start)
    test = al_mixed.data(SimpleNamespace(pool=args.pool, test=args.test))[3]
    with open(f"{src}.csv", newline="") as f:
        rows = [{k: v if k == "strategy" else int(v) if k in INT else float(v)
                 for k, v in r.items()} for r in csv.DictReader(f)]
    for name in strategies:
        for seed in range(args.seeds):
            mine = [r for r in rows if r["strategy"] == name and r["seed"] == seed]
            if len(mine) != args.rounds + 1:
                raise SystemExit(f"{source}: {name} seed {seed} has {len(mine)} rounds, "
                                 f"not {args.rounds + 1}")
            out = al_mixed.rows_path(args, cfg, al_mixed.one_plan(args, name, seed, test),
                                     fingerprint)
            writers.write_json(out, {"rows": mine, "seconds": sum(r["seconds"] for r in mine),
                                     "load": []})
            print(name, seed, out, flush=True)


if __name__ == "__main__":
    main()

"""Image units against region units at equal corrections, from two runs of the mixed-pool
benchmark with the same pool, test set and reference (issue 21: "at image and at region level; whichever
wins becomes the default").

It trains nothing: it reads the curves the two runs wrote (docs/active_learning/STEM.csv
and STEM_summary.json) and, per strategy and seed, compares what a person has after paying
the same corrections:

- the macro-F1 of the last round each unit finished within the region run's whole cost
  (a round is all or nothing: no interpolation);
- the area under macro-F1 against corrections over the cost range both curves cover, region
  over image (linear between rounds, as the benchmark's own areas);
- the corrections each unit paid to reach the runs' target (95% of the whole-pool
  reference), or none.

    python bench/compare_units.py --image mixed_image_scratch --region mixed_region_scratch
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from models.simulation_plan import seed_area  # noqa: E402

CURVES = Path(__file__).resolve().parent.parent / "docs" / "active_learning"


def curves(stem: str) -> dict:
    """{(strategy, seed): rows sorted by round} of one run's curves CSV."""
    out: dict = {}
    with open(CURVES / f"{stem}.csv", newline="") as f:
        for r in csv.DictReader(f):
            row = {k: (v if k == "strategy" else float(v)) for k, v in r.items()}
            out.setdefault((r["strategy"], int(row["seed"])), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["round"])
    return out


def target_of(stem: str) -> float:
    return float(json.loads((CURVES / f"{stem}_summary.json").read_text())["target"])


def at_cost(rows: list[dict], cost: float) -> float | None:
    """The macro-F1 of the last round finished within `cost` corrections (None if none)."""
    done = [r["macro_f1"] for r in rows if r["cost"] <= cost]
    return done[-1] if done else None


def to_target(rows: list[dict], target: float) -> float | None:
    return next((r["cost"] for r in rows if r["macro_f1"] >= target), None)


def compare(image: dict, region: dict, target: float) -> list[dict]:
    """One line per (strategy, seed) both runs have."""
    out = []
    for key in sorted(set(image) & set(region)):
        img, reg = image[key], region[key]
        budget = reg[-1]["cost"]
        lo = max(img[0]["cost"], reg[0]["cost"])
        hi = min(img[-1]["cost"], reg[-1]["cost"])
        ratio = (seed_area(reg, lo, hi, "macro_f1", "cost")
                 / seed_area(img, lo, hi, "macro_f1", "cost"))
        out.append({"strategy": key[0], "seed": key[1], "budget": budget,
                    "region_f1": reg[-1]["macro_f1"], "image_f1": at_cost(img, budget),
                    "image_rounds": sum(r["cost"] <= budget for r in img),
                    "area_ratio": ratio, "region_to_target": to_target(reg, target),
                    "image_to_target": to_target(img, target)})
    return out


def _num(v, fmt="{:g}") -> str:
    return "–" if v is None else fmt.format(v)


def report(lines: list[dict], target: float, image: str, region: str) -> str:
    rows = [f"| {x['strategy']} | {x['seed']} | {x['budget']:g} | {x['region_f1']:.3f} | "
            f"{_num(x['image_f1'], '{:.3f}')} ({x['image_rounds']}) | {x['area_ratio']:.3f} | "
            f"{_num(x['region_to_target'])} | {_num(x['image_to_target'])} |" for x in lines]
    wins = sum(1 for x in lines if x["image_f1"] is None or x["region_f1"] > x["image_f1"])
    ratios = [x["area_ratio"] for x in lines]
    return f"""
Curves: `docs/active_learning/{image}.csv` (image units) and `{region}.csv` (region units):
the same pool, test set and reference (the script checks that the targets are equal); each
run's own section above gives its round settings (units a round, steps). Target (95% of the
whole-pool reference): macro-F1 {target:.3f}. Budget: what the region run paid in all, per strategy and
seed; the image column is the macro-F1 of the last image round finished within that budget
(the rounds counted, start unit included, in brackets; – when not even the start unit fits).
Area: region over image, macro-F1 against corrections over the range both cover. The
budget is the region run's, so a pair where no image round fits in it counts for regions.

| strategy | seed | budget (corrections) | region macro-F1 | image macro-F1 within it (rounds) | area region / image | region corrections to target | image corrections to target |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Regions ahead at the region run's budget in {wins} of {len(lines)} (strategy, seed) pairs;
area ratio median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}).
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True, help="stem of the image-unit run's curves")
    ap.add_argument("--region", required=True, help="stem of the region-unit run's curves")
    ap.add_argument("--section", default=None,
                    help="docs/benchmarks.md section (default units_<region stem>)")
    args = ap.parse_args(argv)
    target = target_of(args.region)
    if abs(target - target_of(args.image)) > 1e-9:
        raise SystemExit("the two runs have different targets: not the same reference")
    lines = compare(curves(args.image), curves(args.region), target)
    if not lines:
        raise SystemExit("no (strategy, seed) is in both runs")
    write_section(args.section or f"units_{args.region}",
                  "Image against region units at equal corrections (issue 21)",
                  report(lines, target, args.image, args.region))


if __name__ == "__main__":
    main()

"""The plan and the report of an active-learning simulation: settings, the test split, the
summary table and the learning-curve figure. Torch-free, so the web tier can check a plan and
draw results without loading the model code (`models.simulation` runs the simulation).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from models.strategies import get_strategy

COLUMNS = ["strategy", "seed", "round", "n_labelled", "cost", "f1", "dice", "seconds"]
UNITS = ("image", "region")
STARTS = ("scratch", "builtin")
COSTS = ("images", "cells", "corrections")
COST_TITLES = {"images": "labelled {unit}s", "cells": "cells drawn",
               "corrections": "corrections (redrawn + missed + false cells)"}


@dataclasses.dataclass
class SimulationPlan:
    strategies: list[str]
    initial: int = 5
    batch: int = 5
    rounds: int = 8
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    test_fraction: float = 0.25
    passes: int = 8
    ensemble_size: int = 3
    split_seed: int = 12345           # the test set does not depend on the run's seeds
    test_indices: list[int] | None = None   # a given test set instead of a random fraction
    unit: str = "image"               # what is acquired: whole images or square regions
    region: int = 256                 # the side of a region unit (pixels)
    start: str = "scratch"            # the first model: none, or the built-in one
    cost: str = "images"              # what an acquired unit costs: 1, its cells, or the
    #                                   corrections of the current model's suggestion
    target_f1: float | None = None    # cost_to_target's target (default: 95% of the best)

    def split(self, n_images: int) -> tuple[list[int], list[int]]:
        if self.test_indices is not None:
            test = sorted(set(int(i) for i in self.test_indices))
            return [i for i in range(n_images) if i not in set(test)], test
        return split_test(n_images, self.test_fraction, self.split_seed)

    def check(self, n_images: int, n_units: int | None = None) -> None:
        """Raise ValueError when the data is too small for the plan. `n_units`: the units
        of the pool (regions in region mode; default: the pool's images)."""
        pool, test = self.split(n_images)
        if len(test) < 1:
            raise ValueError("The test set would be empty; raise --test-fraction.")
        units = len(pool) if n_units is None else n_units
        needed = self.initial + self.batch * self.rounds
        if needed > units:
            kind = "regions" if self.unit == "region" else "images"
            raise ValueError(f"{n_images} images are too few for {len(test)} test images, "
                             f"{self.initial} initial and {self.rounds} rounds of "
                             f"{self.batch} {kind} (needs {needed} {kind} in the pool, "
                             f"has {units}).")
        for name in self.strategies:
            get_strategy(name)
        for value, allowed, what in ((self.unit, UNITS, "unit"), (self.start, STARTS, "start"),
                                     (self.cost, COSTS, "cost")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
        if self.region < 32:
            raise ValueError("regions must be at least 32 pixels wide")


def split_test(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(pool, test) index lists; the test set is a fixed random subset."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * fraction))
    return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


def metric_of(rows: list[dict]) -> str:
    """The curves' metric: macro-F1 over the groups when the data has groups, else F1."""
    return "macro_f1" if rows and "macro_f1" in rows[0] else "f1"


def columns(rows: list[dict]) -> list[str]:
    """COLUMNS, then macro_f1 and one f1_<group> per group when the rows have them."""
    extra = [k for k in (rows[0] if rows else {}) if k not in COLUMNS]
    return COLUMNS + sorted(extra, key=lambda k: (k != "macro_f1", k))


def _x(rows: list[dict]) -> str:
    return "cost" if rows and "cost" in rows[0] else "n_labelled"


def seed_area(curve: list[dict], lo: float, hi: float, metric: str, x: str) -> float:
    """Mean of the metric over [lo, hi] of the x axis (linear between rounds)."""
    xs = np.array([r[x] for r in curve], np.float64)
    ys = np.array([r[metric] for r in curve], np.float64)
    if hi <= lo:
        return float(ys[np.searchsorted(xs, lo, side="right") - 1]) if len(xs) else 0.0
    grid = np.linspace(lo, hi, 201)
    return float(np.trapezoid(np.interp(grid, xs, ys), grid) / (hi - lo))


def summarise(rows: list[dict], target_fraction: float = 0.95,
              target: float | None = None, metric: str | None = None) -> list[dict]:
    """Per strategy: mean final metric (macro-F1 with groups, else F1) and its sd over
    seeds; the area under the metric-vs-cost curve (mean over seeds; each seed's area over
    the cost range every strategy covers in that seed) and its ratio to random's, overall
    and per seed; the labels (units) and the cost to reach the target (`target`, default
    `target_fraction` of the best final mean of any strategy): labels on the mean curve,
    cost as the median over seeds of each seed's first cost at or above the target (None
    when the median seed does not reach it; `cost_to_target_per_seed` in seed order).
    `metric`: another column to summarise (e.g. one group's F1, "f1_<group>"); default
    macro-F1 with groups, else F1."""
    metric, x = metric or metric_of(rows), _x(rows)
    by: dict = {}
    for r in rows:
        by.setdefault(r["strategy"], {}).setdefault(r["seed"], []).append(r)
    for seeds in by.values():
        for curve in seeds.values():
            curve.sort(key=lambda r: r["round"])
    means = {}
    for name, seeds in by.items():
        rounds = sorted({r["round"] for c in seeds.values() for r in c})
        means[name] = [(np.mean([r["n_labelled"] for c in seeds.values() for r in c
                                 if r["round"] == k]),
                        np.mean([r[metric] for c in seeds.values() for r in c
                                 if r["round"] == k])) for k in rounds]
    best_final = max(m[-1][1] for m in means.values())
    target = float(target) if target is not None else target_fraction * best_final
    all_seeds = sorted({s for seeds in by.values() for s in seeds})
    areas: dict = {name: {} for name in by}
    for s in all_seeds:
        curves = {name: seeds[s] for name, seeds in by.items() if s in seeds}
        lo = max(c[0][x] for c in curves.values())
        hi = min(c[-1][x] for c in curves.values())
        for name, c in curves.items():
            areas[name][s] = seed_area(c, lo, hi, metric, x)
    out = []
    for name, seeds in by.items():
        finals = [c[-1][metric] for c in seeds.values()]
        reached = [x_ for x_, y in means[name] if y >= target]
        costs = [next((r[x] for r in seeds[s] if r[metric] >= target), None)
                 for s in sorted(seeds)]            # in seed order
        ordered = sorted(costs, key=lambda v: (v is None, v or 0))
        median_cost = ordered[(len(ordered) - 1) // 2] if ordered else None
        per_seed = {s: round(areas[name][s] / areas["random"][s], 3)
                    for s in areas[name] if "random" in areas and s in areas["random"]
                    and areas["random"][s] > 0}
        auc = float(np.mean(list(areas[name].values())))
        base = float(np.mean(list(areas["random"].values()))) if "random" in areas else None
        out.append({"strategy": name, "metric": metric, "final_f1": round(float(np.mean(finals)), 4),
                    "final_sd": round(float(np.std(finals)), 4), "auc": round(auc, 4),
                    "auc_vs_random": round(auc / base, 3) if base else None,
                    "auc_vs_random_per_seed": per_seed,
                    "labels_to_target": int(reached[0]) if reached else None,
                    "cost_to_target": None if median_cost is None else float(median_cost),
                    "cost_to_target_per_seed": [None if v is None else float(v) for v in costs],
                    "target_f1": round(float(target), 4)})
    return out


def figure(rows: list[dict], metric: str | None = None, cost: str = "images",
           unit: str = "image"):
    """Plotly learning curves against cost: mean over seeds with a band of one standard
    deviation; with groups, one panel per group and one for the macro mean."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metric = metric or metric_of(rows)
    x = _x(rows)
    panels = [metric] + (sorted(k for k in rows[0] if k.startswith("f1_"))
                         if rows and metric == "macro_f1" else [])
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True,
                        subplot_titles=[p.upper() if p == metric else p[3:] for p in panels]) \
        if len(panels) > 1 else go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
               "#17becf"]
    names = sorted({r["strategy"] for r in rows}, key=lambda n: (n != "random", n))
    for col, panel in enumerate(panels, start=1):
        where = {"row": 1, "col": col} if len(panels) > 1 else {}
        for i, name in enumerate(names):
            rounds = sorted({r["round"] for r in rows if r["strategy"] == name})
            xs, ys, sds = [], [], []
            for k in rounds:
                vals = [r for r in rows if r["strategy"] == name and r["round"] == k]
                xs.append(float(np.mean([v[x] for v in vals])))
                ys.append(float(np.mean([v[panel] for v in vals])))
                sds.append(float(np.std([v[panel] for v in vals])))
            color = palette[i % len(palette)]
            upper = [y + s for y, s in zip(ys, sds)]
            lower = [y - s for y, s in zip(ys, sds)]
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], fill="toself",
                                     line={"width": 0}, fillcolor=color, opacity=0.15,
                                     hoverinfo="skip", showlegend=False), **where)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name,
                                     legendgroup=name, showlegend=col == 1,
                                     line={"color": color}), **where)
    x_title = COST_TITLES[cost].format(unit=unit) if x == "cost" else "labelled images"
    if len(panels) > 1:
        for col in range(1, len(panels) + 1):
            fig.update_xaxes(title_text=x_title, row=1, col=col)
    else:
        fig.update_layout(xaxis_title=x_title)
    fig.update_layout(yaxis_title=metric.upper(),
                      title=f"Active learning: test {metric.upper()} vs {x_title} "
                            "(mean ± sd over seeds)", template="plotly_white")
    return fig

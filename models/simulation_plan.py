"""The plan and the report of an active-learning simulation: settings, the test split, the
summary table and the learning-curve figure. Torch-free, so the web tier can check a plan and
draw results without loading the model code (`models.simulation` runs the simulation).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from models.strategies import get_strategy

COLUMNS = ["strategy", "seed", "round", "n_labelled", "f1", "dice", "seconds"]


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

    def split(self, n_images: int) -> tuple[list[int], list[int]]:
        if self.test_indices is not None:
            test = sorted(set(int(i) for i in self.test_indices))
            return [i for i in range(n_images) if i not in set(test)], test
        return split_test(n_images, self.test_fraction, self.split_seed)

    def check(self, n_images: int) -> None:
        n_test = len(self.split(n_images)[1])
        needed = n_test + self.initial + self.batch * self.rounds
        if n_test < 1:
            raise ValueError("The test set would be empty; raise --test-fraction.")
        if needed > n_images:
            raise ValueError(f"{n_images} images are too few for {n_test} test images, "
                             f"{self.initial} initial and {self.rounds} rounds of "
                             f"{self.batch} (needs {needed}).")
        for name in self.strategies:
            get_strategy(name)


def split_test(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(pool, test) index lists; the test set is a fixed random subset."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * fraction))
    return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


def summarise(rows: list[dict], target_fraction: float = 0.95) -> list[dict]:
    """Per strategy: mean final F1, area under the mean learning curve (F1 vs labels,
    trapezoid, normalised by the label range) relative to random, and the labels needed to
    reach `target_fraction` of the best final mean F1 of any strategy."""
    by = {}
    for r in rows:
        by.setdefault(r["strategy"], {}).setdefault(r["round"], []).append(r)
    curves = {}
    for name, rounds in by.items():
        xs = [np.mean([r["n_labelled"] for r in rounds[k]]) for k in sorted(rounds)]
        ys = [np.mean([r["f1"] for r in rounds[k]]) for k in sorted(rounds)]
        sd = [np.std([r["f1"] for r in rounds[k]]) for k in sorted(rounds)]
        curves[name] = (np.array(xs), np.array(ys), np.array(sd))
    best_final = max(c[1][-1] for c in curves.values())
    target = target_fraction * best_final

    def area(xs, ys):
        return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if len(xs) > 1 else float(ys[0])

    base = area(*curves["random"][:2]) if "random" in curves else None
    out = []
    for name, (xs, ys, sd) in curves.items():
        reached = [x for x, y in zip(xs, ys) if y >= target]
        out.append({"strategy": name, "final_f1": round(float(ys[-1]), 4),
                    "final_sd": round(float(sd[-1]), 4), "auc": round(area(xs, ys), 4),
                    "auc_vs_random": round(area(xs, ys) / base, 3) if base else None,
                    "labels_to_target": int(reached[0]) if reached else None,
                    "target_f1": round(float(target), 4)})
    return out


def figure(rows: list[dict], metric: str = "f1"):
    """Plotly learning curves: mean over seeds with a band of one standard deviation."""
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    names = sorted({r["strategy"] for r in rows}, key=lambda n: (n != "random", n))
    for i, name in enumerate(names):
        rounds = sorted({r["round"] for r in rows if r["strategy"] == name})
        xs, ys, sds = [], [], []
        for k in rounds:
            vals = [r for r in rows if r["strategy"] == name and r["round"] == k]
            xs.append(float(np.mean([v["n_labelled"] for v in vals])))
            ys.append(float(np.mean([v[metric] for v in vals])))
            sds.append(float(np.std([v[metric] for v in vals])))
        color = palette[i % len(palette)]
        upper = [y + s for y, s in zip(ys, sds)]
        lower = [y - s for y, s in zip(ys, sds)]
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], fill="toself",
                                 line={"width": 0}, fillcolor=color, opacity=0.15,
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name,
                                 line={"color": color}))
    fig.update_layout(xaxis_title="labelled images", yaxis_title=metric.upper(),
                      title=f"Active learning: test {metric.upper()} vs labelled images "
                            "(mean ± sd over seeds)", template="plotly_white")
    return fig

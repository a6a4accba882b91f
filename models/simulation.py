"""Active-learning simulation with the ground truth as the oracle, counted in effort.

For each seed: a fixed test set (the same for every seed and strategy) and a random initial
labelled set of units (the same for every strategy of that seed). A unit is a whole image
or, with `plan.unit == "region"`, a square region of one (`plan.region` pixels; training
then uses the partial annotation: only labelled regions count). Each round trains a model
(warm-started from the previous round's, or from `start_model` in the first round), records
test F1@0.5 and Dice (and, with `groups`, F1 per group and their unweighted mean,
macro-F1), scores the unlabelled units with the strategy and "annotates" the batch it
selects. What a unit costs (`plan.cost`): 1 ("images": one unit), its true cells
("cells"), or the corrections of the current model's suggestion on it ("corrections":
redrawn + missed + false cells, models/corrections.py; without a model every cell is
drawn). The output is one row per strategy, seed and round (models.simulation_plan.COLUMNS,
plus macro_f1 and f1_<group> with groups), with the cumulative cost.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np

from models.cancel import Cancelled
from models.corrections import corrections
from models.metrics import mean_scores, score
from models.simulation_plan import (COLUMNS, SimulationPlan, figure, split_test,  # noqa: F401
                                    summarise)
from models.strategies import get_strategy
from models.regions import Box, regions_of
from models.training import TrainConfig, train_model

log = logging.getLogger(__name__)



def _predict(model, image):
    from models.inference import network_input
    return model.instances(model.probabilities(network_input(model, image)))


def test_metrics(model, images, labels, groups: list | None = None) -> dict:
    """F1, Dice (means over the test images); with `groups` (one name per image) also
    f1_<group> and macro_f1, their unweighted mean."""
    scores = [score(lab, _predict(model, img)) for img, lab in zip(images, labels)]
    out = mean_scores(scores)
    if groups is not None:
        names = sorted({g for g in groups if g is not None})
        for g in names:
            out[f"f1_{g}"] = float(np.mean([s.f1 for s, gg in zip(scores, groups) if gg == g]))
        out["macro_f1"] = float(np.mean([out[f"f1_{g}"] for g in names]))
    return out


def units_of(images: list[np.ndarray], pool: list[int], plan: SimulationPlan
             ) -> list[tuple[int, Box | None]]:
    """(image index, box or None for the whole image) of every unit of the pool."""
    if plan.unit == "image":
        return [(i, None) for i in pool]
    return [(i, box) for i in pool for box in regions_of(images[i].shape[-2:], plan.region)]


def _crop(array: np.ndarray, box: Box | None) -> np.ndarray:
    if box is None:
        return array
    y0, x0, y1, x1 = box
    return array[..., y0:y1, x0:x1]


def unit_cost(kind: str, truth: np.ndarray, suggestion: np.ndarray | None) -> int:
    if kind == "images":
        return 1
    if kind == "cells":
        return corrections(truth, None).cost
    return corrections(truth, suggestion).cost


def _training_set(images, labels, units, labelled):
    """Images, labels and annotated-region masks (None: the whole image) for `labelled`."""
    boxes: dict[int, list] = {}
    for u in labelled:
        i, box = units[u]
        boxes.setdefault(i, []).append(box)
    xs, ys, regions = [], [], []
    for i in sorted(boxes):
        xs.append(images[i])
        ys.append(labels[i])
        if any(b is None for b in boxes[i]):
            regions.append(None)
            continue
        mask = np.zeros(labels[i].shape, bool)
        for y0, x0, y1, x1 in boxes[i]:
            mask[y0:y1, x0:x1] = True
        regions.append(mask)
    return xs, ys, (None if all(r is None for r in regions) else regions)


def _train(images, labels, regions, cfg: TrainConfig, init, members: int, meta: dict | None):
    """The round's model(s): the main one warm-started, ensemble members from their own."""
    models = []
    for m in range(members):
        c = dataclasses.replace(cfg, seed=cfg.seed + 1000 * m)
        start = init[m] if init and m < len(init) else None
        models.append(train_model(images, labels, regions, config=c, init=start,
                                  meta=meta).model)
    return models


def simulate(images: list[np.ndarray], labels: list[np.ndarray], plan: SimulationPlan,
             cfg: TrainConfig, progress: Callable[[dict], None] | None = None,
             should_stop: Callable[[], bool] | None = None, groups: list | None = None,
             start_model=None, meta: dict | None = None) -> list[dict]:
    """Run the loop for every seed and strategy; `progress(row)` after each round. Raises
    `models.cancel.Cancelled` when `should_stop()` says so (checked before every round).
    `groups`: one group name per image (or None), for per-group F1 and macro-F1;
    `start_model`: the first model (plan.start == "builtin"); `meta`: given to every
    training (e.g. {"input_mapping": ...} so a scratch model reads images as the built-in
    one does)."""
    if plan.start == "builtin" and start_model is None:
        raise ValueError("start 'builtin' needs the built-in model")
    pool, test = plan.split(len(images))
    units = units_of(images, pool, plan)
    plan.check(len(images), n_units=len(units))
    test_images, test_labels = [images[i] for i in test], [labels[i] for i in test]
    test_groups = None if groups is None else [groups[i] for i in test]
    first = start_model if plan.start == "builtin" else None
    rows = []
    for seed in plan.seeds:
        initial = np.random.default_rng(seed).choice(len(units), plan.initial,
                                                     replace=False).tolist()
        for name in plan.strategies:
            strategy = get_strategy(name, passes=plan.passes, seed=seed)
            members = plan.ensemble_size if strategy.needs_ensemble else 1
            models = [first] * members if first is not None else None
            labelled, cost, memo = [], 0, {}
            batch = list(initial)
            for rnd in range(plan.rounds + 1):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                t0 = time.perf_counter()
                cost += sum(_pay(plan.cost, images, labels, units[u], models) for u in batch)
                labelled += batch
                xs, ys, regions = _training_set(images, labels, units, labelled)
                models = _train(xs, ys, regions, dataclasses.replace(cfg, seed=seed), models,
                                members, meta)
                metrics = test_metrics(models[0], test_images, test_labels, test_groups)
                row = {"strategy": name, "seed": seed, "round": rnd,
                       "n_labelled": len(labelled), "cost": cost,
                       "f1": round(metrics["f1"], 4), "dice": round(metrics["dice"], 4)}
                row.update({k: round(v, 4) for k, v in metrics.items()
                            if k == "macro_f1" or k.startswith("f1_")})
                batch = []
                if rnd < plan.rounds:
                    batch = _select(strategy, models, images, units, labelled, plan.batch,
                                    memo)
                row["seconds"] = round(time.perf_counter() - t0, 2)
                rows.append(row)
                log.info("simulation %s", row)
                if progress is not None:
                    progress(row)
    return rows


def _pay(kind: str, images, labels, unit, models) -> int:
    i, box = unit
    truth = _crop(labels[i], box)
    suggestion = None
    if kind == "corrections" and models:
        suggestion = _crop(_predict(models[0], images[i]), box)
    return unit_cost(kind, truth, suggestion)


def _select(strategy, models, images, units, labelled, batch, memo: dict) -> list[int]:
    """The next batch of unit indices. A strategy with `fixed_scores` (random, stratified)
    gives a unit the same score every round: `memo` keeps them."""
    def score(u):
        if not strategy.fixed_scores:
            return strategy.score(models, _crop(images[units[u][0]], units[u][1]), key=u)
        if u not in memo:
            memo[u] = strategy.score(models, _crop(images[units[u][0]], units[u][1]), key=u)
        return memo[u]
    taken = set(labelled)
    scores = {u: score(u) for u in range(len(units)) if u not in taken}
    known = [score(u).embedding for u in labelled] if strategy.uses_labelled else None
    return strategy.select(scores, batch, labelled=known)

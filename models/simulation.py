"""Active-learning simulation with the ground truth as the oracle.

For each seed: a fixed test set (the same for every seed and strategy) and a random initial
labelled set (the same for every strategy of that seed). Each round trains a model (warm
started from the previous round's), records test F1@0.5 and Dice, scores the unlabelled pool
with the strategy and "annotates" its top `batch` images. The output is one row per
strategy, seed and round: strategy, seed, round, n_labelled, f1, dice.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import numpy as np

from models.cancel import Cancelled
from models.metrics import mean_scores, score
from models.simulation_plan import (COLUMNS, SimulationPlan, figure, split_test,  # noqa: F401
                                    summarise)
from models.strategies import get_strategy
from models.training import TrainConfig, train_model

log = logging.getLogger(__name__)


def test_metrics(model, images, labels) -> dict:
    return mean_scores([score(lab, model.instances(model.probabilities(img)))
                        for img, lab in zip(images, labels)])


def _train(images, labels, idx, cfg: TrainConfig, init, members: int):
    """The round's model(s): the main one warm-started, ensemble members from their own."""
    models = []
    for m in range(members):
        c = dataclasses.replace(cfg, seed=cfg.seed + 1000 * m)
        start = init[m] if init and m < len(init) else None
        models.append(train_model([images[i] for i in idx], [labels[i] for i in idx],
                                  config=c, init=start).model)
    return models


def simulate(images: list[np.ndarray], labels: list[np.ndarray], plan: SimulationPlan,
             cfg: TrainConfig, progress: Callable[[dict], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Run the loop for every seed and strategy; `progress(row)` after each round. Raises
    `models.cancel.Cancelled` when `should_stop()` says so (checked before every round)."""
    import time

    plan.check(len(images))
    pool, test = plan.split(len(images))
    test_images, test_labels = [images[i] for i in test], [labels[i] for i in test]
    rows = []
    for seed in plan.seeds:
        initial = np.random.default_rng(seed).choice(pool, plan.initial, replace=False).tolist()
        for name in plan.strategies:
            strategy = get_strategy(name, passes=plan.passes, seed=seed)
            members = plan.ensemble_size if strategy.needs_ensemble else 1
            labelled, models = list(initial), None
            for rnd in range(plan.rounds + 1):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                t0 = time.perf_counter()
                models = _train(images, labels, labelled,
                                dataclasses.replace(cfg, seed=seed), models, members)
                metrics = test_metrics(models[0], test_images, test_labels)
                row = {"strategy": name, "seed": seed, "round": rnd,
                       "n_labelled": len(labelled), "f1": round(metrics["f1"], 4),
                       "dice": round(metrics["dice"], 4)}
                if rnd < plan.rounds:
                    unlabelled = [i for i in pool if i not in set(labelled)]
                    scores = {i: strategy.score(models, images[i], key=i) for i in unlabelled}
                    labelled += strategy.select(scores, plan.batch)
                row["seconds"] = round(time.perf_counter() - t0, 2)
                rows.append(row)
                log.info("simulation %s", row)
                if progress is not None:
                    progress(row)
    return rows

"""How far stratified-cheap's half-resolution cell count agrees with a full-resolution one on
the mixed DSB pool of issue 21's benchmark (small and large fluorescence, H&E, brightfield),
and what that does to the picks. Trains nothing; times nothing.

- per group: Spearman correlation of the two counts, their median relative difference, and
  each count's Spearman correlation with the true number of nuclei;
- the picks: the benchmark's selection replayed (it needs no model: stratified-cheap's scores
  depend only on the pixels and the seed) with each count, image and region units, seeds 0-2;
  how many of the picked units the two share, and from which round they part.

    python bench/count_agreement.py
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from bench.al_mixed import data, one_plan  # noqa: E402
from models.builtin_data import GROUPS  # noqa: E402
from models.count_baseline import LogParams, count_blobs  # noqa: E402
from models.simulation import _select, units_of  # noqa: E402
from models.strategies import get_strategy  # noqa: E402

ROUNDS = 5


def group_rows(images, labels, groups, pool) -> list[str]:
    rows = []
    for g in GROUPS:
        ids = [i for i in pool if groups[i] == g]
        full = np.array([count_blobs(images[i], LogParams(), 1) for i in ids], float)
        half = np.array([count_blobs(images[i], LogParams(), 2) for i in ids], float)
        truth = np.array([len(np.unique(labels[i])) - 1 for i in ids], float)
        rel = np.abs(half - full) / np.maximum(full, 1)
        rows.append(f"| {g} | {len(ids)} | {spearmanr(half, full)[0]:.3f} | {np.median(rel):.1%} "
                    f"| {spearmanr(full, truth)[0]:.3f} | {spearmanr(half, truth)[0]:.3f} |")
    return rows


def picks(images, test, unit: str, batch: int, seed: int, factor: int) -> list[list[int]]:
    """The units stratified-cheap picks round by round, as the simulation picks them."""
    args = SimpleNamespace(batch=batch, rounds=ROUNDS, passes=8, unit=unit, region_size=256,
                           start="builtin")
    plan = one_plan(args, "stratified-cheap", seed, test)
    pool, _ = plan.split(len(images))
    units = units_of(images, pool, plan)
    strategy = get_strategy("stratified-cheap", passes=8, seed=seed, count_factor=factor)
    labelled = np.random.default_rng(seed).choice(len(units), 1, replace=False).tolist()
    rounds, memo = [list(labelled)], {}
    for _ in range(ROUNDS):
        batch_picks = _select(strategy, None, images, units, labelled, batch, memo)
        labelled += batch_picks
        rounds.append(batch_picks)
    return rounds


def pick_rows(images, test) -> list[str]:
    rows = []
    for unit, batch in (("image", 2), ("region", 8)):
        for seed in range(3):
            half, full = (picks(images, test, unit, batch, seed, f) for f in (2, 1))
            flat_h, flat_f = sum(half, []), sum(full, [])
            parted = next((k for k, (a, b) in enumerate(zip(half, full)) if a != b), None)
            rows.append(f"| {unit} | {batch} | {seed} | {len(set(flat_h) & set(flat_f))} of "
                        f"{len(flat_h)} | {'never' if parted is None else parted} |")
    return rows


def main() -> None:
    images, labels, groups, test = data(SimpleNamespace(pool=200, test=20))
    pool = [i for i in range(len(images)) if i not in set(test)]
    body = f"""
The pool of the mixed benchmark (bench/al_mixed.py: 200 DSB training images, grey input as
the built-in model reads them, H&E as RGB). Full: the LoG count at full resolution; half: on
2x2 block means with the scales halved (`count_blobs(..., factor=2)`, what stratified-cheap
ships).

| group | images | Spearman half ~ full | median relative difference | Spearman full ~ true nuclei | Spearman half ~ true nuclei |
|---|---|---|---|---|---|
{chr(10).join(group_rows(images, labels, groups, pool))}

The picks, replayed as the benchmark makes them (a start unit, then {ROUNDS} rounds), with
each count:

| unit | a round | seed | units picked by both | first round that differs (0 = start) |
|---|---|---|---|---|
{chr(10).join(pick_rows(images, test))}
"""
    write_section("count_agreement", "Half- against full-resolution cell counts "
                  "(stratified-cheap; issue 21)", body)


if __name__ == "__main__":
    main()

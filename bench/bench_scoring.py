"""Cost of uncertainty scoring with the default network (U-Net width 16, depth 4) on this
machine, in one run:

- one plain prediction of a 512x512 image (the shipped inference path) = the baseline;
- the shipped MC-dropout score with T=8 (deterministic part once, output layer 8 times);
- the naive MC-dropout score: 8 full stochastic passes (torch);
- images/s for scoring a pool (default 1,000 images) of DSB 2018 fluorescence images (the 361
  training images, cycled) with the entropy strategy, T=8.

    python bench/bench_scoring.py

With --model-free: the model-free strategies' scoring of the same pool instead: stratified
(quick image statistics on a subsample) = the baseline, against stratified-cheap (those
statistics plus a LoG blob count per image, at half resolution as shipped and at full
resolution as before), and how far the two counts and their picks agree.

    python bench/bench_scoring.py --model-free
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import median_ms, write_section  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402
from models.model import SegmentationModel  # noqa: E402
from models.strategies import get_strategy  # noqa: E402
from models.uncertainty import mc_dropout  # noqa: E402
from models.unet import UNet, mc_probabilities_naive  # noqa: E402

ARCH = dict(in_channels=1, n_classes=3, width=16, depth=4, dropout=0.2)
T = 8


def make_model() -> SegmentationModel:
    torch.manual_seed(0)
    net = UNet(**ARCH).eval()
    return SegmentationModel(net, {"architecture": net.config,
                                   "normalisation": {"low": 1, "high": 99.8}},
                             module=net, frozen=True)


def crop_512(images: list[np.ndarray]) -> np.ndarray:
    """A 512x512 plane tiled from 256x256 corners of real images."""
    tiles = [im[0, :256, :256] for im in images if min(im.shape[1:]) >= 256][:4]
    top, bottom = np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:4], 1)
    return np.concatenate([top, bottom], 0)


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=1000, help="images in the scored pool")
    ap.add_argument("--model-free", action="store_true",
                    help="time stratified against stratified-cheap instead")
    args = ap.parse_args()
    n_pool = args.pool
    train_ids, _ = fluorescence_split()
    images, _labels = load(train_ids)
    if args.model_free:
        return model_free(images, n_pool)
    image = crop_512(images)
    model = make_model()
    plain_ms = median_ms(lambda: model.probabilities(image))
    mc_ms = median_ms(lambda: mc_dropout(model, image, passes=T))
    x = torch.from_numpy(model.prepare(image)[None].copy())
    naive_ms = median_ms(lambda: mc_probabilities_naive(model.module, x, T), repeat=3)
    engine = model.runtime().name

    strategy = get_strategy("entropy", passes=T)
    pool = [images[i % len(images)] for i in range(n_pool)]
    megapixels = sum(im.shape[-1] * im.shape[-2] for im in pool) / 1e6
    t = time.perf_counter()
    values = [strategy.score([model], im, key=k).value for k, im in enumerate(pool)]
    pool_s = time.perf_counter() - t
    assert len(values) == n_pool and all(np.isfinite(values))
    sizes = [max(im.shape[-2:]) for im in pool]

    body = f"""
Default network, random weights (cost does not depend on them), inference engine here:
`{engine}`. 512x512 image tiled from real DSB crops; median of 7 runs (naive: 3).

| 512x512, one image | time | vs one plain prediction |
|---|---|---|
| plain prediction (shipped path) | {plain_ms:.0f} ms | 1.00x |
| **MC dropout T={T}, shipped** (everything before the output dropout once, output layer {T}x) | **{mc_ms:.0f} ms** | **{mc_ms / plain_ms:.2f}x** (goal <= 1.5x) |
| MC dropout T={T}, naive ({T} full stochastic passes, torch) | {naive_ms:.0f} ms | {naive_ms / plain_ms:.2f}x |

Scoring a {n_pool}-image pool (DSB fluorescence training images cycled; sides
{min(sizes)}-{max(sizes)} px, {megapixels:.0f} megapixels in all), entropy strategy, T={T}:
**{n_pool / pool_s:.1f} images/s** ({megapixels / pool_s:.2f} MP/s, {pool_s:.0f} s in all).
"""
    write_section("scoring", "Uncertainty scoring cost (MC dropout)", body)


def model_free(images: list[np.ndarray], n_pool: int) -> None:
    from scipy.stats import spearmanr

    pool = [images[i % len(images)] for i in range(n_pool)]
    megapixels = sum(im.shape[-1] * im.shape[-2] for im in pool) / 1e6
    seconds, picks, counts = {}, {}, {}
    runs = (("stratified", "stratified", {}),
            ("stratified-cheap (shipped: count at half resolution)", "stratified-cheap", {}),
            ("stratified-cheap, count at full resolution", "stratified-cheap",
             {"count_factor": 1}))
    for label, name, options in runs:
        strategy = get_strategy(name, **options)
        t = time.perf_counter()
        scores = {k: strategy.score([], im, key=k) for k, im in enumerate(pool)}
        picks[label] = strategy.select(scores, min(500, n_pool))
        seconds[label] = time.perf_counter() - t
        counts[label] = [scores[k].cost for k in range(min(len(images), n_pool))]
    base = seconds["stratified"]
    rows = "\n".join(f"| {name} | {s:.1f} s | {1000 * s / n_pool:.0f} ms | {s / megapixels:.2f} s "
                     f"| {s / base:.1f}x |" for name, s in seconds.items())
    half, full = (np.array(counts[runs[k][0]], float) for k in (1, 2))
    rel = np.abs(half - full) / np.maximum(full, 1)
    first = {k: v[:50] for k, v in picks.items()}
    same = len(set(first[runs[1][0]]) & set(first[runs[2][0]]))
    body = f"""
Scoring and ranking (the first 500) a {n_pool}-image pool without a model (DSB fluorescence
training images cycled, {megapixels:.0f} megapixels in all), one process:

| strategy | pool | per image | per megapixel | vs stratified |
|---|---|---|---|---|
{rows}

The count at half resolution against the full one, on the {len(half)} distinct images:
Spearman {spearmanr(half, full)[0]:.3f}; median relative difference {np.median(rel):.1%}
(90th percentile {np.percentile(rel, 90):.1%}). The first 50 picks share {same} of 50 units.
"""
    write_section("scoring_model_free", "Scoring cost without a model (stratified, "
                  "stratified-cheap)", body)


if __name__ == "__main__":
    main()

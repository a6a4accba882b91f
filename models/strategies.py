"""Active-learning selection strategies: classes behind one interface.

A strategy `score`s one unit (an image, or a region of one) under the current model(s), and
`select`s a batch from scored units. Scoring writes numbers (the app stores them as Score
rows); selection only reads them. A strategy whose pick is not simply "highest score first"
(`ranks = True`) gives the order it picked in, which the app stores as `Score.rank`.

    random      a reproducible pseudo-random number per unit (the baseline)
    stratified  random, but stratified: units are clustered on image statistics that are
                quick to compute (intensity percentiles, contrast, texture, colour, size;
                no model) and the clusters are taken in turn, so a mixed pool's rare kinds
                of image are not under-drawn
    stratified-cheap  stratified, but within a cluster the units that are cheaper to
                annotate, with fewer cells (counted by blob detection), tend to come first
                (drawn ~ (1 + cells) ** -2; a unit with no cells found counts as the
                cluster's median)
    entropy     mean MC-dropout predictive entropy, highest first
    bald        mean MC-dropout mutual information (Bayesian active learning by
                disagreement), highest first
    power       BALD with power sampling: a batch is drawn in proportion to score ** beta
                (without replacement, Gumbel top-k) instead of the top-k, which picks
                near-duplicates (Kirsch et al., TMLR 2023)
    ensemble    mean mutual information between ensemble members (different seeds)
    diversity   entropy, then a greedy k-centre pick on the network's embeddings among the
                most uncertain, so one batch does not hold near-duplicates
    coverage    k-centre on the network's embeddings over the whole unlabelled pool (from
                the labelled units when their embeddings are given): the unit farthest from
                everything labelled or picked comes next
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageScore:
    value: float
    heatmap: np.ndarray | None = None       # (Y, X) per-pixel uncertainty
    embedding: np.ndarray | None = None     # (F,)
    cost: float | None = None               # estimated cost of annotating the unit (cells)


class Strategy:
    """The interface. Subclasses set `name`, `description` and override `score` (and
    `select` when their pick is not the top scores)."""
    name = ""
    description = ""
    needs_model = True          # False: scores without a model (random, stratified)
    fixed_scores = False        # True: a unit's score depends only on the seed, its key and
                                # its pixels, never on the round (a simulation keeps them)
    needs_pixels = True         # False: scores without reading the image (random)
    needs_ensemble = False      # True: `models` holds the ensemble members
    ranks = False               # True: `select` gives an order that is stored as a rank
    uses_labelled = False       # True: `select` wants the labelled units' embeddings
    batch_only = False          # True: only a batch is picked in order (the rest by score)

    def __init__(self, passes: int = 8, seed: int = 0, **options):
        self.passes = passes
        self.seed = seed
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}(passes={self.passes}, seed={self.seed})"

    def score(self, models: list, image: np.ndarray, key: int = 0) -> ImageScore:
        """Score one unit; `models[0]` is the current model, the rest ensemble members;
        `key` identifies the unit (random draws are reproducible per key)."""
        raise NotImplementedError

    def select(self, scores: dict, batch: int, labelled: list | None = None) -> list:
        """The keys of the `batch` units to annotate next, in order. `labelled`: the
        embeddings of the units already labelled (strategies with `uses_labelled`)."""
        return sorted(scores, key=lambda k: (-scores[k].value, k))[:batch]

    def _rng(self, *keys) -> np.random.Generator:
        return np.random.default_rng([self.seed, *[int(k) for k in keys]])


class Random(Strategy):
    name = "random"
    description = "Random order (baseline)."
    needs_model = False
    needs_pixels = False
    fixed_scores = True

    def score(self, models, image, key=0):
        return ImageScore(float(self._rng(key).random()))


class Stratified(Strategy):
    name = "stratified"
    description = ("Random, stratified by clusters of image statistics (no model needed): "
                   "every kind of image in a mixed pool gets its turn.")
    needs_model = False
    fixed_scores = True
    ranks = True
    max_clusters = 8

    def score(self, models, image, key=0):
        return ImageScore(float(self._rng(key).random()), embedding=image_statistics(image))

    def select(self, scores, batch, labelled=None):
        keys = sorted(scores)
        if not keys:
            return []
        clusters = cluster(np.stack([scores[k].embedding for k in keys]),
                           self.max_clusters, self.seed)
        groups: dict[int, list] = {}
        for k, c in zip(keys, clusters):
            groups.setdefault(int(c), []).append(k)
        for c, members in groups.items():
            groups[c] = self._order(members, scores, c)
        order = self._rng(len(keys)).permutation(sorted(groups)).tolist()
        picked = []
        while len(picked) < min(batch, len(keys)):
            for c in order:
                if groups[c] and len(picked) < batch:
                    picked.append(groups[c].pop(0))
        return picked

    def _order(self, members: list, scores: dict, c: int) -> list:
        """The order one cluster's units are taken in: random (by their scores)."""
        return sorted(members, key=lambda k: (scores[k].value, k))


class StratifiedCheap(Stratified):
    name = "stratified-cheap"
    description = ("Stratified random, but within each kind of image the units with fewer "
                   "cells (counted by blob detection, no model) tend to come first, so each "
                   "kind is first met where there is less to correct.")

    def score(self, models, image, key=0):
        result = super().score(models, image, key)
        result.cost = float(estimated_cells(image, self.options.get("count_factor",
                                                                  COUNT_FACTOR)))
        return result

    def _order(self, members, scores, c):
        """Drawn without replacement with probability ~ (1 + estimated cells) ** -beta
        (Gumbel top-k; option `cost_beta`, default 2), so cheap units tend to come first
        but any can. A unit where no cell was found (background, or a stain the blob
        detector misses) counts as the cluster's median, so empty tiles are not served
        first."""
        beta = float(self.options.get("cost_beta", 2.0))
        cost = np.array([max(float(scores[k].cost or 0.0), 0.0) for k in members])
        if (cost > 0).any():
            cost[cost == 0] = np.median(cost[cost > 0])
        order = gumbel_order(-beta * np.log1p(cost), self._rng(len(scores), 11, c))
        return [members[i] for i in order]


class Uncertainty(Strategy):
    """MC-dropout uncertainty, highest first."""
    measure = "entropy"

    def score(self, models, image, key=0):
        # torch is imported here, when a unit is scored (in a job), so that naming and
        # checking strategies stays torch-free for the web tier
        from models import uncertainty
        u = uncertainty.mc_dropout(models[0], image, passes=self.passes, seed=self.seed + key)
        heat = u.mutual_information if self.measure == "bald" else u.entropy
        return ImageScore(u.score(self.measure), heat, u.embedding)


class Entropy(Uncertainty):
    name = "entropy"
    description = "MC-dropout predictive entropy (most uncertain first)."


class Bald(Uncertainty):
    name = "bald"
    measure = "bald"
    description = "BALD: MC-dropout mutual information (where dropout samples disagree)."


class Power(Uncertainty):
    name = "power"
    measure = "bald"
    ranks = True
    description = ("BALD with power sampling: a batch drawn in proportion to score^beta, "
                   "not the top-k, so it is not a set of near-duplicates.")

    def select(self, scores, batch, labelled=None):
        return power_sample(scores, batch, self.options.get("beta", 1.0), self._rng(
            len(scores), 7))


class Ensemble(Strategy):
    name = "ensemble"
    description = "Ensemble disagreement (models trained with different seeds)."
    needs_ensemble = True

    def score(self, models, image, key=0):
        from models import uncertainty
        u = uncertainty.ensemble(models, image)
        return ImageScore(u.score("ensemble"), u.mutual_information, u.embedding)


class Diversity(Entropy):
    name = "diversity"
    ranks = True
    batch_only = True
    pool_factor = 3                 # candidates = pool_factor x batch
    description = "Entropy, then k-centre on image features so one batch is varied."

    def select(self, scores, batch, labelled=None):
        ranked = Strategy.select(self, scores, len(scores))
        if batch <= 1:
            return ranked[:batch]
        pool = ranked[:max(batch, self.pool_factor * batch)]
        emb = np.stack([np.asarray(scores[k].embedding, np.float64) for k in pool])
        return [pool[i] for i in k_center_greedy(emb, batch, first=0)]


class Coverage(Entropy):
    name = "coverage"
    ranks = True
    uses_labelled = True
    description = ("Coverage: k-centre on the network's embeddings over the whole "
                   "unlabelled pool, farthest from what is labelled first.")

    def select(self, scores, batch, labelled=None):
        keys = sorted(scores, key=lambda k: (-scores[k].value, k))
        if not keys:
            return []
        emb = np.stack([np.asarray(scores[k].embedding, np.float64) for k in keys])
        known = None if not labelled else np.stack([np.asarray(e, np.float64)
                                                    for e in labelled])
        return [keys[i] for i in k_center_greedy(emb, batch, first=0, centres=known)]


def power_sample(scores: dict, batch: int, beta: float, rng: np.random.Generator) -> list:
    """`batch` keys drawn without replacement with probability ~ value ** beta (Gumbel
    top-k: the order of beta * log(value) + Gumbel noise)."""
    keys = sorted(scores)
    if not keys:
        return []
    values = np.array([max(float(scores[k].value), 1e-12) for k in keys])
    return [keys[i] for i in gumbel_order(beta * np.log(values), rng)[:batch]]


def gumbel_order(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices in the order of a draw without replacement with probability ~
    exp(log_weights) (Gumbel top-k: sorted by log weight + Gumbel noise)."""
    noisy = log_weights + rng.gumbel(size=len(log_weights))
    return np.argsort(-noisy, kind="stable")


def k_center_greedy(points: np.ndarray, k: int, first: int = 0,
                    centres: np.ndarray | None = None) -> list[int]:
    """Indices of k points, each the farthest from those already chosen (features
    standardised over points and centres, Euclidean). Starts from `first`, or, when
    `centres` (e.g. the labelled units) are given, from the point farthest from them."""
    n = len(points)
    if n == 0 or k <= 0:
        return []
    everything = points if centres is None else np.concatenate([points, centres])
    mean, sd = everything.mean(0), everything.std(0) + 1e-8
    x = (points - mean) / sd
    if centres is not None and len(centres):
        c = (centres - mean) / sd
        dist = np.min(np.linalg.norm(x[:, None, :] - c[None, :, :], axis=2), axis=1)
        first = int(dist.argmax())
        dist = np.minimum(dist, np.linalg.norm(x - x[first], axis=1))
    else:
        dist = np.linalg.norm(x - x[first], axis=1)
    chosen = [first]
    dist[first] = -1.0
    while len(chosen) < min(k, n):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        dist[chosen] = -1.0
    return chosen


def image_statistics(image: np.ndarray) -> np.ndarray:
    """Cheap statistics of a (C, Y, X) or (Y, X) image, computed on a subsample: log size,
    channels, the 1/50/99th percentiles and their spread relative to the range, the mean
    gradient (texture), the share of bright pixels and the colourfulness. Comparable
    across bit depths (percentiles are taken relative to the image's own range)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    c, h, w = img.shape[-3:]
    step = max(1, int(np.sqrt(h * w / 65536)))
    sub = img[:, ::step, ::step].astype(np.float32)     # only the subsample becomes float
    grey = sub.mean(axis=0)
    lo, p5, mid, p95, hi = np.percentile(grey, (0.5, 5, 50, 95, 99.5))
    span = float(hi - lo) or 1.0
    norm = np.clip((grey - lo) / span, 0, 1)
    gy, gx = np.gradient(norm)
    colour = float(np.mean(np.std(sub[:3], axis=0)) / span) if c >= 3 else 0.0
    return np.array([np.log(h * w), min(c, 4), (p5 - lo) / span, (mid - lo) / span,
                     (p95 - lo) / span, float(norm.std()), float(np.hypot(gy, gx).mean()),
                     float((norm > 0.5).mean()), colour], np.float64)


COUNT_FACTOR = 2         # estimated_cells counts on 2x2 block means (a quarter of the LoG)


def estimated_cells(image: np.ndarray, factor: int = COUNT_FACTOR) -> int:
    """About how many cells a (C, Y, X) or (Y, X) image holds, without a model: blobs of a
    Laplacian-of-Gaussian on its nucleus-contrast channel (models.count_baseline, default
    parameters), counted at half resolution (`count_blobs` with `factor` 2, scales halved;
    full resolution for a side under 64 px; stratified-cheap's option `count_factor`). The
    channel is built in row strips (models.nucleus_contrast), so a big image costs about 8
    bytes a pixel. A 3-channel image whose channels differ is read as H&E (haematoxylin by
    colour deconvolution); on a 3-channel fluorescence stack the count means little, and the
    strategy falls back to about plain stratified order."""
    from models.count_baseline import LogParams, count_blobs
    return count_blobs(np.asarray(image), LogParams(), factor)


def cluster(features: np.ndarray, max_clusters: int, seed: int) -> np.ndarray:
    """Cluster labels of standardised `features` (k-means, k ~ sqrt(n / 2), at most
    `max_clusters`; one cluster for fewer than four units)."""
    n = len(features)
    k = int(min(max_clusters, max(1, round(np.sqrt(n / 2)))))
    if n < 4 or k < 2:
        return np.zeros(n, int)
    from sklearn.cluster import KMeans
    x = (features - features.mean(0)) / (features.std(0) + 1e-8)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


CLASSES = {cls.name: cls for cls in (Random, Stratified, StratifiedCheap, Entropy, Bald, Power,
                                     Ensemble, Diversity, Coverage)}
STRATEGIES = {name: cls.description for name, cls in CLASSES.items()}


def get_strategy(name: str, passes: int = 8, seed: int = 0, **options) -> Strategy:
    if name not in CLASSES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(CLASSES)}")
    return CLASSES[name](passes=passes, seed=seed, **options)

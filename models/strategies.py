"""Active-learning selection strategies: plug-ins with one interface.

A strategy scores one image given the current model(s) (`score`) and picks a batch from
scored images (`select`; default: the highest scores). Scoring writes numbers, ranking only
reads them, so the app stores scores as rows and the queue sorts by them.

    random     a reproducible pseudo-random number per image (the baseline)
    entropy    mean MC-dropout predictive entropy
    bald       mean MC-dropout mutual information (Bayesian active learning by disagreement)
    ensemble   mean mutual information between ensemble members (different seeds)
    diversity  entropy, then a greedy k-centre pick on image embeddings among the most
               uncertain, so one batch does not hold near-duplicates
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np



@dataclass
class ImageScore:
    value: float
    heatmap: np.ndarray | None = None       # (Y, X) per-pixel uncertainty
    embedding: np.ndarray | None = None     # (F,)


@dataclass
class Strategy:
    name: str
    passes: int = 8                          # MC-dropout samples T
    seed: int = 0
    needs_ensemble: bool = False
    pool_factor: int = 3                     # diversity: candidates = pool_factor x batch
    description: str = field(default="", repr=False)

    def score(self, models: list, image: np.ndarray, key: int = 0) -> ImageScore:
        """Score one image; `models[0]` is the active model, the rest ensemble members;
        `key` identifies the image (random strategy)."""
        if self.name == "random":
            return ImageScore(float(np.random.default_rng([self.seed, int(key)]).random()))
        # torch is imported here, when an image is scored (in a job), so that naming and
        # checking strategies stays torch-free for the web tier (no torch in web workers).
        from models import uncertainty
        if self.name == "ensemble":
            u = uncertainty.ensemble(models, image)
            return ImageScore(u.score("ensemble"), u.mutual_information, u.embedding)
        u = uncertainty.mc_dropout(models[0], image, passes=self.passes, seed=self.seed + key)
        measure = "bald" if self.name == "bald" else "entropy"
        heat = u.mutual_information if measure == "bald" else u.entropy
        return ImageScore(u.score(measure), heat, u.embedding)

    def select(self, scores: dict, batch: int) -> list:
        """The keys of the `batch` images to annotate next, in order."""
        ranked = sorted(scores, key=lambda k: (-scores[k].value, k))
        if self.name != "diversity" or batch <= 1:
            return ranked[:batch]
        pool = ranked[:max(batch, self.pool_factor * batch)]
        emb = np.stack([np.asarray(scores[k].embedding, np.float64) for k in pool])
        picked = k_center_greedy(emb, batch, first=0)
        return [pool[i] for i in picked]


def k_center_greedy(points: np.ndarray, k: int, first: int = 0) -> list[int]:
    """Indices of k points, each the farthest from those already chosen (standardised
    features, Euclidean), starting from `first`."""
    n = len(points)
    if n == 0:
        return []
    x = (points - points.mean(0)) / (points.std(0) + 1e-8)
    chosen = [first]
    dist = np.linalg.norm(x - x[first], axis=1)
    while len(chosen) < min(k, n):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


STRATEGIES = {
    "random": "Random order (baseline).",
    "entropy": "MC-dropout predictive entropy (most uncertain first).",
    "bald": "BALD: MC-dropout mutual information (where dropout samples disagree).",
    "ensemble": "Ensemble disagreement (models trained with different seeds).",
    "diversity": "Entropy, then k-centre on image features so one batch is varied.",
}


def get_strategy(name: str, passes: int = 8, seed: int = 0) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return Strategy(name, passes=passes, seed=seed, needs_ensemble=name == "ensemble",
                    description=STRATEGIES[name])

"""What correcting a suggestion costs: the oracle of the simulations measured in effort.

An annotator who is shown a model's suggestion for an image and corrects it to the truth
keeps every suggested cell that matches a true cell well (IoU >= `iou`, one-to-one, the
matching of `models.metrics.score`), and for the rest:
- redraws a suggested cell that overlaps a true cell only poorly (IoU below `iou`): one
  correction per such pair (paired one-to-one, largest overlap first);
- draws a true cell that no suggested cell overlaps (missed): one correction each;
- deletes a suggested cell that overlaps no true cell left (false): one correction each.

The cost is redrawn + missed + false; without a suggestion every true cell is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from models.metrics import iou_matrix


@dataclass(frozen=True)
class Corrections:
    kept: int
    redrawn: int
    missed: int
    false: int

    @property
    def cost(self) -> int:
        return self.redrawn + self.missed + self.false

    def as_dict(self) -> dict:
        return {"kept": self.kept, "redrawn": self.redrawn, "missed": self.missed,
                "false": self.false, "cost": self.cost}


def corrections(truth: np.ndarray, suggestion: np.ndarray | None,
                iou: float = 0.5) -> Corrections:
    """The corrections that turn `suggestion` (instance labels, or None) into `truth`."""
    truth = np.asarray(truth)
    if suggestion is None:
        n_true = len(np.setdiff1d(np.unique(truth), [0]))
        return Corrections(0, 0, n_true, 0)
    suggestion = np.asarray(suggestion)
    if suggestion.shape != truth.shape:
        raise ValueError(f"suggestion {suggestion.shape} and truth {truth.shape} differ in shape")
    m = iou_matrix(truth, suggestion)
    n_true, n_pred = m.shape
    kept_t, kept_p = set(), set()
    if n_true and n_pred:
        rows, cols = linear_sum_assignment(-m)
        for r, c in zip(rows, cols):
            if m[r, c] >= iou:
                kept_t.add(int(r))
                kept_p.add(int(c))
    rest_t = [r for r in range(n_true) if r not in kept_t]
    rest_p = [c for c in range(n_pred) if c not in kept_p]
    redrawn = 0
    if rest_t and rest_p:
        sub = m[np.ix_(rest_t, rest_p)]
        rows, cols = linear_sum_assignment(-sub)
        redrawn = int(np.count_nonzero(sub[rows, cols] > 0))
    return Corrections(kept=len(kept_t), redrawn=redrawn, missed=len(rest_t) - redrawn,
                       false=len(rest_p) - redrawn)

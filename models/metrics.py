"""Segmentation metrics: pixel Dice and IoU, instance F1 at an IoU threshold (one-to-one
matching), mean matched IoU, and count error."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Scores:
    f1: float
    precision: float
    recall: float
    mean_matched_iou: float
    dice: float
    iou: float
    n_true: int
    n_pred: int
    count_error: int

    def as_dict(self) -> dict:
        return asdict(self)


def pixel_dice_iou(true_fg: np.ndarray, pred_fg: np.ndarray) -> tuple[float, float]:
    t, p = true_fg.astype(bool), pred_fg.astype(bool)
    inter, total = np.logical_and(t, p).sum(), t.sum() + p.sum()
    union = np.logical_or(t, p).sum()
    dice = 1.0 if total == 0 else 2 * inter / total
    iou = 1.0 if union == 0 else inter / union
    return float(dice), float(iou)


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every (true instance, predicted instance) pair, from one joint histogram."""
    t, p = true.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    nt, np_ = int(t.max(initial=0)) + 1, int(p.max(initial=0)) + 1
    joint = np.bincount(t * np_ + p, minlength=nt * np_).reshape(nt, np_)
    area_t, area_p = joint.sum(1), joint.sum(0)
    inter = joint[1:, 1:].astype(np.float64)
    union = area_t[1:, None] + area_p[None, 1:] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    present_t = np.flatnonzero(area_t[1:] > 0)
    present_p = np.flatnonzero(area_p[1:] > 0)
    return iou[np.ix_(present_t, present_p)]


def score(true: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> Scores:
    iou = iou_matrix(true, pred)
    n_true, n_pred = iou.shape
    matched = np.zeros(0)
    if n_true and n_pred:
        rows, cols = linear_sum_assignment(-iou)
        matched = iou[rows, cols]
        matched = matched[matched >= threshold]
    tp = len(matched)
    precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * tp / (n_true + n_pred) if (n_true + n_pred) else 1.0
    dice, pix_iou = pixel_dice_iou(true > 0, pred > 0)
    return Scores(float(f1), float(precision), float(recall),
                  float(matched.mean()) if tp else 0.0, dice, pix_iou, n_true, n_pred,
                  int(n_pred - n_true))


def mean_scores(all_scores: list[Scores]) -> dict:
    """Averages over images (F1 pooled from counts, the rest averaged)."""
    if not all_scores:
        return {}
    out = {k: float(np.mean([getattr(s, k) for s in all_scores]))
           for k in ("precision", "recall", "mean_matched_iou", "dice", "iou")}
    out["f1"] = float(np.mean([s.f1 for s in all_scores]))
    out["mean_abs_count_error"] = float(np.mean([abs(s.count_error) for s in all_scores]))
    out["n_images"] = len(all_scores)
    return out

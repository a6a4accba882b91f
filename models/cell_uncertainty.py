"""Per-cell uncertainty of a model's suggestion, so the annotator checks the doubtful cells
first and accepts the rest at once.

The per-pixel map is the MC-dropout predictive entropy H[mean_t p_t] (`models.uncertainty`)
divided by ln K (0 = certain, 1 = uniform over the K classes). A cell's score is the mean of
that map over the cell's pixels. Why this score (measured with the shipped nuclei-v1 on 326
suggested cells of 12 DSB images, 6 fluorescence and 6 H&E, 131 of them wrong, i.e. no true
cell with IoU >= 0.5: `python bench/bench_cell_uncertainty.py --mixed`; AUC = how well the
score ranks wrong cells above right ones):

- Predictive entropy, not BALD: mean entropy over the cell AUC 0.85, mean mutual
  information 0.53, near chance (0.75 against 0.56 on 12 fluorescence test images). Only
  the output layer of this U-Net is stochastic (channel dropout before the 1x1
  convolution), so the mutual information sees only last-layer
  disagreement, small and noisy; the predictive entropy contains it (H = MI + expected
  entropy) and adds what makes a suggested cell wrong in practice: probabilities near the
  decision between interior, boundary and background, as on cells unlike those the model
  was trained on.
- Over the cell, not its boundary ring: the ring (2 px either side of the outline) scored
  AUC 0.71, the larger of cell and ring 0.71, the cell's core without its edge 0.84 (a
  one-off comparison at stride 1, not kept in the benchmark). The interior / boundary /
  background transition is uncertain by a pixel on every cell, right or wrong, so the ring
  mostly measures the cell's size.
- A mean over pixels, not a maximum: one noisy pixel does not flag a cell.
- With no dropout the map would be the softmax entropy alone, not what "MC dropout"
  promises, so such models get no per-cell uncertainty (plain outlines).

The deterministic prediction (dropout off) and the T samples share one pass of the network
(`mc_dropout(..., deterministic=True)`): the samples are T cheap 1x1 convolutions.
Measured (bench/bench_cell_uncertainty.py): see PASSES and UNCERTAIN_AT.
"""
from __future__ import annotations

import numpy as np

PASSES = 8           # MC samples: cell scores rank like 64 passes' (Spearman 0.999; 4
                     # passes 0.994), and labels + scores in one pass cost about what the
                     # plain prediction does (bench/bench_cell_uncertainty.py)
STRIDE = 2           # the entropy on every 2nd pixel each way (mc_dropout): an unbiased
                     # sample of a cell's mean at a quarter of the cost
UNCERTAIN_AT = 0.35  # a cell scoring this or more is "to check": on the 12 mixed DSB
                     # images 47% of the cells, holding 84% of the wrong ones (0.3: 52%,
                     # 85%); on 12 clean fluorescence images 11% of the cells


def supports(model) -> bool:
    """Whether MC dropout can score this model's cells: torch weights with the stochastic
    output layer (dropout > 0), and an instance (not semantic) model."""
    net = getattr(model, "module", None)
    head = getattr(net, "head", None)
    drop = getattr(head, "drop2", None)
    return (net is not None and hasattr(net, "hidden") and drop is not None
            and float(drop.p) > 0 and model.meta.get("kind", "instance") != "semantic")


def cell_scores(labels: np.ndarray, uncertainty: np.ndarray) -> dict[int, float]:
    """{label: score} for every cell of a (Y, X) label image: the mean of a (Y, X) per-pixel
    map (normalised entropy) over the cell (see the module docstring)."""
    from scipy import ndimage

    labels = np.asarray(labels)
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return {}
    means = ndimage.mean(np.asarray(uncertainty, np.float64), labels, ids)
    return {int(i): round(float(v), 4) for i, v in zip(ids, np.atleast_1d(means))}


def score_cells(model, image: np.ndarray, labels: np.ndarray, passes: int = PASSES,
                seed: int = 0, tile: int = 512, overlap: int = 64) -> dict[int, float] | None:
    """{label: score} of the cells of (Y, X) `labels` (a suggestion already on screen) on a
    (Y, X) or (C, Y, X) image; None for a model MC dropout cannot score (`supports`)."""
    from models.inference import _as_array
    from models.uncertainty import mc_dropout

    array = _as_array(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 4 or not supports(model):
        return None
    u = mc_dropout(model, array, passes=passes, seed=seed, tile=tile, overlap=overlap,
                   stride=STRIDE)
    return cell_scores(labels, u.entropy / np.log(model.n_classes))


def predict_with_uncertainty(model, image: np.ndarray, passes: int = PASSES, seed: int = 0,
                             tile: int = 512, overlap: int = 64
                             ) -> tuple[np.ndarray, dict[int, float] | None]:
    """(labels, {label: score}) of a (Y, X) or (C, Y, X) image in one pass of the network;
    scores None (labels as `predict_image` gives them) for a model MC dropout cannot score
    (`supports`) and for z-stacks."""
    from models.inference import _as_array, predict_image
    from models.uncertainty import mc_dropout

    array = _as_array(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 4 or not supports(model):
        return predict_image(model, array, tile=tile, overlap=overlap).labels, None
    u = mc_dropout(model, array, passes=passes, seed=seed, tile=tile, overlap=overlap,
                   stride=STRIDE, deterministic=True)
    labels = model.instances(u.deterministic)
    scores = cell_scores(labels, u.entropy / np.log(model.n_classes))
    return labels, scores

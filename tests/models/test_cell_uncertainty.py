"""Per-cell uncertainty (models.cell_uncertainty): higher on a cell unlike those the model was
trained on than on cells like them; one pass gives the plain prediction and the scores;
models MC dropout cannot score get none."""
import numpy as np
import pytest
from skimage.draw import disk

from models.cell_uncertainty import (cell_scores, predict_with_uncertainty, supports)
from models.inference import predict_image
from models.uncertainty import mc_dropout


def scene(seed: int):
    """(image, labels): four discs as the model was trained on (bright, +2800 over ~400)
    and two discs at half that contrast (+1400), which it never saw (labels 5 and 6)."""
    rng = np.random.default_rng(seed)
    shape = (96, 96)
    labels = np.zeros(shape, np.uint16)
    image = rng.normal(400, 80, shape)
    for k, (r, c) in enumerate([(20, 20), (50, 20), (78, 22), (35, 45)], 1):
        rr, cc = disk((r, c), rng.integers(4, 7), shape=shape)
        labels[rr, cc] = k
        image[rr, cc] += 2800
    for k, (r, c) in enumerate([(25, 75), (70, 72)], 5):
        rr, cc = disk((r, c), 6, shape=shape)
        labels[rr, cc] = k
        image[rr, cc] += 1400
    return image.clip(0).astype(np.uint16), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_cell_unlike_the_training_cells_is_more_uncertain(trained, seed):
    """The session's tiny model learnt bright discs (tests/models/conftest.py, seed 0: the
    same weights on every CPU run). Scored on the true outlines, each half-contrast disc is
    more uncertain than every disc like the training ones, by a clear margin."""
    image, labels = scene(seed)
    u = mc_dropout(trained.model, image, passes=8, seed=seed, stride=1)
    scores = cell_scores(labels, u.entropy / np.log(3))
    assert sorted(scores) == [1, 2, 3, 4, 5, 6]
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    seen, unseen = [scores[k] for k in (1, 2, 3, 4)], [scores[k] for k in (5, 6)]
    assert min(unseen) > max(seen) + 0.1, scores


def test_one_pass_gives_the_plain_prediction_and_its_cells_scores(trained):
    image, _ = scene(3)
    plain = predict_image(trained.model, image).labels
    labels, scores = predict_with_uncertainty(trained.model, image, passes=4)
    # the same cells as the plain prediction (the dropout-off head on the same features)
    assert (labels > 0).mean() == pytest.approx((plain > 0).mean(), abs=0.01)
    assert abs(int(labels.max()) - int(plain.max())) <= 1
    assert set(scores) == set(np.unique(labels[labels > 0]).tolist())
    # reproducible: the same seed gives the same scores
    assert predict_with_uncertainty(trained.model, image, passes=4)[1] == scores


def test_no_scores_without_dropout_or_for_z_stacks(trained):
    model = trained.model
    image, _ = scene(4)
    assert supports(model)
    stack = np.stack([image[None], image[None]])             # (Z=2, C=1, Y, X)
    labels, scores = predict_with_uncertainty(model, stack)
    assert scores is None and labels.shape == (2, 96, 96)
    drop = model.module.head.drop2
    old = drop.p
    drop.p = 0.0
    try:
        assert not supports(model)
        labels, scores = predict_with_uncertainty(model, image)
        assert scores is None and labels.max() > 0
    finally:
        drop.p = old


def test_cell_scores_are_the_mean_over_each_cell():
    labels = np.zeros((10, 10), np.uint16)
    labels[1:4, 1:4] = 3
    labels[6:9, 6:9] = 7
    values = np.zeros((10, 10))
    values[6:9, 6:9] = 0.5
    values[1, 1] = 0.9                      # one noisy pixel does not flag cell 3
    assert cell_scores(labels, values) == {3: 0.1, 7: 0.5}
    assert cell_scores(np.zeros((4, 4), np.uint16), np.zeros((4, 4))) == {}


def test_scoring_the_cells_on_screen_matches_the_one_pass_scores(trained):
    """`score_cells` scores labels already shown (a suggestion made without scores) like the
    one-pass prediction scores its own."""
    from models.cell_uncertainty import score_cells
    image, _ = scene(5)
    labels, scores = predict_with_uncertainty(trained.model, image, passes=8, seed=2)
    later = score_cells(trained.model, image, labels, passes=8, seed=2)
    assert set(later) == set(scores)
    assert max(abs(later[k] - scores[k]) for k in scores) < 1e-3

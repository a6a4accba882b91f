"""The corrections oracle: its counts on a known suggestion/truth pair are exact."""
import numpy as np
import pytest

from models.corrections import corrections


def _square(labels, value, y, x, size=10):
    labels[y:y + size, x:x + size] = value


def test_counts_on_a_known_pair_are_exact():
    truth = np.zeros((100, 100), np.uint16)
    suggestion = np.zeros_like(truth)
    # 1: suggested exactly -> kept
    _square(truth, 1, 0, 0)
    _square(suggestion, 7, 0, 0)
    # 2: suggested shifted by 2 px (IoU 80/120 = 0.67) -> kept
    _square(truth, 2, 0, 30)
    _square(suggestion, 8, 0, 32)
    # 3: suggested shifted by 6 px (IoU 40/160 = 0.25) -> redrawn
    _square(truth, 3, 30, 0)
    _square(suggestion, 9, 30, 6)
    # 4 and 5: not suggested -> missed
    _square(truth, 4, 60, 0)
    _square(truth, 5, 60, 30)
    # a suggested cell on background, and one more -> false
    _square(suggestion, 10, 85, 85)
    _square(suggestion, 11, 60, 60)
    c = corrections(truth, suggestion)
    assert (c.kept, c.redrawn, c.missed, c.false) == (2, 1, 2, 2)
    assert c.cost == 5
    assert c.as_dict()["cost"] == 5


def test_two_suggestions_on_one_cell_are_one_kept_and_one_false():
    truth = np.zeros((40, 40), np.uint16)
    _square(truth, 1, 0, 0, size=20)
    suggestion = np.zeros_like(truth)
    suggestion[0:20, 0:16] = 1           # IoU 0.8 -> kept
    suggestion[0:20, 16:20] = 2          # the rest of the cell, a split: delete it
    c = corrections(truth, suggestion)
    assert (c.kept, c.redrawn, c.missed, c.false) == (1, 0, 0, 1)


def test_without_a_suggestion_every_cell_is_drawn():
    truth = np.zeros((50, 50), np.uint16)
    for k in range(1, 5):
        _square(truth, k * 3, 10 * k, 10 * k, size=5)    # labels need not be consecutive
    c = corrections(truth, None)
    assert (c.kept, c.redrawn, c.missed, c.false, c.cost) == (0, 0, 4, 0, 4)
    assert corrections(truth, truth).cost == 0


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ in shape"):
        corrections(np.zeros((4, 4), np.uint16), np.zeros((4, 5), np.uint16))

"""Row bands of whole groups of foreground (models.bands)."""
import numpy as np
import pytest

from models import bands


@pytest.mark.parametrize("budget", [1, 30 * 20, 30 * 45, 10 ** 6])
def test_every_group_lies_whole_in_exactly_one_band_within_the_budget(budget):
    rng = np.random.default_rng(1)
    foreground = np.zeros((120, 30), bool)
    for top in range(0, 120, 15):                       # 8 blobs, some closer than reach
        foreground[top + rng.integers(0, 3):top + rng.integers(5, 9), 5:25] = True
    labels, boxes = bands.groups(foreground, 2)
    plan = bands.bands(boxes, foreground.shape, budget)
    seen = np.concatenate([b.groups for b in plan])
    assert sorted(seen) == list(range(1, len(boxes) + 1))
    for band in plan:
        inside = bands.member_mask(labels, band, len(boxes))
        for gid in band.groups:
            rows = boxes[gid - 1][0]
            assert band.rows.start <= max(0, rows.start - bands.MARGIN)
            assert band.rows.stop >= min(120, rows.stop + bands.MARGIN)
            assert inside[labels[band.rows] == gid].all()
        span = band.rows.stop - band.rows.start
        assert len(band.groups) == 1 or span * 30 <= budget
    assert (len(plan) == 1) == (budget == 10 ** 6)


def test_groups_join_what_lies_within_reach():
    foreground = np.zeros((10, 40), bool)
    foreground[4, [2, 11, 30]] = True                  # gaps of 8 and 18 px
    assert bands.groups(foreground, 4)[0].max() == 2   # 2 and 11 within 2 x 4 + 1
    assert bands.groups(foreground, 3)[0].max() == 3


@pytest.mark.parametrize("span,budget", [(1000, 300 * 100), (4096, 2_000_000 // 40),
                                         (300, 300 * 100), (257, 10)])
def test_windows_cover_the_band_and_own_each_row_once(span, budget):
    width = 100
    plan = bands.windows(slice(7, 7 + span), width, budget)
    height = max(budget // width, 2 * bands.OVERLAP)
    assert plan[0].rows.start == plan[0].owned.start == 7
    assert plan[-1].rows.stop == plan[-1].owned.stop == 7 + span
    for window, after in zip(plan, plan[1:]):
        assert window.owned.stop == after.owned.start                  # owned rows tile
        assert window.rows.stop - after.rows.start >= bands.OVERLAP
        # a cell at most OVERLAP rows tall centred in the owned rows lies inside the window
        assert window.owned.stop + bands.OVERLAP // 2 <= window.rows.stop
        assert after.owned.start - bands.OVERLAP // 2 >= after.rows.start
    assert all(w.rows.stop - w.rows.start == min(span, height) for w in plan)
    assert (len(plan) == 1) == (span <= height)

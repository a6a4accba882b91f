"""Cell outlines as polygons and back: pure arrays."""
import numpy as np
import pytest

from app.imaging.outlines import cell_outlines, labels_from_polygons


def test_a_square_cell_is_outlined_at_pixel_centres_and_filled_back():
    labels = np.zeros((20, 30), np.uint16)
    labels[5:10, 10:20] = 3                          # rows 5-9, columns 10-19
    outlines = cell_outlines(labels, tolerance=0)
    assert list(outlines) == [3]
    xs, ys = np.asarray(outlines[3]).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10.0, 20.0, 5.0, 10.0)
    assert outlines[3][0] == outlines[3][-1]         # closed
    back = labels_from_polygons([outlines[3]], labels.shape)
    assert np.array_equal(back > 0, labels > 0)


def test_many_cells_round_trip_and_later_cells_cover_earlier_ones():
    from tests.images_data import nuclei
    _, labels = nuclei((60, 80))
    outlines = cell_outlines(labels)
    assert set(outlines) == set(np.unique(labels)) - {0}
    back = labels_from_polygons(list(outlines.values()), labels.shape)
    union = np.logical_or(back > 0, labels > 0).sum()
    assert np.logical_and(back > 0, labels > 0).sum() / union > 0.85
    overlap = labels_from_polygons([[[0, 0], [10, 0], [10, 10], [0, 10]],
                                    [[5, 5], [15, 5], [15, 15], [5, 15]]], (20, 20))
    assert overlap[7, 7] == 2 and overlap[2, 2] == 1


@pytest.mark.parametrize("polygon", [[[0, 0], [1, 1]], [[0, 0], [1, float("nan")], [2, 0]],
                                     [[0, 0, 0], [1, 1, 1], [2, 2, 2]]])
def test_bad_polygons_are_refused(polygon):
    with pytest.raises(ValueError):
        labels_from_polygons([polygon], (10, 10))


def test_polygons_that_would_take_too_long_to_draw_are_refused_before_drawing():
    import time
    whole = [[0, 0], [64, 0], [64, 64], [0, 64]]      # each covers the whole image
    started = time.perf_counter()
    with pytest.raises(ValueError, match="too much to draw"):
        labels_from_polygons([whole] * 80_000, (64, 64))
    assert time.perf_counter() - started < 20          # drawing them would take minutes
    assert labels_from_polygons([whole] * 3, (64, 64)).min() == 3

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


def test_the_annotated_region_has_a_dashed_edge_and_the_rest_is_dimmed():
    import numpy as np

    from app.imaging.render import annotation_rgba
    labels = np.zeros((40, 40), np.int32)
    region = np.zeros((40, 40), bool)
    region[10:30, 10:30] = True
    out = annotation_rgba(labels, 64, ["#ff0000"], region=region)
    edge = [tuple(out[10, x]) for x in range(10, 30)]        # the region's top row
    assert (255, 255, 255, 255) in edge and (0, 0, 0, 255) in edge
    assert out[20, 20, 3] == 0                                  # inside: the image shows
    assert out[2, 2, 3] == 110                                   # outside: dimmed
    whole = annotation_rgba(labels, 64, ["#ff0000"], region=np.ones((40, 40), bool))
    assert whole[..., 3].max() == 0                              # no edge at the image border


def test_an_unsure_point_gets_a_wide_orange_and_white_ring():
    import numpy as np

    from app.imaging.render import UNSURE_RING, annotation_rgba
    labels = np.zeros((40, 40), np.int32)
    points = [[10.0, 10.0, 0], [30.0, 30.0, 0]]
    out = annotation_rgba(labels, 64, ["#ff0000"], points=points, unsure_points=[False, True])
    sure, unsure = out[4:17, 4:17], out[24:37, 24:37]
    assert not (sure[..., :3] == UNSURE_RING[:3]).all(-1).any()
    assert (unsure[..., :3] == UNSURE_RING[:3]).all(-1).any()
    assert (unsure[..., :3] == 255).all(-1).any()                 # white in the ring too
    assert (unsure[..., 3] > 0).sum() > (sure[..., 3] > 0).sum()  # wider than a sure one


def test_points_grow_with_the_overlay_so_they_stay_visible_on_a_large_image():
    """The browser fits the overlay to the graph: a 1200 px overlay shown some 750 px wide
    would shrink a 4 px dot to 2.5 px. A point's radius is the overlay side / POINT_SCALE,
    at least 4 px, so small overlays keep their 4 px dots."""
    import numpy as np

    from app.imaging.render import POINT_SCALE, annotation_rgba

    def drawn_radius(side):
        out = annotation_rgba(np.zeros((side, side), np.int32), side, ["#ff0000"],
                              points=[[side / 2, side / 2, 0]])
        rows = np.nonzero(out[..., 3].any(1))[0]
        return (rows.max() - rows.min() + 1) / 2

    assert 3.5 <= drawn_radius(64) <= 4.5
    assert 3.5 <= drawn_radius(400) <= 4.5                        # 400 / 150 < 4
    big = drawn_radius(1200)
    assert abs(big - 1200 / POINT_SCALE) <= 1.0 and big >= 7.5
    out = annotation_rgba(np.zeros((1200, 1200), np.int32), 1200, ["#ff0000"],
                          points=[[600.0, 600.0, 0]])
    assert tuple(out[600, 600]) == (255, 0, 0, 255)              # the class colour inside
    assert tuple(out[600, 600 + int(big) - 1]) == (0, 0, 0, 255)  # a black ring round it

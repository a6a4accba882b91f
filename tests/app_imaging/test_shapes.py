"""The shape rasteriser against hand-made masks: pixel (r, c) covers [c, c+1) x [r, r+1) and
belongs to a shape when its centre is inside; even-odd fill; newer edits win."""
import numpy as np
import pytest

from app.imaging.shapes import (Canvas, ShapeError, apply_edits, cell_polygon, finish,
                            parse_path, shape_area, stroke_area)


def square_path(x0, y0, x1, y1):
    return f"M{x0},{y0}L{x1},{y0}L{x1},{y1}L{x0},{y1}Z"


def test_square_path_covers_exactly_the_enclosed_pixels():
    got = shape_area({"type": "path", "path": square_path(1, 1, 4, 3)}, (5, 6))
    expected = np.zeros((5, 6), bool)
    expected[1:3, 1:4] = True           # rows 1..2, cols 1..3
    np.testing.assert_array_equal(got, expected)


def test_rect_and_path_agree_and_scale_maps_to_full_resolution():
    rect = shape_area({"type": "rect", "x0": 4, "x1": 1, "y0": 3, "y1": 1}, (5, 6))
    path = shape_area({"type": "path", "path": square_path(1, 1, 4, 3)}, (5, 6))
    np.testing.assert_array_equal(rect, path)
    scaled = shape_area({"type": "rect", "x0": 0.5, "x1": 2, "y0": 0.5, "y1": 1.5}, (5, 6),
                        scale=2)
    expected = np.zeros((5, 6), bool)
    expected[1:3, 1:4] = True
    np.testing.assert_array_equal(scaled, expected)


def test_outer_and_inner_subpaths_make_a_hole():
    d = square_path(0, 0, 7, 7) + square_path(2, 2, 5, 5)
    got = shape_area({"type": "path", "path": d}, (7, 7))
    expected = np.ones((7, 7), bool)
    expected[2:5, 2:5] = False
    np.testing.assert_array_equal(got, expected)


def test_self_intersecting_bow_tie_fills_both_lobes_even_odd():
    # a bow tie crossing at (4, 4): lobes left and right, nothing above/below the crossing
    got = shape_area({"type": "path", "path": "M0,0L8,8L8,0L0,8Z"}, (8, 8))
    assert got[4, 1] and got[4, 6]                # inside the left and right lobes
    assert not got[1, 4] and not got[6, 4]        # above and below the crossing point
    np.testing.assert_array_equal(got, got[:, ::-1])   # symmetric


def test_ellipse_and_relative_commands():
    circle = shape_area({"type": "circle", "x0": 0, "x1": 9, "y0": 0, "y1": 9}, (9, 9))
    assert circle[4, 4] and not circle[0, 0] and circle.sum() > 50
    rel = shape_area({"type": "path", "path": "m1,1 h3 v2 h-3 z"}, (5, 6))
    np.testing.assert_array_equal(
        rel, shape_area({"type": "path", "path": square_path(1, 1, 4, 3)}, (5, 6)))


def test_brush_stroke_has_its_width():
    got = stroke_area({"type": "path", "path": "M0.5,5.5L9.5,5.5"}, 3, (11, 11))
    expected = np.zeros((11, 11), bool)
    expected[4:7, 0:10] = True           # rows 4..6 within 1.5 of row 5
    expected[5, 10] = False
    np.testing.assert_array_equal(got[:, :10], expected[:, :10])
    assert not got[3].any() and not got[7].any()


@pytest.mark.parametrize("bad", ["", "L1,1", "M1,1C2,2,3,3,4,4", "M1", "M1,1 L x,y"])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(ShapeError):
        parse_path(bad)


def test_unknown_shape_type_is_refused():
    with pytest.raises(ShapeError):
        shape_area({"type": "triangle"}, (4, 4))


def test_edits_newer_wins_brush_erase_delete_and_classes():
    canvas = Canvas.blank((10, 10))
    edits = [
        {"op": "add", "label": 1, "cls": 0, "shape": {"type": "rect", "x0": 0, "x1": 6,
                                                       "y0": 0, "y1": 6}},
        {"op": "add", "label": 2, "cls": 1, "shape": {"type": "rect", "x0": 4, "x1": 10,
                                                       "y0": 4, "y1": 10}},
    ]
    apply_edits(canvas, edits)
    assert canvas.labels[5, 5] == 2                       # the newer cell wins the overlap
    assert canvas.labels[3, 3] == 1 and canvas.classes == {2: 1}
    apply_edits(canvas, [{"op": "brush", "label": 1, "width": 1,
                          "shape": {"type": "path", "path": "M8.5,0.5L8.5,2.5"}}])
    assert (canvas.labels[0:3, 8] == 1).all()
    apply_edits(canvas, [{"op": "erase", "width": 1,
                          "shape": {"type": "path", "path": "M0.5,0.5L5.5,0.5"}}])
    assert (canvas.labels[0, 0:6] == 0).all() and canvas.labels[1, 0] == 1
    apply_edits(canvas, [{"op": "delete", "label": 2}])
    assert not (canvas.labels == 2).any() and canvas.classes == {}
    labels, classes = finish(canvas)
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {0, 1}


def test_finish_renumbers_and_keeps_classes_and_uses_uint32_when_needed():
    canvas = Canvas(np.array([[0, 5], [9, 9]], np.int32), {9: 2, 5: 0, 7: 1})
    labels, classes = finish(canvas)
    np.testing.assert_array_equal(labels, [[0, 1], [2, 2]])
    assert classes == {"2": 2}
    big = Canvas(np.arange(70_000, dtype=np.int32).reshape(1, -1))
    assert finish(big)[0].dtype == np.uint32
    # below 0 is background; ids already 1..N stay; an image of background only
    signed = Canvas(np.array([[-3, 4, 4], [0, -1, 7], [7, 7, 0]], np.int32), {7: 1})
    labels, classes = finish(signed)
    np.testing.assert_array_equal(labels, [[0, 1, 1], [0, 0, 2], [2, 2, 0]])
    assert labels.dtype == np.uint16 and classes == {"2": 1}
    same = np.array([[2, 0], [1, 1]], np.int32)
    np.testing.assert_array_equal(finish(Canvas(same, {}))[0], same)
    assert not finish(Canvas(np.full((3, 3), -2, np.int32), {}))[0].any()
    assert finish(Canvas(np.zeros((0, 4), np.int32), {}))[0].shape == (0, 4)


def test_region_replace_and_points():
    canvas = Canvas.blank((8, 8))
    apply_edits(canvas, [
        {"op": "add", "label": 1, "shape": {"type": "rect", "x0": 0, "x1": 2, "y0": 0, "y1": 2}},
        {"op": "replace", "label": 1, "shape": {"type": "path", "path": square_path(4, 4, 6, 6)}},
        {"op": "region", "shape": {"type": "rect", "x0": 0, "x1": 4, "y0": 0, "y1": 8}},
        {"op": "point", "x": 1.5, "y": 1.5, "cls": 0},
        {"op": "point", "x": 6.5, "y": 6.5, "cls": 1},
        {"op": "unpoint", "x": 2, "y": 2},
    ])
    assert canvas.labels[0, 0] == 0 and (canvas.labels[4:6, 4:6] == 1).all()
    assert canvas.region[:, :4].all() and not canvas.region[:, 4:].any()
    assert canvas.points == [[6.5, 6.5, 1]]


def test_a_click_anywhere_on_a_large_images_drawn_point_removes_it():
    """On a 1200 px image a point is drawn 8 px wide in radius (1200 / POINT_SCALE): a click
    7 px from its centre takes it away; on a small image the reach stays POINT_RADIUS."""
    from app.imaging.shapes import POINT_RADIUS, point_pick_radius
    assert point_pick_radius((64, 64)) == POINT_RADIUS
    assert point_pick_radius((1200, 900)) == 8.0
    assert point_pick_radius((1200, 900), unsure=True) == 12.0   # its wider ring
    big = Canvas.blank((1200, 900))
    apply_edits(big, [{"op": "point", "x": 100, "y": 100, "cls": 0},
                      {"op": "unpoint", "x": 107, "y": 100}])
    assert big.points == []
    apply_edits(big, [{"op": "point", "x": 100, "y": 100, "cls": 0},
                      {"op": "unpoint", "x": 111, "y": 100}])   # on an unsure point's ring
    assert big.points == []
    small = Canvas.blank((64, 64))
    apply_edits(small, [{"op": "point", "x": 10, "y": 10, "cls": 0},
                        {"op": "unpoint", "x": 17, "y": 10}])
    assert small.points == [[10.0, 10.0, 0]]


def test_cell_polygon_round_trips_through_the_rasteriser():
    labels = np.zeros((40, 40), np.int32)
    yy, xx = np.mgrid[:40, :40]
    labels[(yy - 20) ** 2 + (xx - 18) ** 2 < 100] = 3
    path = cell_polygon(labels, 3, tolerance=0.5)
    back = shape_area({"type": "path", "path": path}, labels.shape)
    overlap = (back & (labels == 3)).sum() / (back | (labels == 3)).sum()
    assert overlap > 0.9
    assert cell_polygon(labels, 4) is None


def _rect_cell(label, x0, y0, x1, y1, cls=0):
    return {"op": "add", "label": label, "cls": cls,
            "shape": {"type": "rect", "x0": x0, "y0": y0, "x1": x1, "y1": y1}}


def test_erasing_across_a_cell_splits_it_into_two_cells():
    """Issue 19 item 10: an eraser stroke across a cell leaves two cells, not one label in
    two pieces; the class goes with both halves and later ids stay free for new cells."""
    canvas = apply_edits(Canvas.blank((20, 30)), [_rect_cell(1, 2, 2, 28, 12, cls=1),
                                                  _rect_cell(2, 2, 14, 8, 18)])
    apply_edits(canvas, [{"op": "erase", "width": 2,
                          "shape": {"type": "path", "path": "M15,0L15,14"}}])
    left, right = canvas.labels[7, 5], canvas.labels[7, 25]
    assert {left, right} == {1, 3} and canvas.next_label == 4
    assert canvas.classes == {1: 1, 3: 1}
    assert (canvas.labels == 2).sum() == 6 * 4                   # the other cell untouched
    labels, classes = finish(canvas)
    assert int(labels.max()) == 3 and sorted(classes.values()) == [1, 1]


def test_a_new_cell_drawn_across_an_old_one_splits_it_and_crumbs_are_cleared():
    canvas = apply_edits(Canvas.blank((20, 30)), [_rect_cell(1, 0, 5, 30, 10)])
    apply_edits(canvas, [_rect_cell(2, 10, 0, 14, 20)])          # a bar across cell 1
    assert canvas.labels[7, 20] == 1 and canvas.labels[7, 2] == 3      # the larger piece keeps 1
    # an eraser that cuts off a 2-pixel corner clears it instead of making a 2-pixel cell
    canvas = apply_edits(Canvas.blank((10, 10)), [_rect_cell(1, 0, 0, 6, 6)])
    canvas.labels[6, 6] = 1                                       # a diagonal nub...
    canvas.labels[7, 7] = 1                                       # ...two pixels long
    apply_edits(canvas, [{"op": "erase", "shape": {"type": "rect", "x0": 5, "y0": 5,
                                                   "x1": 6, "y1": 6}}])
    assert canvas.labels[7, 7] == 0 and canvas.labels[6, 6] == 0 and canvas.next_label == 2


def test_a_cell_already_in_pieces_is_not_split_by_an_unrelated_edit():
    canvas = apply_edits(Canvas.blank((10, 20)), [_rect_cell(1, 0, 0, 5, 5)])
    apply_edits(canvas, [{"op": "brush", "label": 1, "width": 1,   # a separate blob of 1
                          "shape": {"type": "path", "path": "M15.5,0.5L15.5,8.5"}}])
    apply_edits(canvas, [{"op": "erase", "width": 1,
                          "shape": {"type": "path", "path": "M0.5,0.5L2.5,0.5"}}])
    assert set(np.unique(canvas.labels)) == {0, 1}


def test_ellipse_fills_its_corner_to_corner_box_like_the_rectangle():
    box = {"x0": 2, "y0": 3, "x1": 22, "y1": 13}
    ellipse = shape_area({"type": "circle", **box}, (20, 30))
    rect = shape_area({"type": "rect", **box}, (20, 30))
    rows, cols = np.nonzero(ellipse)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 12, 2, 21)
    assert not (ellipse & ~rect).any() and ellipse[8, 12]


def test_a_cut_cell_longer_than_the_search_window_is_split_whole():
    """Cells touched by an edit are looked for in a window around it; a cell that leaves the
    window is looked for in the whole image, so both halves of a long bar cut in the middle
    are whole cells."""
    canvas = apply_edits(Canvas.blank((400, 600)), [_rect_cell(1, 0, 100, 600, 110)])
    apply_edits(canvas, [{"op": "erase", "width": 4,
                          "shape": {"type": "path", "path": "M300,90L300,120"}}])
    left, right = canvas.labels[105, :290], canvas.labels[105, 310:]
    assert set(np.unique(left)) | set(np.unique(right)) == {1, 2}
    assert len(np.unique(left)) == 1 and len(np.unique(right)) == 1


@pytest.mark.parametrize("seed", range(4))
def test_edits_give_the_same_cells_with_and_without_the_search_window(seed, monkeypatch):
    """Small cells on a large canvas, random strokes that cut, join and cover them: the
    windowed search gives exactly what searching the whole image gives."""
    from app.imaging import shapes
    rng = np.random.default_rng(seed)
    edits = []
    for k in range(1, 40):
        x, y = rng.integers(0, 560), rng.integers(0, 360)
        edits.append(_rect_cell(k, int(x), int(y), int(x + rng.integers(8, 40)),
                                int(y + rng.integers(8, 40))))
    for k in range(12):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 400, 4))
        path = {"type": "path", "path": f"M{x0},{y0}L{x1},{y1}"}
        edits.append({"op": "erase", "width": 3, "shape": path} if k % 2 else
                     {"op": "add", "label": 100 + k, "shape": {
                         "type": "rect", "x0": x0, "y0": y0, "x1": x0 + 30, "y1": y0 + 6}})
    windowed = apply_edits(Canvas.blank((400, 600)), edits)
    monkeypatch.setattr(shapes, "_window", lambda labels, cells, near, margin=64: None)
    whole = apply_edits(Canvas.blank((400, 600)), edits)
    assert np.array_equal(windowed.labels, whole.labels)
    assert windowed.classes == whole.classes

"""Point files (storage.points): CSV x,y[,class], napari's points-layer CSV and Label Studio
KeyPointLabels round trip; malformed files are refused naming the file and the row."""
import json

import pytest

from storage import labelstudio
from storage.points import (PointsError, RawPoint, from_labelstudio, labelstudio_tasks,
                            read_points_csv, resolve, write_napari_csv, write_points_csv)

CLASSES = ["nucleus", "mitotic"]
POINTS = [[10.0, 20.5, 0], [0.0, 0.0, 1], [63.25, 47.0, 0]]


def test_csv_round_trip_with_class_names():
    data = write_points_csv(POINTS, CLASSES)
    assert data.decode().splitlines()[:2] == ["x,y,class", "10,20.5,nucleus"]
    assert resolve(read_points_csv(data, "a.csv"), 64, 48, CLASSES, "a.csv") == POINTS


def test_napari_csv_round_trip_swaps_axes():
    data = write_napari_csv(POINTS)
    assert data.decode().splitlines()[1] == "0,20.5,10"        # axis-0 is the row (y)
    assert resolve(read_points_csv(data, "a.csv"), 64, 48, CLASSES) == [
        [x, y, 0] for x, y, _ in POINTS]


def test_labelstudio_round_trip_through_its_importer():
    tasks = json.loads(json.dumps(labelstudio_tasks([("a.tif", 64, 48, POINTS)], CLASSES)))
    parsed = labelstudio.parse_task(tasks[0])
    assert resolve(from_labelstudio(parsed.points), 64, 48, CLASSES) == POINTS


def test_headerless_and_index_classes():
    raw = read_points_csv(b"1,2\n3.5,4\n", "b.csv")
    assert raw == [RawPoint(1.0, 2.0), RawPoint(3.5, 4.0)]
    raw = read_points_csv(b"X,Y,Class\n5,6,1\n", "c.csv")
    assert resolve(raw, 10, 10, CLASSES) == [[5.0, 6.0, 1]]


@pytest.mark.parametrize("data,message", [
    (b"a,b\n1,2\n", "names no x and y columns"),
    (b"x,y\n1,oops\n", "row 2: y 'oops' is not a number"),
    (b"x,y\n1,nan\n", "not a finite number"),
    (b"axis-0,axis-1,axis-2\n1,2,3\n", "3D napari points layer"),
    (b"1,2,3,4\n", "rows must be x,y or x,y,class"),
    (b"x,y\n1\n", "row 2 has 1 columns"),
    (b"\xff\xfe\x00", "not a text (UTF-8) CSV"),
])
def test_malformed_files_are_refused_naming_file_and_row(data, message):
    with pytest.raises(PointsError, match="^f.csv: ") as err:
        read_points_csv(data, "f.csv")
    assert message in str(err.value)


def test_points_on_the_far_edge_are_taken_into_the_image():
    """Label Studio's 100% is the image's far edge: kept, on the last pixel."""
    assert resolve([RawPoint(64, 48), RawPoint(63.8, 0.2)], 64, 48, CLASSES) == [
        [63.0, 47.0, 0], [63.0, 0.2, 0]]


@pytest.mark.parametrize("point,message", [
    (RawPoint(64.5, 1), "outside the 64x48 image"),
    (RawPoint(1, -1), "outside the 64x48 image"),
    (RawPoint(1, 1, "dividing"), "class 'dividing', which is not one of the project's"),
    (RawPoint(1, 1, 2), "the project's classes are 0..1"),
])
def test_points_outside_the_image_or_of_unknown_class_are_refused(point, message):
    with pytest.raises(PointsError, match=message):
        resolve([point], 64, 48, CLASSES, "f.csv")

"""HDF5 samples, COCO, Label Studio, zip safety and display rendering."""
import io
import json
import zipfile

import numpy as np
import pytest
from skimage.draw import disk

from storage import coco, labelstudio
from storage.archive import ArchiveError, list_entries, open_zip, read_entry
from storage.hdf5 import Sample, read_samples, write_samples
from storage.readers import ImageReadError
from app.imaging.render import ChannelView, composite, downsample, outlines, overlay_rgba


def disc_labels(shape=(40, 50)):
    labels = np.zeros(shape, np.uint16)
    for k, (r, c, rad) in enumerate([(10, 10, 6), (25, 30, 8), (30, 8, 4)], 1):
        rr, cc = disk((r, c), rad, shape=shape)
        labels[rr, cc] = k
    return labels


def test_hdf5_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    samples = [Sample("a.tif", rng.integers(0, 65535, (1, 2, 40, 50), dtype=np.uint16),
                      [disc_labels(), disc_labels()[::-1].copy()]),
               Sample("b.png", rng.integers(0, 255, (3, 1, 40, 50), dtype=np.uint8), [])]
    write_samples(tmp_path / "d.h5", samples)
    back = list(read_samples(tmp_path / "d.h5"))
    assert [s.name for s in back] == ["a.tif", "b.png"]
    assert np.array_equal(back[0].image, samples[0].image)
    assert len(back[0].labels) == 2 and np.array_equal(back[0].labels[1], samples[0].labels[1])
    assert back[1].labels == [] and back[1].image.dtype == np.uint8


def test_hdf5_rejects_bad_layouts(tmp_path):
    import h5py
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        g = f.create_group("samples/000000")
        g.create_dataset("image", data=np.zeros((10, 10), np.uint8))
        g.create_dataset("label_0", data=np.zeros((9, 10), np.uint16))
        g.attrs["n_labels"] = 1
    with pytest.raises(ImageReadError, match="label_0 is"):
        list(read_samples(tmp_path / "bad.h5"))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ImageReadError, match="not a readable HDF5"):
        list(read_samples(tmp_path / "junk.h5"))


def test_coco_rle_round_trip():
    labels = disc_labels()
    anns = coco.labels_to_annotations(labels, image_id=7, first_ann_id=1, classes={2: 1})
    assert [a["category_id"] for a in anns] == [1, 2, 1]
    assert anns[0]["area"] == int((labels == 1).sum())
    back = coco.annotations_to_labels(json.loads(json.dumps(anns)), labels.shape)
    assert np.array_equal(back, labels)


def test_coco_rle_matches_the_spec():
    mask = np.array([[0, 1], [1, 1]], bool)  # column-major: 0,1 | 1,1 -> runs [1, 3]
    assert coco.encode_rle(mask)["counts"] == [1, 3]
    assert coco.encode_rle(np.ones((2, 2), bool))["counts"] == [0, 4]
    polygon = coco.decode_polygons([[2, 2, 8, 2, 8, 8, 2, 8]], (10, 10))
    assert polygon[5, 5] and not polygon[0, 0]


def test_labelstudio_brush_rle_round_trip_and_parse():
    labels = disc_labels((20, 24))
    mask = labels == 1
    rle = labelstudio.encode_brush_rle(mask)
    assert np.array_equal(labelstudio.decode_brush_rle(rle, 20, 24), mask)
    tasks = [{"data": {"image": "/data/upload/1/ab12cd34-cells.png"}, "annotations": [{
        "result": [
            {"type": "brushlabels", "original_width": 24, "original_height": 20,
             "value": {"format": "rle", "rle": rle, "brushlabels": ["nucleus"]}},
            {"type": "polygonlabels", "original_width": 24, "original_height": 20,
             "value": {"points": [[75, 75], [100, 75], [100, 100], [75, 100]],
                       "polygonlabels": ["nucleus"]}},
            {"type": "keypointlabels", "original_width": 24, "original_height": 20,
             "value": {"x": 50, "y": 50, "keypointlabels": ["cell"]}},
        ]}]}]
    parsed = labelstudio.parse_export(tasks)[0]
    assert parsed.image.endswith("ab12cd34-cells.png")
    assert np.array_equal(parsed.labels == 1, mask)
    assert parsed.labels[18, 22] == 2  # the polygon, drawn second
    assert parsed.points == [{"x": 12.0, "y": 10.0, "label": "cell"}]
    with pytest.raises(ValueError):
        labelstudio.decode_brush_rle(rle, 10, 10)


def make_zip(entries: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_zip_slip_and_hidden_entries_are_refused():
    zf = open_zip("a.zip", make_zip({"../evil.png": b"x", "/abs.png": b"x", "ok/good.png": b"1",
                                     "__MACOSX/._good.png": b"x", "a/../../up.png": b"x"}))
    entries, problems = list_entries("a.zip", zf)
    assert [e.path for e in entries] == ["ok/good.png"]
    assert len(problems) == 3 and all("leaves the archive" in p for p in problems)
    assert read_entry(zf, entries[0], 1000) == b"1"


def test_zip_bomb_limits(monkeypatch):
    monkeypatch.setattr("storage.archive.MAX_ENTRIES", 3)
    zf = open_zip("b.zip", make_zip({f"{i}.png": b"x" for i in range(5)}))
    with pytest.raises(ArchiveError, match="entries"):
        list_entries("b.zip", zf)
    with pytest.raises(ArchiveError, match="not a readable .zip"):
        open_zip("c.zip", io.BytesIO(b"PK not really"))


def test_contrast_is_applied_in_16_bit_units():
    img = np.zeros((1, 1, 4, 4), np.uint16)
    img[0, 0, :, :2] = 1000
    img[0, 0, :, 2:] = 1100        # 100 apart: crushed to 8 bits first, both would be ~4
    rgb = composite(img, 0, [ChannelView("#ffffff", 1000, 1100)], 16)
    assert rgb[0, 0, 0] == 0 and rgb[0, 3, 0] == 255
    green = composite(img, 0, [ChannelView("#00ff00", 1000, 1100)], 16)
    assert green[0, 3].tolist() == [0, 255, 0]
    hidden = composite(img, 0, [ChannelView("#ffffff", 0, 1, visible=False)], 16)
    assert hidden.max() == 0


def test_downsample_and_overlay():
    plane = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert downsample(plane, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    labels = disc_labels()
    edge = outlines(labels)
    assert edge[10, 5] and not edge[10, 10] and not edge[0, 0]
    rgba = overlay_rgba(labels, 25)
    assert rgba.shape == (20, 25, 4) and rgba[..., 3].max() == 255

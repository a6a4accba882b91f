"""Malformed inputs from outside (HDF5 sample files, Label Studio exports) are refused with
a message naming the file (and sample or task), never a raw exception or a huge allocation."""
import tracemalloc

import h5py
import numpy as np
import pytest

from storage import labelstudio
from storage.hdf5 import Sample, list_samples, load_image, read_samples, write_samples
from storage.labelstudio import LabelStudioError, decode_brush_rle, encode_brush_rle, parse_export
from storage.readers import ImageReadError


def h5_with(path, image=None, **attrs):
    with h5py.File(path, "w") as f:
        g = f.create_group("samples/000000")
        g.create_dataset("image", data=np.ones((10, 12), np.uint16) if image is None else image)
        g.create_dataset("label_0", data=np.zeros((10, 12), np.uint16))
        for k, v in attrs.items():
            g.attrs[k] = v
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_hdf5_non_finite_images_are_refused(tmp_path, bad):
    image = np.ones((10, 12), np.float32)
    image[3, 4] = bad
    path = h5_with(tmp_path / "nan.h5", image)
    with pytest.raises(ImageReadError, match=r"^nan\.h5:/samples/000000: .*NaN or infinite"):
        list(read_samples(path))


def test_hdf5_float64_that_overflows_float32_is_refused(tmp_path):
    path = h5_with(tmp_path / "big.h5", np.full((10, 12), 1e300))
    info = list_samples(path)[0]
    with pytest.raises(ImageReadError, match="NaN or infinite"):
        load_image(path, info)


@pytest.mark.parametrize("value", ["abc", "1.5", 1.5, -1, 10**6, True, np.array([1, 2])])
def test_hdf5_bad_n_labels_names_the_file(tmp_path, value):
    path = h5_with(tmp_path / "labels.h5", n_labels=value)
    with pytest.raises(ImageReadError) as err:
        list_samples(path)
    assert str(err.value).startswith("labels.h5:/samples/000000: the n_labels attribute")
    assert "invalid literal" not in str(err.value)


@pytest.mark.parametrize("value", [1, "1", np.int64(1), 1.0, b"1"])
def test_hdf5_n_labels_accepts_whole_numbers(tmp_path, value):
    assert list_samples(h5_with(tmp_path / "ok.h5", n_labels=value))[0].n_labels == 1


def test_hdf5_layout_is_checked_for_every_sample_before_reading(tmp_path):
    good = Sample("a.tif", np.ones((1, 1, 10, 12), np.uint8), [])
    write_samples(tmp_path / "two.h5", [good, good])
    with h5py.File(tmp_path / "two.h5", "a") as f:
        f["samples/000001"].attrs["n_labels"] = "many"
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        reads.append(self.name)
        return original(self, key)
    h5py.Dataset.__getitem__ = spy
    try:
        with pytest.raises(ImageReadError, match="000001: the n_labels"):
            next(read_samples(tmp_path / "two.h5"))
    finally:
        h5py.Dataset.__getitem__ = original
    assert reads == []


def test_hdf5_huge_declared_image_is_refused_without_reading(tmp_path):
    with h5py.File(tmp_path / "huge.h5", "w") as f:
        f.create_dataset("samples/000000/image", shape=(16384, 16384), dtype=np.float32,
                         compression="gzip", chunks=(1024, 1024))   # nothing written: tiny
    with pytest.raises(ImageReadError, match=r"huge\.h5:/samples/000000: decodes to 1\.0 GiB"):
        list_samples(tmp_path / "huge.h5")


RLE = encode_brush_rle(np.eye(20, 24, dtype=bool))


def task(result=None, **over):
    r = {"type": "brushlabels", "original_width": 24, "original_height": 20,
         "value": {"format": "rle", "rle": RLE, "brushlabels": ["cell"]}}
    r.update(result or {})
    t = {"id": 42, "data": {"image": "/data/upload/1/ab12-cells.png"},
         "annotations": [{"result": [r]}]}
    t.update(over)
    return t


MALFORMED = {
    "task is a list": [[1, 2]],
    "annotations not a list": [task(annotations="yes")],
    "result not a list": [task(annotations=[{"result": 3}])],
    "value not an object": [task({"value": "rle"})],
    "huge original size": [task({"original_width": 200000, "original_height": 200000})],
    "negative size": [task({"original_width": -5})],
    "size as text": [task({"original_width": "24"})],
    "rle values above 255": [task({"value": {"rle": [300] + RLE}})],
    "rle not a list": [task({"value": {"rle": "abc"}})],
    "rle truncated": [task({"value": {"rle": RLE[:len(RLE) // 2]}})],
    "rle count mismatch": [task({"original_width": 23})],
    "rle declares 37 GiB": [task({"value": {"rle": [255] * 8 + RLE[4:]}})],
    "polygon points junk": [task({"type": "polygonlabels", "value": {"points": "x"}})],
    "polygon NaN": [task({"type": "polygonlabels",
                          "value": {"points": [[1, 1], [float("nan"), 2], [3, 3]]}})],
    "keypoint x text": [task({"type": "keypointlabels", "value": {"x": "a", "y": 1}})],
    "labels not a list": [task({"value": {"rle": RLE, "brushlabels": "cell"}})],
    "sizes differ": [task(annotations=[{"result": [
        task()["annotations"][0]["result"][0],
        {"type": "keypointlabels", "original_width": 30, "original_height": 20,
         "value": {"x": 1, "y": 1}}]}])],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_labelstudio_tasks_are_refused_cleanly(case):
    tracemalloc.start()
    try:
        with pytest.raises(LabelStudioError) as err:
            parse_export(MALFORMED[case])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith("task 1")
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB while refusing"


def test_labelstudio_dry_run_draws_nothing_and_real_run_draws():
    assert parse_export([task()])[0].labels.max() == 1
    assert labelstudio.parse_task(task(), dry_run=True).labels is None
    with pytest.raises(ValueError, match="more than the limit"):
        decode_brush_rle(RLE, 100000, 100000)


def test_auto_contrast_ignores_non_finite_values():
    """Images with NaN imported before NaNs were refused must not get [null, null] limits."""
    from app.imaging.render import auto_limits
    plane = np.full((32, 32), np.nan, np.float32)
    plane[:16] = np.linspace(0, 100, 16 * 32, dtype=np.float32).reshape(16, 32)
    low, high = auto_limits(plane)
    assert np.isfinite([low, high]).all() and 0 <= low < high <= 100
    assert auto_limits(np.full((4, 4), np.inf, np.float32)) == (0.0, 1.0)

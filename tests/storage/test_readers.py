"""Image readers: canonical (Z, C, Y, X) layout, metadata axes, and broken input."""
import io

import numpy as np
import pytest

from storage.readers import ImageReadError, read_image_bytes, read_labels_bytes
from tests.images_data import png, tiff


def test_grey_tiff_16bit():
    a = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 7
    img = read_image_bytes("a.tif", tiff(a))
    assert img.pixels.shape == (1, 1, 20, 30) and img.pixels.dtype == np.uint16
    assert np.array_equal(img.pixels[0, 0], a)


def test_imagej_hyperstack_axes():
    a = np.random.default_rng(0).integers(0, 4000, (5, 2, 16, 24), dtype=np.uint16)  # ZCYX
    img = read_image_bytes("stack.tif", tiff(a, imagej=True, metadata={"axes": "ZCYX"}))
    assert img.pixels.shape == (5, 2, 16, 24) and np.array_equal(img.pixels, a)


def test_ome_tiff_channel_names():
    a = np.random.default_rng(1).integers(0, 255, (2, 16, 24), dtype=np.uint8)
    data = tiff(a, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    img = read_image_bytes("x.ome.tif", data)
    assert img.pixels.shape == (1, 2, 16, 24) and img.channel_names == ["DAPI", "GFP"]
    assert np.array_equal(img.pixels[0], a)


def test_png_rules():
    rgb = np.random.default_rng(2).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    img = read_image_bytes("c.png", png(rgb))
    assert img.pixels.shape == (1, 3, 10, 12) and np.array_equal(img.pixels[0, 1], rgb[..., 1])
    grey = rgb[..., 0]
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    img = read_image_bytes("g.png", png(rgba))
    assert img.pixels.shape == (1, 1, 10, 12) and np.array_equal(img.pixels[0, 0], grey)


@pytest.mark.parametrize("shape,expected", [
    ((8, 9), (1, 1, 8, 9)), ((8, 9, 3), (1, 3, 8, 9)), ((2, 8, 9), (1, 2, 8, 9)),
    ((12, 8, 9), (12, 1, 8, 9)), ((3, 2, 8, 9), (3, 2, 8, 9)),
])
def test_npy_axis_rules(shape, expected):
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, np.float32))
    assert read_image_bytes("a.npy", buf.getvalue()).pixels.shape == expected


@pytest.mark.parametrize("name,data,message", [
    ("t.tif", tiff(np.zeros((8, 8), np.uint8))[:60], "not a readable TIFF"),
    ("p.png", b"\x89PNG\r\n\x1a\nthis is not a png", "not a readable PNG"),
    ("p.png", b"GIF89a not a png", "not a readable PNG"),
    ("x.txt", b"hello", "not a supported image type"),
    ("e.tif", b"", "the file is empty"),
    ("o.npy", b"\x93NUMPY\x01\x00garbage", "not a readable .npy"),
])
def test_broken_files_are_named_in_the_error(name, data, message):
    with pytest.raises(ImageReadError, match=message) as err:
        read_image_bytes(name, data)
    assert str(err.value).startswith(name)


def test_pixel_limit_is_checked_before_decoding():
    big = png(np.zeros((300, 300), np.uint8))
    with pytest.raises(ImageReadError, match="more than the limit"):
        read_image_bytes("bomb.png", big, max_pixels=50_000)
    header_only = tiff(np.zeros((300, 300), np.uint16))
    with pytest.raises(ImageReadError, match="more than the limit"):
        read_image_bytes("bomb.tif", header_only, max_pixels=50_000)


def test_npy_pickles_are_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError):
        read_image_bytes("evil.npy", buf.getvalue())


def test_labels_instance_and_binary():
    inst = np.zeros((10, 10), np.uint16)
    inst[1:3, 1:3], inst[5:8, 5:8] = 1, 7
    out = read_labels_bytes("l.tif", tiff(inst), (10, 10))
    assert out.dtype == np.uint16 and np.array_equal(out, inst)
    binary = ((inst > 0) * 255).astype(np.uint8)
    out = read_labels_bytes("m.png", png(binary), (10, 10))
    assert sorted(np.unique(out)) == [0, 1, 2]  # two separate blobs -> two instances
    with pytest.raises(ImageReadError, match="the image is 12x10"):
        read_labels_bytes("l.tif", tiff(inst), (12, 10))

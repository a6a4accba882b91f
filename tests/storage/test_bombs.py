"""Decompression bombs are refused from their headers, before anything is decoded or
inflated: the refusal names the file, the decoded size, the limit and the setting to raise,
and Python's traced memory stays a small fraction of what decoding would take."""
import tracemalloc

import numpy as np
import pytest

from storage.archive import ArchiveError, list_entries, open_zip
from storage.readers import ImageReadError, declared_size, read_image_bytes
from tests.storage import bombs

MiB = 1 << 20


def peak_mib(fn):
    """(result or exception, peak traced memory in MiB) of fn()."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out = exc
        return out, tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def tiff_bomb():
    return bombs.zlib_tiff(16384, np.float32)


def test_tiff_bomb_declares_a_gib(tiff_bomb):
    assert len(tiff_bomb) < 2 * MiB
    declared = declared_size("bomb.tif", tiff_bomb)
    assert declared.shape == (16384, 16384) and declared.nbytes == 1 << 30


def test_tiff_bomb_is_refused_before_decoding(tiff_bomb):
    err, peak = peak_mib(lambda: read_image_bytes("bomb.tif", tiff_bomb))
    assert isinstance(err, ImageReadError), err
    message = str(err)
    assert message.startswith("bomb.tif:") and "1.0 GiB" in message
    assert "512.0 MiB" in message and "MAX_IMAGE_BYTES" in message
    assert peak < 64, f"{peak:.0f} MiB traced while refusing"


def test_tiff_under_the_limit_still_reads():
    data = bombs.zlib_tiff(512, np.uint16, rows_per_strip=64)
    img = read_image_bytes("ok.tif", data, max_bytes=1 * MiB)
    assert img.pixels.shape == (1, 1, 512, 512) and not img.pixels.any()
    with pytest.raises(ImageReadError, match="MAX_IMAGE_BYTES"):
        read_image_bytes("ok.tif", data, max_bytes=MiB // 4)


def test_png_bombs_are_refused_from_the_header():
    huge = bombs.png(50000, 50000, genuine=False)
    assert declared_size("huge.png", huge).shape == (50000, 50000)
    err, peak = peak_mib(lambda: read_image_bytes("huge.png", huge))
    assert isinstance(err, ImageReadError) and str(err).startswith("huge.png:")
    assert "MAX_IMAGE_PIXELS" in str(err) and peak < 16
    # under the pixel limit, over the byte limit: a real (complete) PNG of 3000 x 3000
    real = bombs.png(3000, 3000)
    err, peak = peak_mib(lambda: read_image_bytes("big.png", real, max_bytes=4 * MiB))
    assert isinstance(err, ImageReadError) and "MAX_IMAGE_BYTES" in str(err)
    assert "big.png" in str(err) and peak < 4
    assert read_image_bytes("big.png", real).pixels.shape == (1, 1, 3000, 3000)


def test_npy_headers_declaring_huge_arrays_are_refused():
    bomb = bombs.npy_header((16000, 16000), np.float32)
    err, peak = peak_mib(lambda: read_image_bytes("huge.npy", bomb))
    assert isinstance(err, ImageReadError) and str(err).startswith("huge.npy:")
    assert "976.6 MiB" in str(err) and "MAX_IMAGE_BYTES" in str(err) and peak < 1
    absurd = bombs.npy_header((1 << 40, 1 << 40), np.float64)
    with pytest.raises(ImageReadError, match="MAX_IMAGE_PIXELS"):
        read_image_bytes("absurd.npy", absurd)
    short = bombs.npy_header((1000, 1000), np.uint16, b"\0" * 100)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image_bytes("short.npy", short)


def test_zip_bomb_is_refused_from_its_directory(tmp_path):
    path = bombs.zeros_zip(tmp_path / "bomb.zip", {"zeros.tif": 600 * MiB}, level=1)
    assert path.stat().st_size < 4 * MiB

    def judge():
        with open(path, "rb") as fh, open_zip("bomb.zip", fh) as zf:
            return list_entries("bomb.zip", zf)
    err, peak = peak_mib(judge)
    assert isinstance(err, ArchiveError), err
    assert str(err).startswith("bomb.zip: zeros.tif unpacks to 600.0 MiB")
    assert "MAX_IMAGE_BYTES" in str(err) and peak < 8


def test_zip_archive_total_and_ratio_limits(tmp_path):
    many = bombs.zeros_zip(tmp_path / "many.zip", {f"{i}.tif": 100 * MiB for i in range(3)},
                           level=1)
    with open(many, "rb") as fh, open_zip("many.zip", fh) as zf:
        with pytest.raises(ArchiveError, match=r"unpacks to 300\.0 MiB.*MAX_ARCHIVE_BYTES"):
            list_entries("many.zip", zf, max_total_bytes=256 * MiB)
        entries, problems = list_entries("many.zip", zf)       # the defaults allow it
        assert len(entries) == 3 and problems == []
    dense = bombs.zeros_zip(tmp_path / "dense.zip", {"zeros.tif": 100 * MiB}, level=9)
    with open(dense, "rb") as fh, open_zip("dense.zip", fh) as zf:
        with pytest.raises(ArchiveError, match="inflate 1,0[0-9]{2} times"):
            list_entries("dense.zip", zf)

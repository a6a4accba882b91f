"""Content-addressed blob store: dedupe, atomic writes, fsspec variant."""
import numpy as np
import pytest

from storage.blobstore import (BlobNotFound, FsspecBlobStore, LocalBlobStore, get_array,
                               open_blob_store, put_array, sha256_bytes)


@pytest.fixture(params=["local", "fsspec"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return FsspecBlobStore(f"file://{tmp_path}/fs-blobs")


def test_put_get_dedupe(store):
    key = store.put_bytes(b"cells")
    assert key == sha256_bytes(b"cells") and store.get_bytes(key) == b"cells"
    assert store.put_bytes(b"cells") == key and store.exists(key)
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get_bytes(key)


def test_arrays_round_trip_exactly(store):
    a = np.arange(2 * 3 * 5 * 7, dtype=np.uint16).reshape(2, 3, 5, 7)
    b = get_array(store, put_array(store, a))
    assert b.dtype == a.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "abc", "A" * 64, None])
def test_keys_are_validated(store, bad):
    with pytest.raises(ValueError):
        store.get_bytes(bad)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    store = LocalBlobStore(tmp_path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("storage.blobstore.os.replace", broken_replace)
    with pytest.raises(OSError):
        store.put_bytes(b"payload")
    assert not store.exists(sha256_bytes(b"payload"))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_open_blob_store_picks_backend(tmp_path):
    assert isinstance(open_blob_store("", tmp_path), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path}/x", tmp_path), FsspecBlobStore)


@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5),
    np.zeros((0, 4), np.uint16),
    np.ones((3, 3), bool),
    np.arange(20, dtype=np.int32)[::3],           # not contiguous
])
def test_arrays_are_stored_compressed_and_old_blobs_still_read(store, array):
    from storage.blobstore import ZSTD_MAGIC, array_sha256, array_to_bytes
    key = put_array(store, array)
    assert store.get_bytes(key).startswith(ZSTD_MAGIC)
    back = get_array(store, key)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array) and back.flags.writeable
    old = store.put_bytes(array_to_bytes(array, compress=False))   # a blob from before
    assert np.array_equal(get_array(store, old), array)
    # the content hash used for duplicates is the one of plain .npy bytes, as before
    assert array_sha256(array) == old


def test_compression_shrinks_label_masks(store):
    labels = np.zeros((512, 512), np.uint16)
    labels[100:200, 100:200] = 1
    labels[300:350, 20:90] = 2
    key = put_array(store, labels)
    assert len(store.get_bytes(key)) < labels.nbytes / 50


def test_damaged_compressed_blob_is_an_error(store):
    from storage.blobstore import array_from_bytes
    data = bytearray(store.get_bytes(put_array(store, np.arange(1000, dtype=np.uint16))))
    with pytest.raises((RuntimeError, ValueError)):     # imagecodecs.ZstdError is a RuntimeError
        array_from_bytes(bytes(data[:-20]))

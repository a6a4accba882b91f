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

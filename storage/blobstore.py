"""Content-addressed blob storage.

A blob's key is the sha256 of its bytes, so identical content is stored once. Writes are
atomic: on a disk, bytes go to a temporary file that is renamed into place; on an object
store (S3), one PUT of the whole object is atomic by itself (readers see all of it or
nothing), so nothing is staged. Either way a crash never leaves a half-written blob under a
real key. `LocalBlobStore` keeps blobs under a directory; `FsspecBlobStore` works on any
fsspec URL, e.g. `s3://bucket/prefix` (s3fs: endpoint, keys and region come from the
standard AWS environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION). `open` gives a file object that reads in chunks (downloads stream),
`copy_to` streams a blob into a local file.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

KEY_RE = re.compile(r"^[0-9a-f]{64}$")


class BlobNotFound(KeyError):
    pass


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"not a blob key: {key!r}")
    return key


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    def put_bytes(self, data: bytes) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def keys(self): ...


CHUNK = 1 << 20


def copy_to(store: BlobStore, key: str, path: str | os.PathLike) -> Path:
    """Stream blob `key` into the local file `path` (1 MiB at a time, never whole in memory)."""
    path = Path(path)
    with store.open(key) as src, open(path, "wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
    return path


class LocalBlobStore:
    """Blobs as files `root/ab/cd/abcd...` (two levels keep directories small)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)

    def path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put_bytes(self, data: bytes) -> str:
        key = sha256_bytes(data)
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=key[:8])
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self):
        """Every blob key in the store (files named by a key, two levels down)."""
        for path in self.root.glob("??/??/*"):
            if KEY_RE.match(path.name):
                yield path.name


class FsspecBlobStore:
    """Blobs on any fsspec filesystem, e.g. `file:///srv/blobs` or `s3://bucket/prefix`."""

    def __init__(self, url: str):
        import fsspec

        # No listings cache: other processes and hosts write and delete blobs meanwhile.
        self.fs, self.base = fsspec.core.url_to_fs(url, use_listings_cache=False)
        self.base = self.base.rstrip("/")
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        # Object stores have no directories and no rename (a "mv" is a copy and a delete),
        # but a single PUT is atomic, so objects are written in place.
        self.object_store = not any(p in ("file", "local") for p in protocols)
        if not self.object_store:
            self.fs.makedirs(self.base, exist_ok=True)

    def _path(self, key: str) -> str:
        _check_key(key)
        return f"{self.base}/{key[:2]}/{key[2:4]}/{key}"

    def put_bytes(self, data: bytes) -> str:
        key = sha256_bytes(data)
        path = self._path(key)
        if self.fs.exists(path):
            return key
        if self.object_store:
            self.fs.pipe_file(path, data)     # one PUT: the object appears whole or not at all
            return key
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)  # a rename on local disks
        return key

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def open(self, key: str) -> BinaryIO:
        """A file object that fetches the blob in blocks as it is read (ranged GETs on S3)."""
        try:
            return self.fs.open(self._path(key), "rb", block_size=CHUNK)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def delete(self, key: str) -> None:
        if self.fs.exists(self._path(key)):
            self.fs.rm_file(self._path(key))

    def keys(self):
        """Every blob key in the store."""
        try:
            found = self.fs.find(self.base)
        except FileNotFoundError:
            return
        for path in found:
            name = path.rsplit("/", 1)[-1]
            if KEY_RE.match(name):
                yield name


def open_blob_store(storage_url: str, default_dir: str | os.PathLike) -> BlobStore:
    """The store named by STORAGE_URL, or a local store in the data directory."""
    return FsspecBlobStore(storage_url) if storage_url else LocalBlobStore(default_dir)


# ---------------------------------------------------------------- arrays as blobs
# Arrays are stored as a .npy header followed by the zstd-compressed (level 1) C-order data,
# behind an 8-byte magic: label masks shrink ~100x and images 1.5-2.5x, at several hundred
# MB/s to write and 1-2 GB/s to read. Blobs written before compression (plain .npy) still read.
ZSTD_MAGIC = b"\x93CLZSTD\x01"


def _npy_header(array: np.ndarray) -> bytes:
    """The header np.save writes for `array` (C-contiguous), byte for byte."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(array))
    return buf.getvalue()


def array_sha256(array: np.ndarray) -> str:
    """sha256 of the array as plain .npy bytes (np.save), computed without copying it."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(_npy_header(array))
    if array.size:
        digest.update(memoryview(array.reshape(-1).view(np.uint8)))
    return digest.hexdigest()


def array_to_bytes(array: np.ndarray, compress: bool = True) -> bytes:
    """Serialise an array (no pickle): exact dtype and shape; zstd-compressed by default,
    plain .npy with `compress=False`."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError("object arrays cannot be stored")
    if not compress:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return buf.getvalue()
    import imagecodecs

    payload = b""
    if array.size:
        payload = imagecodecs.zstd_encode(array.reshape(-1).view(np.uint8), level=1)
    return ZSTD_MAGIC + _npy_header(array) + payload


def array_from_bytes(data: bytes) -> np.ndarray:
    """The array in `data` (compressed or plain .npy); a fresh, writable array."""
    if not data.startswith(ZSTD_MAGIC):
        return np.load(io.BytesIO(data), allow_pickle=False)
    view = memoryview(data)[len(ZSTD_MAGIC):]
    buf = io.BytesIO(view)
    version = np.lib.format.read_magic(buf)
    if version != (1, 0):
        raise ValueError(f"compressed array blob: unknown header version {version}")
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    if dtype.hasobject or fortran:
        raise ValueError("compressed array blob: unsupported header")
    out = np.empty(shape, dtype)
    if out.size:
        import imagecodecs

        flat = out.reshape(-1).view(np.uint8)
        got = imagecodecs.zstd_decode(view[buf.tell():], out=flat)
        if len(got) != flat.size:
            raise ValueError(f"compressed array blob: {len(got)} bytes, expected {flat.size}")
    return out


def put_array(store: BlobStore, array: np.ndarray) -> str:
    return store.put_bytes(array_to_bytes(array))


def get_array(store: BlobStore, key: str) -> np.ndarray:
    return array_from_bytes(store.get_bytes(key))

"""Decoded arrays kept in memory between requests of one process, by blob key.

Blob keys are the sha256 of the stored bytes, so a key always names the same array and a
cached copy can never go stale. Saving an annotation compares the new mask with the version
it builds on, which the previous save of the same image has just written: remembering that
mask here spares decompressing it again (12 ms at 2048², 5,000 cells).

Arrays handed out are read-only (shared between callers); take a copy to change one. The
cache is bounded by bytes, least recently used out first, and safe across threads."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

from storage.blobstore import BlobStore, get_array

MAX_BYTES = 96 << 20        # a few 2048² masks (8-16 MB each) per process


class ArrayCache:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, store: BlobStore, key: str) -> np.ndarray:
        """The array stored under `key`, read-only, from memory when it is there."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        return self.remember(key, get_array(store, key))

    def peek(self, key: str | None) -> np.ndarray | None:
        """The array kept for `key`, or None (nothing is read from a store)."""
        with self._lock:
            found = self._items.get(key) if key else None
            if found is not None:
                self._items.move_to_end(key)
            return found

    def remember(self, key: str, array: np.ndarray) -> np.ndarray:
        """Keep `array` as the content of blob `key` (the caller just wrote or read it and
        gives it up: it becomes read-only). Arrays larger than the whole cache are not
        kept. Returns the array."""
        array.setflags(write=False)
        if array.nbytes > self.max_bytes:
            return array
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = array
            self._bytes += array.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
        return array

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _after_fork() -> None:   # a forked child has none of its parent's threads: new locks
    for cache in (labels, areas):
        cache._lock = threading.Lock()


labels = ArrayCache()       # saved label masks (annotation versions, suggestion snapshots)
areas = ArrayCache(8 << 20)  # the pixel area of each cell of a saved mask, by the mask's key
os.register_at_fork(after_in_child=_after_fork)

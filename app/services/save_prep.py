"""Getting the next save ready while the annotator works: the mask a draft starts from,
decoded and with its cells' areas counted (`storage.array_cache`), so that a save compares
only the rows that changed (`app.imaging.effort.compare_with_areas`). Done in a background
thread after the workspace opened (once the page's own requests are answered) and after an
edit; each web worker keeps its own copy, so whichever worker takes the save finds it
ready."""
from __future__ import annotations

import logging
import os
import threading
import time

from app.imaging.effort import label_areas
from storage import array_cache
from storage.blobstore import BlobStore

log = logging.getLogger(__name__)
MAX_LABEL = 1 << 18                  # masks with larger ids are compared whole (no areas)


class InThread:
    """`fn(*args)` run in a thread of its own (one per call, not a pool: a pool's idle
    threads can be stopped under it, as Dash's test server stops every thread it did not
    start); `result()` waits and answers it, or raises its error."""

    def __init__(self, fn, *args):
        self._out: tuple = (None, None)
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                        name="cellloop-save")
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._out = (fn(*args), None)
        except BaseException as error:          # handed to result()
            self._out = (None, error)

    def result(self):
        self._thread.join()
        value, error = self._out
        if error is not None:
            raise error
        return value


_busy: set[str] = set()              # keys being prepared now (by this process)
_tried: set[str] = set()             # keys whose areas cannot be kept (3-D, too many ids)
_busy_lock = threading.Lock()


def _after_fork() -> None:           # a forked child has none of its parent's threads
    global _busy_lock
    _busy_lock = threading.Lock()
    _busy.clear()


os.register_at_fork(after_in_child=_after_fork)


def prepare(store: BlobStore, label_key: str | None, delay: float = 0.0) -> None:
    """Decode the mask `label_key` and count its cells' areas (a no-op once done, or while
    another thread does it), after `delay` seconds."""
    if delay > 0:
        time.sleep(delay)
    with _busy_lock:
        if (label_key is None or label_key in array_cache.areas or label_key in _busy
                or label_key in _tried):
            return
        _busy.add(label_key)
    try:
        labels = array_cache.labels.get(store, label_key)
        kept = labels.ndim == 2 and labels.dtype.kind in "ui" and \
            int(labels.max(initial=0)) < MAX_LABEL and int(labels.min(initial=0)) >= 0
        if kept:
            array_cache.areas.remember(label_key, label_areas(labels))
        else:
            with _busy_lock:
                if len(_tried) > 10_000:
                    _tried.clear()
                _tried.add(label_key)
    except Exception:               # a missing or unreadable blob: the save says why
        log.warning("could not prepare the start of a draft (%s)", label_key, exc_info=True)
    finally:
        with _busy_lock:
            _busy.discard(label_key)


def prepare_later(store: BlobStore, label_key: str | None, delay: float = 0.0) -> None:
    """`prepare` in the background (after `delay` seconds), unless it is done already."""
    if label_key is not None and label_key not in array_cache.areas:
        InThread(prepare, store, label_key, delay)

"""Reads while other processes write: a snapshot of a big map under a full-speed writer of
another key, against the same snapshot with no writer (measured in the same setup).

``SnapshotUnderWriter.track_ratio`` is the busy snapshot's time over the quiet one's (median of
``ROUNDS`` each, interleaved): 1.0 means the writer costs the snapshot nothing.  A snapshot
reads optimistically, stops at the first sign of a write, and then copies the map under its
lock (writers wait), so it finishes in about one snapshot's time at any write rate.
"""

import multiprocessing
import statistics
import time

from .common import Bench

ROUNDS = 5
_FORK = multiprocessing.get_context("fork")


def _write_one_key(store, map_id, go, stop):
    m = store.ref(map_id)
    go.set()
    i = 0
    while not stop.is_set():
        m["hot"] = i
        i += 1


class SnapshotUnderWriter(Bench):
    """``list(m.items())`` of ``n`` keys, alone and while a process writes one other key."""

    params = [[100_000, 300_000]]
    param_names = ["n"]
    timeout = 300

    def setup(self, n):
        with self.resources() as res:
            store = res.store("snap")
            m = store.map()
            m.update({f"key{i}": i for i in range(n)})
            self.m = m
            list(m.items())  # warm

    def _snapshot(self):
        t = time.perf_counter()
        list(self.m.items())
        return time.perf_counter() - t

    def track_ratio(self, n):
        quiet, busy = [], []
        for _ in range(ROUNDS):
            quiet.append(self._snapshot())
            go, stop = _FORK.Event(), _FORK.Event()
            p = _FORK.Process(target=_write_one_key, args=(self.m.store, self.m.id, go, stop))
            p.start()
            go.wait(60)
            try:
                busy.append(self._snapshot())
            finally:
                stop.set()
                p.join(60)
        return statistics.median(busy) / statistics.median(quiet)

    track_ratio.unit = "busy / quiet"  # type: ignore[attr-defined]

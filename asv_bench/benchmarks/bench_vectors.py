"""Vectors and struct records against NumPy and Python lists.

* ``ColumnScan``: sum one float64 column of a struct table of 1k to 10 M rows, through a
  zero-copy view of the shared table, of a private NumPy array (target: >= 0.95x the private
  scan's speed, i.e. a time ratio <= 1.05) and of an array over ``multiprocessing.shared_memory``.
* ``Extend``: append 1k, 100k or 1 M float64 values in one call, against ``np.concatenate`` of a
  private array (target >= 0.8x its speed), its destination out of or in the CPU caches.
* ``Append``: 10k single appends from Python, against ``list.append`` + a write into a NumPy
  array (target <= 2x).
* ``RecordAccess``: read and write one field of a struct record through ``StructRef``, a proxy,
  and a NumPy record (the per-field cost).
* ``NumpyProtocol``: ``np.sum`` of a float64 vector handed to NumPy as it is (its
  ``__array__``), against ``np.sum(v.view())`` and a private array (target: within 1.2x of
  ``np.sum(v.view())``), and ``pd.Series(v)``, 1k to 1 M values.
"""

import os

import numpy as np

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore.bench import ROW

from .common import Bench


class ColumnScan(Bench):
    """Peers: a private array, and an array over a raw ``multiprocessing.shared_memory``
    segment (what sharing a table costs without sharedstore)."""

    params = [["shared view", "private array", "multiprocessing.shared_memory"],
              [1000, 100_000, 1_000_000, 10_000_000]]
    param_names = ["impl", "rows"]
    timeout = 300

    def setup(self, impl, rows):
        data = np.zeros(rows, dtype=ROW)
        data["mass"] = 1.0
        with self.resources() as res:
            if impl == "private array":
                self.arr = data
            elif impl == "multiprocessing.shared_memory":
                from multiprocessing import shared_memory

                shm = shared_memory.SharedMemory(create=True, size=data.nbytes)
                res.shm_path(shm.name.lstrip("/"))
                res.defer(shm.unlink)
                res.defer(shm.close)
                self.arr = np.ndarray(data.shape, dtype=ROW, buffer=shm.buf)
                self.arr[:] = data
                res.defer(self.__dict__.pop, "arr", None)  # release the buffer before close
            else:
                store = res.store("scan")
                t = store.vector(ROW, capacity=rows)
                t.extend(data)
                self.arr = t.view()
                res.defer(self.__dict__.pop, "arr", None)  # drop the view before the store
        # One sum first: this asv re-runs setup before every timed call and times one call, so
        # without it the figure is a first sum after setup (the CPU's caches as setup's code
        # left them, 3-10 us for 1000 rows), not a scan of a table in use.
        self.arr["mass"].sum()

    def time_sum_column(self, impl, rows):
        assert self.arr["mass"].sum() == rows


class Extend(Bench):
    """Extend by ``n`` float64 values: into a new vector that must grow (its block moves to
    fresh shared pages, each faulted in on first touch), into one created with the capacity,
    ``np.concatenate`` onto a 1000-element private array, and a plain copy into touched pages of
    a ``multiprocessing.shared_memory`` segment (what any copy into shared memory costs: its
    pages are 4 KiB, where numpy asks for huge pages for big private arrays).

    ``dest`` is where the memory written to starts, the same for every peer: ``cold``, out of
    the CPU caches (setup writes 64 MiB, twice this VM's L3, after touching it), as for an
    extend now and then in a long-lived program; ``warm``, in the caches (setup runs the same
    extend once and undoes it), as in a tight loop.  Without this, the cache state each setup
    happened to leave decided the ratio (a big copy's non-temporal stores leave a vector's
    touched pages out of the cache, ``shm[:] = 0`` leaves them in: 1.4-1.7x one way or the
    other for the same copy).  The source array is made last, in the cache for every peer."""

    params = [["sharedstore (grows)", "sharedstore (capacity)", "np.concatenate",
               "copy into multiprocessing.shared_memory"],
              [1000, 100_000, 1_000_000], ["cold", "warm"]]
    param_names = ["impl", "n", "dest"]
    number = 1

    def setup(self, impl, n, dest):
        base = np.arange(1000, dtype=np.float64)
        self.base = base
        with self.resources() as res:
            if impl.startswith("sharedstore"):
                store = res.store("ext")
                cap = 2 * (n + 1000) if "capacity" in impl else 0
                self.v = store.vector("float64", capacity=cap)
                if cap:  # touch the pages once, as a long-lived vector's are
                    self.v.extend(np.zeros(cap))
                    self.v.clear()
                self.v.extend(base)
            elif impl.startswith("copy"):
                from multiprocessing import shared_memory

                shm = shared_memory.SharedMemory(create=True, size=16 * (n + 1000))
                res.shm_path(shm.name.lstrip("/"))
                res.defer(shm.unlink)
                res.defer(shm.close)
                self.shm = np.ndarray(2 * (n + 1000), dtype=np.float64, buffer=shm.buf)
                self.shm[:] = 0  # touched, as the "capacity" vector's pages are
                res.defer(self.__dict__.pop, "shm", None)  # release the buffer before close
        self.data = np.arange(n, dtype=np.float64)
        if impl == "np.concatenate":
            # as in a loop of concatenates: malloc has memory of this size to reuse (twice, as
            # glibc first moves its mmap threshold, then keeps the next block in its heap)
            for _ in range(2):
                np.concatenate([base, self.data])
        if dest == "warm" and impl != "sharedstore (grows)":  # (growth always writes new pages)
            self.time_extend(impl, n, dest)
            if impl.startswith("sharedstore"):
                self.v.resize(1000)
            self.base = base
        elif dest == "cold":
            _evict_caches()
            self.data.sum()  # the source back in the cache (a new array would take the memory
            #                  malloc keeps for np.concatenate's result)

    def time_extend(self, impl, n, dest):
        if impl.startswith("sharedstore"):
            self.v.extend(self.data)
        elif impl.startswith("copy"):
            self.shm[1000:1000 + n] = self.data
        else:
            self.base = np.concatenate([self.base, self.data])


_SCRATCH = []


def _evict_caches():
    """Write 64 MiB (twice the L3 of the project's VM): what was in the CPU caches leaves."""
    if not _SCRATCH:
        _SCRATCH.append(np.empty(64 << 20, dtype=np.uint8))
    _SCRATCH[0] += 1


class Append(Bench):
    params = [["sharedstore", "list + numpy write"]]
    param_names = ["impl"]
    number = 1

    def setup(self, impl):
        with self.resources() as res:
            if impl == "sharedstore":
                self.v = res.store("app").vector("float64")
            else:
                self.lst, self.arr = [], np.zeros(10_000)

    def time_append_10k(self, impl):
        if impl == "sharedstore":
            append = self.v.append
            for _ in range(10_000):
                append(1.5)
        else:
            lst, arr = self.lst, self.arr
            for i in range(10_000):
                lst.append(1.5)
                arr[i] = 1.5


class RecordAccess(Bench):
    params = [["StructRef", "proxy", "numpy record"]]
    param_names = ["impl"]

    def setup(self, impl):
        P = ss.Struct("P", {"mass": "float64", "id": "int64", "name": "string"})
        with self.resources() as res:
            store = res.store("rec")
            if impl == "StructRef":
                self.r = P.new(store, mass=1.0)
            elif impl == "proxy":
                self.r = P.new_proxy(store, mass=1.0)
            else:
                self.r = np.zeros(1, dtype=P.dtype)[0]
                self.r["mass"] = 1.0

    def time_get_set_10k(self, impl):
        r = self.r
        if impl == "proxy":
            for _ in range(10_000):
                r.mass = r.mass + 1.0
        else:
            for _ in range(10_000):
                r["mass"] = r["mass"] + 1.0


_FORK = __import__("multiprocessing").get_context("fork")
_worker_vector = None
TOTAL_ROWS = 2_000_000  # 80 MB: big enough that the Pool's dispatch (~0.5 ms) is noise
BATCH = 1000  # 40 KB per extend: copied outside the vector's lock (vector.OUT_OF_LOCK)


def _init_appender(vector, barrier):
    global _worker_vector, _worker_barrier
    _worker_vector, _worker_barrier = vector, barrier


def _warm(_) -> int:
    """Map the store's pages into this worker (read one word a page), as a long-running worker
    would have, so the timing shows appends and not first-touch faults; the barrier makes each
    worker take one of these tasks."""
    mem = _worker_vector.store.mem
    mem[:int(mem[L.W_COMMITTED]) // 8:L.PAGE // 8].sum()
    _worker_barrier.wait(60)
    return os.getpid()


def _append_batches(n_batches: int) -> int:
    v = _worker_vector
    rows = np.zeros(BATCH, dtype=ROW)
    for _ in range(n_batches):
        v.extend(rows)
    return n_batches * BATCH


class AppendThroughput(Bench):
    """``TOTAL_ROWS`` records appended in batches of 1000 by 1 or 2 processes (a fork Pool
    started in setup, its workers' page tables warmed) to one shared table, emptied first; the
    final length must be exact.  Throughput ratio = time(1) / time(2) (target >= 1.5)."""

    params = [[1, 2]]
    param_names = ["processes"]
    number = 1
    timeout = 180

    def setup(self, processes):
        with self.resources() as res:
            store = res.store("appthr")
            self.v = store.vector(ROW, capacity=TOTAL_ROWS)
            self.v.extend(np.zeros(TOTAL_ROWS, dtype=ROW))  # pages touched once
            self.v.clear()
            barrier = _FORK.Barrier(processes)
            pool = _FORK.Pool(processes, initializer=_init_appender, initargs=(self.v, barrier))
            res.defer(pool.join)
            res.defer(pool.terminate)
            warmed = pool.map(_warm, range(processes), chunksize=1)
            assert len(set(warmed)) == processes  # every worker is warm
            self.pool = pool
            self.processes = processes

    def time_append(self, processes):
        per = TOTAL_ROWS // BATCH // processes
        self.v.clear()  # (keeps the data block: its pages stay touched)
        done = sum(self.pool.map(_append_batches, [per] * processes, chunksize=1))
        assert len(self.v) == done == TOTAL_ROWS


class NumpyProtocol(Bench):
    """What a NumPy-aware library pays for a vector handed to it: ``np.sum(v)`` goes through
    ``VectorRef.__array__`` (a zero-copy view); peers: the view taken by hand, a private array.
    ``pd.Series(v)`` wraps the same view without a copy."""

    params = [["np.sum(v)", "np.sum(v.view())", "np.sum(private)", "pd.Series(v)"],
              [1000, 100_000, 1_000_000]]
    param_names = ["impl", "n"]

    def setup(self, impl, n):
        data = np.random.default_rng(0).random(n)
        with self.resources() as res:
            if impl == "np.sum(private)":
                self.data = data
            else:
                store = res.store("protocol")
                self.v = store.vector("float64", capacity=n)
                self.v.extend(data)
                res.defer(self.__dict__.pop, "v", None)
            if impl == "pd.Series(v)":
                import pandas as pd

                self.series = pd.Series
        self.time_call(impl, n)  # (warm: the first call after setup is not the figure)

    def time_call(self, impl, n):
        if impl == "np.sum(v)":
            np.sum(self.v)
        elif impl == "np.sum(v.view())":
            np.sum(self.v.view())
        elif impl == "np.sum(private)":
            np.sum(self.data)
        else:
            self.series(self.v, copy=False)

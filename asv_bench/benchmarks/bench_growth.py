"""Growth: the latency of single inserts while a map grows (issue 28), and vectors that grow
(issue 23): extends against a pre-sized ``/dev/shm`` file, memory against the data, a view
taken before growth, appends from two processes.

* ``InsertLatency``: a map grown from empty to ``n`` int keys (1M, 4M) one insert at a time in
  a Python loop, ``time.perf_counter_ns`` around each insert: the largest single insert and
  the p50 / p99 / p99.9 latencies; peers: ``dict``, lmdb (a write transaction per insert).
  Target: the largest insert while a map grows to 8M keys <= 10 ms: ``InsertLatencyBig``
  (8M), skipped unless ``SSBENCH_BIG=1`` (1-2 minutes, most of it lmdb's 8M transactions).
* ``ExtendGrowth`` / ``ExtendGrowthFigures``: 100 extends of 1M float64 into one vector
  grown from empty, against the same chunks written into a ``/dev/shm`` file sized up front
  (``ftruncate`` to 800 MB, ``np.memmap``): total time, largest single extend, memory over the
  data.  Targets: total <= 1.5x the floor's, memory <= 1.25x the data.
* ``ExtendMemory``: 10M int64 in 10 extends: committed / data.
* ``ViewAfterGrowth``: does a write through a view taken before the vector grew land in the
  vector (1) or get lost (0)?
* ``AppendScaling``: 2 processes appending 1000-row batches to one vector over 1 process,
  against plain copies from 2 processes into one shared buffer over 1 (the machine's memory
  bandwidth); the quotient of the two (target >= 0.9).

Single-process append, extend and column scan (issue 23's "before" figures) are
``bench_vectors.Append``, ``bench_vectors.Extend`` and ``bench_vectors.ColumnScan``.
"""

import array
import gc
import importlib.util
import os
import shutil
import statistics
import struct
import tempfile
import time

import numpy as np

from sharedstore.bench import ROW

from .common import (
    MB,
    Bench,
    Resources,
    Skip,
    file_bytes,
    interleaved,
    median_ratio,
    run_parallel,
    shm_file,
)

# ---------------------------------------------------------------------- insert latency
LATENCY_IMPLS = ["sharedstore", "dict", "lmdb"]
BIG_ENV = "SSBENCH_BIG"
LMDB_BIG_MAP_SIZE = 8 << 30  # a sparse file: room for 8M small entries, however they split
_ODD = np.uint64(0x9E3779B97F4A7C15)
_PACK_Q = struct.Struct("<q").pack


def _int_keys(n: int) -> list:
    """``n`` distinct non-negative int keys spread over 63 bits (``i * odd mod 2**63`` is a
    bijection), in an order with no pattern a hash table could favour."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    return ((i * _ODD) & np.uint64((1 << 63) - 1)).astype(np.int64).tolist()


def _insert_latencies(impl: str, n: int) -> dict:
    """Insert ``n`` new int keys (value: the insert's index) into an empty map of ``impl``,
    timing each insert; the garbage collector is off during the loop (the figure is the
    map's, not the collector's).  Returns the loop's seconds and the latencies' statistics."""
    keys = _int_keys(n)
    lat = array.array("q", bytes(8 * n))
    pc = time.perf_counter_ns
    with Resources() as res:
        if impl == "lmdb":
            import lmdb

            path = tempfile.mkdtemp(prefix="ssbench-lmdb-")
            res.defer(shutil.rmtree, path, True)
            env = lmdb.open(path, map_size=LMDB_BIG_MAP_SIZE, sync=False, metasync=False)
            res.defer(env.close)
            items = [(k.to_bytes(8, "big"), _PACK_Q(i)) for i, k in enumerate(keys)]
            del keys
            begin = env.begin
            with begin(write=True) as txn:  # warm
                txn.put(b"warm", b"")
                txn.delete(b"warm")
        else:
            m = res.store("grow").map() if impl == "sharedstore" else {}
            m[-1] = 0  # warm, then removed
            del m[-1]
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter()
            if impl == "lmdb":
                for i, (k, v) in enumerate(items):
                    t0 = pc()
                    with begin(write=True) as txn:
                        txn.put(k, v)
                    lat[i] = pc() - t0
            else:
                for i, k in enumerate(keys):
                    t0 = pc()
                    m[k] = i
                    lat[i] = pc() - t0
            seconds = time.perf_counter() - t
        finally:
            gc.enable()
        count = env.stat()["entries"] if impl == "lmdb" else len(m)
        assert count == n, (count, n)
    ns = np.frombuffer(lat, dtype=np.int64)
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9]).tolist()
    return {"seconds": seconds, "p50": p50, "p99": p99, "p999": p999, "max": int(ns.max())}


def _lmdb_missing():
    if importlib.util.find_spec("lmdb") is None:
        return "lmdb is not installed (pip install 'sharedstore[bench]')"
    return None


def _latency_table(sizes) -> dict:
    out: dict = {"skipped": {}}
    for n in sizes:
        for impl in LATENCY_IMPLS:
            if impl == "lmdb" and _lmdb_missing():
                out["skipped"][impl, n] = _lmdb_missing()
                continue
            out[impl, n] = _insert_latencies(impl, n)
    return out


class InsertLatency(Bench):
    """Grow a map from empty to ``n`` int keys, one insert at a time in a Python loop with
    ``time.perf_counter_ns()`` around each (a call pair costs ~100 ns, in every figure):
    sharedstore's map, a ``dict``, lmdb (one write transaction per insert, ``sync=False``).
    One growth per case, all measured once in ``setup_cache``; a preemption of the process
    shows in every impl's max alike, so read sharedstore's max against dict's.

    ``track_max_insert_ms``: the largest single insert (target at 8M: <= 10 ms);
    ``track_p50_us``, ``track_p99_us``, ``track_p999_us``: percentiles of the inserts;
    ``track_total_seconds``: the whole loop."""

    params = [LATENCY_IMPLS, [1_000_000, 4_000_000]]
    param_names = ["impl", "n"]
    number = 1
    timeout = 900

    def setup_cache(self):
        return _latency_table(self.params[1])

    setup_cache.timeout = 900  # type: ignore[attr-defined]

    def setup(self, cache, impl, n):
        reason = cache["skipped"].get((impl, n)) or cache["skipped"].get("all")
        if reason:
            raise Skip(reason)

    def track_max_insert_ms(self, cache, impl, n):
        return cache[impl, n]["max"] / 1e6

    track_max_insert_ms.unit = "ms"  # type: ignore[attr-defined]

    def track_p50_us(self, cache, impl, n):
        return cache[impl, n]["p50"] / 1e3

    track_p50_us.unit = "us"  # type: ignore[attr-defined]

    def track_p99_us(self, cache, impl, n):
        return cache[impl, n]["p99"] / 1e3

    track_p99_us.unit = "us"  # type: ignore[attr-defined]

    def track_p999_us(self, cache, impl, n):
        return cache[impl, n]["p999"] / 1e3

    track_p999_us.unit = "us"  # type: ignore[attr-defined]

    def track_total_seconds(self, cache, impl, n):
        return cache[impl, n]["seconds"]

    track_total_seconds.unit = "seconds"  # type: ignore[attr-defined]


class InsertLatencyBig(InsertLatency):
    """As ``InsertLatency``, at 8M keys (the target's size).  Skipped unless ``SSBENCH_BIG=1``
    is set in asv's environment: ``SSBENCH_BIG=1 asv run ... -b InsertLatencyBig`` (about
    1-2 minutes on 2 cores, most of it lmdb's 8M write transactions; a few GB of memory)."""

    params = [LATENCY_IMPLS, [8_000_000]]
    timeout = 3600

    def setup_cache(self):
        if os.environ.get(BIG_ENV, "") in ("", "0"):
            return {"skipped": {"all": f"8M keys: set {BIG_ENV}=1 to run"}}
        return _latency_table(self.params[1])

    setup_cache.timeout = 3600  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- vector extends
EXTEND_CHUNK = 1_000_000  # float64 per extend
EXTENDS = 100
EXTEND_DATA = EXTEND_CHUNK * EXTENDS * 8  # 800 MB
EXTEND_ROUNDS = 3


def _extend_vector(chunk: np.ndarray, extends: int) -> dict:
    """``extends`` extends by ``chunk`` into a new vector of a new store, each timed."""
    with Resources() as res:
        store = res.store("extgrow")
        w = store.vector(chunk.dtype)  # warm the kernels on another vector
        w.extend(chunk[:8])
        w.drop()
        v = store.vector(chunk.dtype)
        before = store.stats()["committed"]
        lat = []
        pc = time.perf_counter
        t = pc()
        for _ in range(extends):
            t0 = pc()
            v.extend(chunk)
            lat.append(pc() - t0)
        total = pc() - t
        committed = store.stats()["committed"] - before
        blocks = file_bytes(store.path)
        assert len(v) == extends * len(chunk) and v[-1] == chunk[-1]
        return {"total": total, "largest": max(lat), "committed": committed, "blocks": blocks}


def _write_floor(chunk: np.ndarray, extends: int) -> dict:
    """The same chunks written in turn into a ``/dev/shm`` file sized up front (its pages
    untouched, as a vector's new pages are): the floor of any extend into shared memory."""
    n = len(chunk)
    with Resources() as res:
        path = shm_file(res, "floor", extends * chunk.nbytes)
        arr = np.memmap(path, dtype=chunk.dtype, mode="r+", shape=(extends * n,))
        try:
            lat = []
            pc = time.perf_counter
            t = pc()
            for i in range(extends):
                t0 = pc()
                arr[i * n:(i + 1) * n] = chunk
                lat.append(pc() - t0)
            total = pc() - t
            blocks = file_bytes(path)
            assert arr[-1] == chunk[-1]
        finally:
            del arr  # unmapped before the file goes
        return {"total": total, "largest": max(lat), "committed": blocks, "blocks": blocks}


class _ExtendGrowthMeasure(Bench):
    """One measurement for ``ExtendGrowth`` and ``ExtendGrowthFigures`` (they inherit this
    ``setup_cache``, so asv runs it once for both)."""

    number = 1
    timeout = 900

    def setup_cache(self):
        chunk = np.arange(EXTEND_CHUNK, dtype=np.float64)

        def measure(impl):
            return (_extend_vector if impl == "vector" else _write_floor)(chunk, EXTENDS)

        runs = interleaved(["vector", "floor"], measure, EXTEND_ROUNDS)
        return {impl: {k: [r[k] for r in rs] for k in rs[0]} for impl, rs in runs.items()}

    setup_cache.timeout = 900  # type: ignore[attr-defined]


class ExtendGrowth(_ExtendGrowthMeasure):
    """100 extends of 1M float64 (800 MB) into one vector grown from empty, against the same
    chunks written into a ``/dev/shm`` file ``ftruncate``d to 800 MB up front (the floor),
    in turn, median of ``EXTEND_ROUNDS``.

    ``track_total_over_floor``: the 100 extends' time over the floor's (target <= 1.5);
    ``track_largest_over_floor``: the largest single extend over the floor's largest write;
    ``track_committed_over_data``: the store's ``committed`` growth over the 800 MB (target
    <= 1.25); ``track_file_blocks_over_data``: the store file's blocks on ``/dev/shm`` over
    the data."""

    def track_total_over_floor(self, cache):
        return median_ratio(cache["vector"]["total"], cache["floor"]["total"])

    track_total_over_floor.unit = "x floor"  # type: ignore[attr-defined]

    def track_largest_over_floor(self, cache):
        return median_ratio(cache["vector"]["largest"], cache["floor"]["largest"])

    track_largest_over_floor.unit = "x floor"  # type: ignore[attr-defined]

    def track_committed_over_data(self, cache):
        return statistics.median(cache["vector"]["committed"]) / EXTEND_DATA

    track_committed_over_data.unit = "x data"  # type: ignore[attr-defined]

    def track_file_blocks_over_data(self, cache):
        return statistics.median(cache["vector"]["blocks"]) / EXTEND_DATA

    track_file_blocks_over_data.unit = "x data"  # type: ignore[attr-defined]


class ExtendGrowthFigures(_ExtendGrowthMeasure):
    """The figures behind ``ExtendGrowth``'s ratios, for the vector and the floor (medians):
    seconds for the 100 extends, the largest single extend, the file's blocks on
    ``/dev/shm`` in MB (for the vector also ``track_committed_mb``)."""

    params = [["vector", "pre-sized /dev/shm file"]]
    param_names = ["impl"]

    @staticmethod
    def _key(impl):
        return "vector" if impl == "vector" else "floor"

    def track_total_seconds(self, cache, impl):
        return statistics.median(cache[self._key(impl)]["total"])

    track_total_seconds.unit = "seconds"  # type: ignore[attr-defined]

    def track_largest_extend_ms(self, cache, impl):
        return statistics.median(cache[self._key(impl)]["largest"]) * 1e3

    track_largest_extend_ms.unit = "ms"  # type: ignore[attr-defined]

    def track_file_mb(self, cache, impl):
        return statistics.median(cache[self._key(impl)]["blocks"]) / MB

    track_file_mb.unit = "MB"  # type: ignore[attr-defined]

    def track_committed_mb(self, cache, impl):
        return statistics.median(cache[self._key(impl)]["committed"]) / MB

    track_committed_mb.unit = "MB"  # type: ignore[attr-defined]


class ExtendMemory(Bench):
    """10M int64 (80 MB) in 10 extends of 1M into a vector grown from empty:
    ``track_committed_over_data``, the store's ``committed`` growth over the data (target
    <= 1.25), and ``track_file_blocks_over_data``, the store file's growth on ``/dev/shm``
    over the data."""

    number = 1
    timeout = 300

    def setup(self):
        self.run = _extend_vector(np.arange(EXTEND_CHUNK, dtype=np.int64), 10)
        with Resources() as res:  # the file of an empty store, to subtract
            self.empty = file_bytes(res.store("extmem").path)

    def track_committed_over_data(self):
        return self.run["committed"] / (10 * EXTEND_CHUNK * 8)

    track_committed_over_data.unit = "x data"  # type: ignore[attr-defined]

    def track_file_blocks_over_data(self):
        return (self.run["blocks"] - self.empty) / (10 * EXTEND_CHUNK * 8)

    track_file_blocks_over_data.unit = "x data"  # type: ignore[attr-defined]


class ViewAfterGrowth(Bench):
    """A float64 vector of 1000 values, a view taken, then 4M more values extended (the vector
    grows).  ``track_old_view_write_lands``: 1 if ``v[5]`` reads a value written through the
    old view after the growth, 0 if the write was lost (it went to memory the vector left).
    ``track_old_view_sees_new_writes``: 1 if the old view reads ``v[6] = x`` written through
    the vector after the growth."""

    number = 1

    def setup(self):
        with self.resources() as res:
            v = res.store("oldview").vector("float64")
            v.extend(np.arange(1000, dtype=np.float64))
            view = v.view()
            v.extend(np.zeros(4_000_000))
            view[5] = 12345.0
            v[6] = 54321.0
            self.lands = int(v[5] == 12345.0)
            self.sees = int(view[6] == 54321.0)
            del view

    def track_old_view_write_lands(self):
        return self.lands

    track_old_view_write_lands.unit = "1 = lands, 0 = lost"  # type: ignore[attr-defined]

    def track_old_view_sees_new_writes(self):
        return self.sees

    track_old_view_sees_new_writes.unit = "1 = sees, 0 = stale"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- appends from 2 processes
APPEND_ROWS = 2_000_000  # 80 MB of ROW records
APPEND_BATCH = 1000
APPEND_ROUNDS = 5


def _batch() -> np.ndarray:
    rows = np.zeros(APPEND_BATCH, dtype=ROW)
    rows["mass"] = 1.0
    rows["id"] = np.arange(APPEND_BATCH)
    return rows


def _vector_appender(v, n_batches):
    rows = _batch()

    def run():
        for _ in range(n_batches):
            v.extend(rows)
        return n_batches
    return run


def _copy_appender(path, first, n_batches):
    buf = np.memmap(path, dtype=ROW, mode="r+", shape=(APPEND_ROWS,))
    rows = _batch()

    def run():
        for b in range(first, first + n_batches):
            buf[b * APPEND_BATCH:(b + 1) * APPEND_BATCH] = rows
        return n_batches
    return run


def _measure_appends(config) -> float:
    impl, processes = config
    per = APPEND_ROWS // APPEND_BATCH // processes
    with Resources() as res:
        if impl == "vector":
            store = res.store("append2")
            w = store.vector(ROW)  # warm the kernels on another vector
            w.extend(_batch())
            w.drop()
            v = store.vector(ROW)
            seconds, _ = run_parallel(_vector_appender, [(v, per)] * processes)
            assert len(v) == APPEND_ROWS and v.view()["mass"].sum() == APPEND_ROWS
            return seconds
        path = shm_file(res, "append2", APPEND_ROWS * ROW.itemsize)
        seconds, _ = run_parallel(_copy_appender,
                                  [(path, i * per, per) for i in range(processes)])
        return seconds


class AppendScaling(Bench):
    """``APPEND_ROWS`` records appended in batches of 1000 to one vector grown from empty, by
    1 process or 2 (half each, at once); the floor: the same batches copied by 1 or 2
    processes into one ``/dev/shm`` file sized up front (``np.memmap``, disjoint halves).
    Fresh pages for both.  All four in turn, median of ``APPEND_ROUNDS``.

    ``track_vector_2_over_1``: 2 processes' throughput over 1's, appending;
    ``track_copy_2_over_1``: the same for the plain copies (what the machine's memory gives);
    ``track_quotient``: the first over the second, round by round (target >= 0.9)."""

    number = 1
    timeout = 900

    def setup_cache(self):
        configs = [("vector", 1), ("vector", 2), ("copy", 1), ("copy", 2)]
        return interleaved(configs, _measure_appends, APPEND_ROUNDS)

    setup_cache.timeout = 900  # type: ignore[attr-defined]

    def track_vector_2_over_1(self, cache):
        return median_ratio(cache["vector", 1], cache["vector", 2])

    track_vector_2_over_1.unit = "x one process"  # type: ignore[attr-defined]

    def track_copy_2_over_1(self, cache):
        return median_ratio(cache["copy", 1], cache["copy", 2])

    track_copy_2_over_1.unit = "x one process"  # type: ignore[attr-defined]

    def track_quotient(self, cache):
        vec = [a / b for a, b in zip(cache["vector", 1], cache["vector", 2])]
        copy = [a / b for a, b in zip(cache["copy", 1], cache["copy", 2])]
        return median_ratio(vec, copy)

    track_quotient.unit = "vector ratio / copy ratio"  # type: ignore[attr-defined]
